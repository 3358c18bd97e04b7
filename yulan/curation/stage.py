"""The curation stage: the configured steps chained over the input files, each step's kept/dropped/report files
under curation/steps/, the result at curation/data/sft.jsonl and a combined report at curation/report.json.
One job by default; with curation.shards > 1 the steps' per-sample work runs as array jobs over shards."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from importlib import import_module
from pathlib import Path

from schema.errors import ConfigError, Problem
from schema.experiment import Experiment, stage_output
from yulan.curation import SHARDED_STEPS, STEPS, parts, synthesis
from yulan.curation.cache import ResultCache, cache_path
from yulan.curation.io import copy_as_jsonl, copy_shard
from yulan.curation.server import endpoint_for


def missing_steps(experiment: Experiment, here: bool = True) -> list[Problem]:
    """What cannot run (checked before anything is written); `here`: also what this machine lacks."""
    problems = [Problem("curation.steps", "this step is not built in this version", step, "remove it from curation.steps")
                for step in experiment.curation.steps if step not in STEPS]
    sources = experiment.curation.sources
    for job in ("science", "chinese_commonsense"):
        if job in sources.synthesis and not getattr(sources, job).documents:
            problems.append(Problem(f"curation.sources.{job}.documents", f"the {job} job reads local documents", [],
                                    f"list JSONL or Parquet files with a `text` field in curation.sources.{job}.documents"))
    if here and importlib.util.find_spec("vllm") is None:
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


def refused(experiment: Experiment) -> bool:
    problems = missing_steps(experiment)
    if problems:
        print(ConfigError("the curation stage cannot run", problems), file=sys.stderr)
        return True
    if not experiment.curation.inputs and not experiment.curation.sources.synthesis:
        print("error: curation.inputs is empty: list the JSONL or Parquet files to curate", file=sys.stderr)
        return True
    return False


def step_files(experiment: Experiment, job_dir: str) -> list[tuple[str, Path, Path]]:
    """(step, its input, its output) in order: each step reads the previous step's output."""
    steps_dir = Path(job_dir) / "steps"
    current, out = steps_dir / "0-inputs.jsonl", []
    for index, step in enumerate(experiment.curation.steps, start=1):
        output = steps_dir / f"{index}-{step}.jsonl"
        out.append((step, current, output))
        current = output
    return out


def prepare(experiment: Experiment, job_dir: str) -> None:
    """The synthesis jobs, then every input joined into steps/0-inputs.jsonl."""
    config = experiment.curation
    steps_dir = Path(job_dir) / "steps"
    steps_dir.mkdir(parents=True, exist_ok=True)
    inputs = list(config.inputs)
    for job in config.sources.synthesis:  # after the given inputs: for duplicates, theirs are the earliest
        settings, (runner, model_field) = getattr(config.sources, job), synthesis.RUNNERS[job]
        synthesized = steps_dir / f"0-synthesis-{job}.jsonl"
        gpus = config.model_resources.gpus_per_node
        with endpoint_for(getattr(settings, model_field), settings.endpoint, gpus, steps_dir) as endpoint:
            runner(settings, synthesized, endpoint)
        inputs.append(str(synthesized))
    with (steps_dir / "0-inputs.jsonl").open("w") as sink:  # in order: the earliest sample of a duplicate wins
        for path in inputs:
            copy_as_jsonl(path, sink)


def run_step(experiment: Experiment, step: str, input_path: Path, output_path: Path, **extra) -> dict:
    module, _, field = STEPS[step]
    if step == "complexity":
        extra["model"] = _base_model(experiment)
    report = import_module(module).run(input_path, output_path, getattr(experiment.curation, field), experiment.seed, **extra)
    print(f"[curation] {step}: {report['input']} in, {report['kept']} kept", file=sys.stderr)
    return report


def finish(experiment: Experiment, job_dir: str) -> None:
    """The last step's output becomes the stage's; every step's report goes into report.json."""
    steps_dir = Path(job_dir) / "steps"
    files = step_files(experiment, job_dir)
    reports = {f"synthesis/{job}": json.loads((steps_dir / f"0-synthesis-{job}.report.json").read_text())
               for job in experiment.curation.sources.synthesis}
    reports |= {step: json.loads(output.with_name(output.stem + ".report.json").read_text()) for step, _, output in files}
    final = Path(stage_output(experiment.output_dir, "curation"))
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(files[-1][2] if files else steps_dir / "0-inputs.jsonl", final)
    (Path(job_dir) / "report.json").write_text(json.dumps({"steps": reports, "output": str(final)}, indent=2))


