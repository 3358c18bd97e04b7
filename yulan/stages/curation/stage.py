"""The curation stage: the configured steps chained over the input files, each step's kept/dropped/report files
under curation/steps/, the result at curation/data/sft.jsonl and a combined report at curation/report.json.
One job by default; with curation.shards > 1 the steps' per-sample work runs as array jobs over shards."""

from __future__ import annotations

import json
import logging
import shutil
import time
from importlib import import_module
from pathlib import Path

from yulan.runtime.lifecycle import done_marker
from yulan.runtime.packages import install_hint, installed
from yulan.runtime.records import SetAside, partial_path, write_text
from yulan.schema.curation import STEPS, Step, curation_parts
from yulan.schema.errors import ConfigError, Problem
from yulan.schema.experiment import Experiment, stage_output
from yulan.stages.curation import synthesis
from yulan.stages.curation.io import copy_shard, join_inputs, side_file, write_set_aside
from yulan.stages.curation.server import endpoint_for

log = logging.getLogger(__name__)


def prerun_problems(experiment: Experiment, stage: str = "curation", here: bool = True) -> list[Problem]:
    """What cannot run (checked before anything is written); `here`: also what this machine lacks."""
    problems = [
        Problem(
            "curation.inputs", "every input must exist", path, "check the path (JSONL, Parquet or a datasets folder)"
        )
        for path in experiment.curation.inputs
        if not Path(path).exists()
    ]
    sources = experiment.curation.sources
    for job in ("science", "chinese_commonsense"):
        if job in sources.synthesis and not getattr(sources, job).documents:
            problems.append(
                Problem(
                    f"curation.sources.{job}.documents",
                    f"the {job} job reads local documents",
                    [],
                    f"list JSONL or Parquet files with a `text` field in curation.sources.{job}.documents",
                )
            )
    if here and not installed("vllm"):
        problems += [
            Problem(
                f"{where}.endpoint",
                "without an endpoint the job starts vLLM, which is not installed here",
                None,
                f"{install_hint('vllm')}; or set the endpoint of a running OpenAI-compatible server",
            )
            for where in servers_needed(experiment)
        ]
    return problems


def servers_needed(experiment: Experiment) -> list[str]:
    """Models this run would start vLLM for (no endpoint given)."""
    config = experiment.curation
    needed = [
        f"curation.sources.{job}" for job in config.sources.synthesis if not getattr(config.sources, job).endpoint
    ]
    if "judge" in config.steps and config.judge.backend == "vllm":
        needed.append("curation.judge")
    return needed


def refused(experiment: Experiment) -> bool:
    problems = prerun_problems(experiment)
    if problems:
        log.error("%s", ConfigError("the curation stage cannot run", problems))
        return True
    if not experiment.curation.inputs and not experiment.curation.sources.synthesis:
        log.error("curation.inputs is empty: list the JSONL or Parquet files to curate")
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
    """The synthesis jobs, then every input checked and joined into steps/0-inputs.jsonl."""
    config = experiment.curation
    steps_dir = Path(job_dir) / "steps"
    steps_dir.mkdir(parents=True, exist_ok=True)
    inputs = list(config.inputs)
    for job in config.sources.synthesis:  # after the given inputs: for duplicates, theirs are the earliest
        settings, (runner, model_field) = getattr(config.sources, job), synthesis.RUNNERS[job]
        settings = settings.model_copy(update={model_field: served_model(experiment, getattr(settings, model_field))})
        synthesized = steps_dir / f"0-synthesis-{job}.jsonl"
        gpus = config.model_resources.gpus_per_node
        with endpoint_for(
            getattr(settings, model_field), settings.endpoint, gpus, steps_dir, experiment.generation.vllm
        ) as endpoint:
            runner(settings, synthesized, endpoint)
        inputs.append(str(synthesized))
    set_aside = SetAside.under(config.on_bad_record)
    joined = steps_dir / "0-inputs.jsonl"
    count = join_inputs(inputs, joined, set_aside)
    counts = {
        "input": count + (len(set_aside.rows) if set_aside else 0),
        "kept": count,
        "bad_records": write_set_aside(set_aside, joined),
    }
    write_text(side_file(joined, "report.json"), json.dumps(counts, indent=2))


