"""The curation stage: the configured steps chained over the input files, each step's kept/dropped/report files
under curation/steps/, the result at curation/data/sft.jsonl and a combined report at curation/report.json."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from importlib import import_module
from pathlib import Path

from schema.errors import ConfigError, Problem
from schema.experiment import Experiment, stage_output
from yulan.curation import STEPS
from yulan.curation.io import copy_as_jsonl
from yulan.curation import synthesis
from yulan.curation.server import endpoint_for


def missing_steps(experiment: Experiment) -> list[Problem]:
    """What this version cannot run (checked before anything is written)."""
    problems = [Problem("curation.steps", "this step is not built in this version", step, "remove it from curation.steps")
                for step in experiment.curation.steps if step not in STEPS]
    sources = experiment.curation.sources
    for job in ("science", "chinese_commonsense"):
        if job in sources.synthesis and not getattr(sources, job).documents:
            problems.append(Problem(f"curation.sources.{job}.documents", f"the {job} job reads local documents", [],
                                    f"list JSONL or Parquet files with a `text` field in curation.sources.{job}.documents"))
    if importlib.util.find_spec("vllm") is None:
        problems += [Problem(f"{where}.endpoint", "without an endpoint the job starts vLLM, which is not installed here", None,
                             "pip install -e '.[cluster]', or set the endpoint of a running OpenAI-compatible server")
                     for where in servers_needed(experiment)]
    return problems


def servers_needed(experiment: Experiment) -> list[str]:
    """Models this run would start vLLM for (no endpoint given)."""
    config = experiment.curation
    needed = [f"curation.sources.{job}" for job in config.sources.synthesis if not getattr(config.sources, job).endpoint]
    if "judge" in config.steps and config.judge.backend == "vllm":
        needed.append("curation.judge")
    return needed


def run(experiment: Experiment, job_dir: str) -> int:
    config = experiment.curation
    problems = missing_steps(experiment)
    if problems:
        print(ConfigError("the curation stage cannot run", problems), file=sys.stderr)
        return 2
    if not config.inputs and not config.sources.synthesis:
        print("error: curation.inputs is empty: list the JSONL or Parquet files to curate", file=sys.stderr)
        return 2
    steps_dir = Path(job_dir) / "steps"
    steps_dir.mkdir(parents=True, exist_ok=True)
    inputs = list(config.inputs)
    reports = {}
    for job in config.sources.synthesis:  # after the given inputs: for duplicates, theirs are the earliest
        settings, (runner, model_field) = getattr(config.sources, job), synthesis.RUNNERS[job]
        synthesized = steps_dir / f"0-synthesis-{job}.jsonl"
        gpus = config.model_resources.gpus_per_node
        with endpoint_for(getattr(settings, model_field), settings.endpoint, gpus, steps_dir) as endpoint:
            reports[f"synthesis/{job}"] = runner(settings, synthesized, endpoint)
        inputs.append(str(synthesized))
    current = steps_dir / "0-inputs.jsonl"
    with current.open("w") as sink:  # one stream of every input, in order (the earliest sample of a duplicate wins)
        for path in inputs:
            copy_as_jsonl(path, sink)
    for index, step in enumerate(config.steps, start=1):
        module, _, field = STEPS[step]
        output = steps_dir / f"{index}-{step}.jsonl"
        extra = {"model": _base_model(experiment)} if step == "complexity" else {}
        reports[step] = import_module(module).run(current, output, getattr(config, field), experiment.seed, **extra)
        print(f"[curation] {step}: {reports[step]['input']} in, {reports[step]['kept']} kept", file=sys.stderr)
        current = output
    final = Path(stage_output(experiment.output_dir, "curation"))
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(current, final)
    (Path(job_dir) / "report.json").write_text(json.dumps({"steps": reports, "output": str(final)}, indent=2))
    return 0


def _base_model(experiment: Experiment) -> str:
    from yulan.native.common import model_path

    return model_path(experiment, experiment.model.name_or_path)