def run(experiment: Experiment, job_dir: str) -> int:
    """The whole stage in one job."""
    if refused(experiment):
        return 2
    prepare(experiment, job_dir)
    for step, input_path, output_path in step_files(experiment, job_dir):
        run_step(experiment, step, input_path, output_path)
    finish(experiment, job_dir)
    return 0


# -- the stage as array jobs over shards (curation.shards > 1; the parts are listed by yulan.curation.parts) ---
def run_part(experiment: Experiment, job_dir: str, part: str, shard: int | None) -> int:
    if refused(experiment):
        return 2
    if part == "prepare":
        prepare(experiment, job_dir)
        return 0
    files = {step: (input_path, output_path) for step, input_path, output_path in step_files(experiment, job_dir)}
    step = part.removesuffix("-map")
    input_path, output_path = files[step]
    shards_dir = output_path.with_suffix(".shards")
    shards = experiment.curation.shards
    if part.endswith("-map"):
        map_shard(experiment, step, input_path, shards_dir, shard, shards)
    else:
        if step in SHARDED_STEPS:
            merge_shards(experiment, step, input_path, output_path, shards_dir, shards)
        else:
            run_step(experiment, step, input_path, output_path)
        if part == parts(experiment.curation)[-1][0]:
            finish(experiment, job_dir)
    return 0


def map_shard(experiment: Experiment, step: str, input_path: Path, shards_dir: Path, shard: int, shards: int) -> None:
    """A step's per-sample work on one shard: dedup's fingerprints; heuristics' decisions; the judge's
    judgements and complexity's scores, which land in the shard's cache."""
    shard_input = shards_dir / f"input-{shard}.jsonl"
    copy_shard(input_path, shard, shards, shard_input)
    if step == "dedup":
        from yulan.curation.dedup import shard_fingerprints

        shard_fingerprints(shard_input, experiment.curation.dedup, experiment.seed, shards_dir / f"{shard}.fingerprints.npz")
    else:
        run_step(experiment, step, shard_input, shards_dir / f"{shard}.jsonl")
    shard_input.unlink()


def merge_shards(experiment: Experiment, step: str, input_path: Path, output_path: Path, shards_dir: Path, shards: int) -> None:
    """What is kept, decided over the whole file from the shards' work: heuristics concatenates the shards;
    dedup resolves duplicates across shards from their fingerprints; judge and complexity rerun over the file
    from the shards' caches (no model call), so their percentile and fraction are global."""
    if step == "heuristics":
        with output_path.open("w") as kept, output_path.with_name(output_path.stem + ".dropped.jsonl").open("w") as dropped:
            for shard in range(shards):
                kept.write((shards_dir / f"{shard}.jsonl").read_text())
                dropped.write((shards_dir / f"{shard}.dropped.jsonl").read_text())
        report = summed([json.loads((shards_dir / f"{shard}.report.json").read_text()) for shard in range(shards)])
        output_path.with_name(output_path.stem + ".report.json").write_text(json.dumps(report, indent=2))
    elif step == "dedup":
        run_step(experiment, step, input_path, output_path,
                 computed=[shards_dir / f"{shard}.fingerprints.npz" for shard in range(shards)])
    else:
        with ResultCache(cache_path(output_path)) as cache:
            for shard in range(shards):
                if cache_path(shards_dir / f"{shard}.jsonl").exists():
                    cache.merge(cache_path(shards_dir / f"{shard}.jsonl"))
        run_step(experiment, step, input_path, output_path, **({"ask": False} if step == "judge" else {}))


def summed(reports: list[dict]) -> dict:
    """Counts of several shards' reports added up (nested by category and reason)."""
    total: dict = {}
    for report in reports:
        for key, value in report.items():
            if isinstance(value, dict):
                total[key] = summed([total.get(key, {}), value])
            elif isinstance(value, (int, float)):
                total[key] = total.get(key, 0) + value
    return total


def _base_model(experiment: Experiment) -> str:
    from yulan.runtime.models import model_path

    return model_path(experiment, experiment.model.name_or_path)