def settings_of(experiment: Experiment, step: Step):
    """A step's settings in this experiment, the stage's on_bad_record filled in where the step leaves it open."""
    settings = experiment
    for part in step.section.split("."):
        settings = getattr(settings, part)
    if settings.on_bad_record is None:
        settings = settings.model_copy(update={"on_bad_record": experiment.curation.on_bad_record})
    if step.model == "served" and settings.endpoint is None:
        settings = settings.model_copy(update={"model": served_model(experiment, settings.model)})
    return settings


def served_model(experiment: Experiment, name: str) -> str:
    """What a job-started server serves: `tiny:*` names (the smoke pipelines' judge and teacher) are built into the
    cache first, in the policy's shape; anything else as given."""
    if not name.startswith("tiny:"):
        return name
    from yulan.runtime.models import model_path  # torch: only where a tiny model is built

    return model_path(experiment, name)


def needs(experiment: Experiment, step: Step) -> dict:
    """What the step's run takes besides its files and settings."""
    extra = {}
    if step.model == "base":
        extra["model"] = _base_model(experiment)
    if step.reads_eval_table:
        extra["benchmarks"] = experiment.eval.benchmarks
    if step.model == "served":
        extra["engine"] = experiment.generation.vllm
    return extra


def run_step(experiment: Experiment, name: str, input_path: Path, output_path: Path) -> dict:
    step = STEPS[name]
    settings = settings_of(experiment, step)
    counts = import_module(step.module).run(
        input_path, output_path, settings, experiment.seed, **needs(experiment, step)
    )
    log.info(f"[curation] {name}: {counts['input']} in, {counts['kept']} kept")
    return counts


def finish(experiment: Experiment, job_dir: str) -> None:
    """The last step's output becomes the stage's; every step's report goes into report.json."""
    steps_dir = Path(job_dir) / "steps"
    files = step_files(experiment, job_dir)
    shard_counts = {
        f"synthesis/{job}": json.loads((steps_dir / f"0-synthesis-{job}.report.json").read_text())
        for job in experiment.curation.sources.synthesis
    }
    shard_counts["inputs"] = json.loads((steps_dir / "0-inputs.report.json").read_text())
    shard_counts |= {step: json.loads(side_file(output, "report.json").read_text()) for step, _, output in files}
    final = Path(stage_output(experiment.output_dir, "curation"))
    final.parent.mkdir(parents=True, exist_ok=True)
    building = partial_path(final)
    shutil.copyfile(files[-1][2] if files else steps_dir / "0-inputs.jsonl", building)
    building.replace(final)
    write_text(Path(job_dir) / "report.json", json.dumps({"steps": shard_counts, "output": str(final)}, indent=2))


def run(experiment: Experiment, job_dir: str) -> int:
    """The whole stage in one job."""
    if refused(experiment):
        return 2
    prepare(experiment, job_dir)
    for step, input_path, output_path in step_files(experiment, job_dir):
        run_step(experiment, step, input_path, output_path)
    finish(experiment, job_dir)
    return 0


# -- the stage as array jobs over shards (curation.shards > 1; the parts are listed by yulan.stages.curation.parts) ---
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
        if STEPS[step].sharded:
            merge_shards(experiment, step, input_path, output_path, shards_dir, shards)
        else:
            run_step(experiment, step, input_path, output_path)
        if part == curation_parts(experiment.curation)[-1][0]:
            finish(experiment, job_dir)
            done_marker(job_dir).write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))  # the whole stage
    return 0


def map_shard(experiment: Experiment, name: str, input_path: Path, shards_dir: Path, shard: int, shards: int) -> None:
    """A step's per-sample work on one shard (its module's map_shard)."""
    shard_input = shards_dir / f"input-{shard}.jsonl"
    copy_shard(input_path, shard, shards, shard_input)
    step = STEPS[name]
    import_module(step.module).map_shard(
        shard_input, shards_dir, shard, settings_of(experiment, step), experiment.seed, **needs(experiment, step)
    )
    shard_input.unlink()


def merge_shards(
    experiment: Experiment, name: str, input_path: Path, output_path: Path, shards_dir: Path, shards: int
) -> None:
    """What is kept, decided over the whole file from the shards' work (its module's merge_shards)."""
    step = STEPS[name]
    counts = import_module(step.module).merge_shards(
        input_path,
        output_path,
        shards_dir,
        shards,
        settings_of(experiment, step),
        experiment.seed,
        **needs(experiment, step),
    )
    log.info(f"[curation] {name}: {counts['input']} in, {counts['kept']} kept")


def _base_model(experiment: Experiment) -> str:
    from yulan.runtime.models import model_path

    return model_path(experiment, experiment.model.name_or_path)
