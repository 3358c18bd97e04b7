"""The curation stage: the configured steps chained over the input files, each step's kept/dropped/report files
under curation/steps/, the result at curation/data/sft.jsonl and a combined report at curation/report.json."""

from __future__ import annotations

import json
import shutil
import sys
from importlib import import_module
from pathlib import Path

from schema.errors import ConfigError, Problem
from schema.experiment import Experiment, stage_output
from yulan.curation import STEPS
from yulan.curation.io import copy_as_jsonl
from yulan.curation.synthesis import run_math


def missing_steps(experiment: Experiment) -> list[Problem]:
    """What this version cannot run yet (checked before anything is written)."""
    problems = [Problem("curation.steps", "this step is not built in this version", step, "remove it from curation.steps")
                for step in experiment.curation.steps if step not in STEPS]
    if "judge" in experiment.curation.steps and experiment.curation.judge.backend != "openai":
        problems.append(Problem("curation.judge.backend", "the judge runs against an OpenAI-compatible server; starting "
                                "vLLM inside the job is not built in this version", experiment.curation.judge.backend,
                                "start `vllm serve` yourself and set curation.judge.backend=openai and endpoint"))
    sources = experiment.curation.sources
    unbuilt = [job for job in sources.synthesis if job != "math"]
    if unbuilt:
        problems.append(Problem("curation.sources.synthesis", "only the math synthesis job is built in this version",
                                unbuilt, "remove them from curation.sources.synthesis"))
    if "math" in sources.synthesis and not sources.math.endpoint:
        problems.append(Problem("curation.sources.math.endpoint", "math distillation asks a running teacher server; "
                                "starting vLLM inside the job is not built in this version", None,
                                f"run `vllm serve {sources.math.teacher}` and set curation.sources.math.endpoint=http://HOST:8000/v1"))
    return problems


def run(experiment: Experiment, job_dir: str) -> int:
    config = experiment.curation
    unbuilt = missing_steps(experiment)
    if unbuilt:
        print(ConfigError("the curation stage cannot run", unbuilt), file=sys.stderr)
        return 2
    if not config.inputs and not config.sources.synthesis:
        print("error: curation.inputs is empty: list the JSONL or Parquet files to curate", file=sys.stderr)
        return 2
    steps_dir = Path(job_dir) / "steps"
    steps_dir.mkdir(parents=True, exist_ok=True)
    inputs = list(config.inputs)
    reports = {}
    if "math" in config.sources.synthesis:
        synthesized = steps_dir / "0-synthesis-math.jsonl"
        reports["synthesis/math"] = run_math(config.sources.math, synthesized)
        inputs.append(str(synthesized))  # after the given inputs: for duplicates, theirs are the earliest
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
