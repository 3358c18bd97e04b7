"""The pipeline's stages: one Stage record each, in one table, read by the planner (on the login node) and by the job
entry point. A record names its code as "module:function" strings, imported only when its job runs (the modules
import torch), so that planning and validating stay light.

A runner takes (experiment, job_dir) and returns an exit status. A pre-run check takes (experiment, stage, here) and
returns the Problems that would stop the stage, found before anything runs; `here`: also what this machine lacks, when
the stage will run on it. A preparation runs once per job, before the runner (on the head node of a multi-node job).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from yulan.schema.common import STAGES
from yulan.schema.errors import Problem
from yulan.schema.experiment import Experiment


def function(target: str) -> Callable[..., Any]:
    module, name = target.split(":")
    return getattr(import_module(module), name)


def _training_packages(experiment: Experiment, stage: str) -> dict[str, str]:
    if getattr(experiment, stage).engine == "openrlhf":
        return dict.fromkeys(["openrlhf", "deepspeed", *(["ray", "vllm"] if stage == "ppo" else [])], f"{stage}.engine")
    tracking = {} if experiment.tracking.mode == "disabled" else {"wandb": "tracking.mode"}
    rollouts = _vllm_package(experiment) if stage == "ppo" else {}
    return dict.fromkeys(["torch", "transformers"], f"{stage}.engine") | tracking | rollouts


def _vllm_package(experiment: Experiment) -> dict[str, str]:
    """vLLM, where generation.backend names it (auto takes it only where it is installed); the evaluation, whose
    rows and eval.backend decide, checks its own."""
    return {"vllm": "generation.backend"} if experiment.generation.backend == "vllm" else {}


def _curation_packages(experiment: Experiment, stage: str) -> dict[str, str]:
    from yulan.schema.curation import STEPS

    config, needs = experiment.curation, {}
    for step in config.steps:
        if STEPS[step].model == "base":
            needs |= dict.fromkeys(["torch", "transformers"], "curation.steps")
        elif STEPS[step].model == "served":
            needs["httpx"] = "curation.steps"
    if config.sources.synthesis:
        needs |= dict.fromkeys(["httpx", "math_verify"], "curation.sources.synthesis")
    if any(str(path).endswith(".parquet") for path in config.inputs):
        needs["pyarrow"] = "curation.inputs"
    return needs


def _generation_packages(experiment: Experiment, stage: str) -> dict[str, str]:
    needs = dict.fromkeys(["torch", "transformers", "math_verify"], "stages")
    if stage == "eval":
        return needs | {"matplotlib": "stages"}  # the eval's vLLM needs depend on its rows: its pre-run check
    return needs | _vllm_package(experiment)


def _preference_files(experiment: Experiment) -> list[tuple[str, str]]:
    config = experiment.preference
    return [("preference.prompts", p) for p in config.prompts] + [
        ("preference.off_policy_sources", p) for p in config.off_policy_sources
    ]


def _ppo_files(experiment: Experiment) -> list[tuple[str, str]]:
    source = experiment.ppo.prompts.source
    return [] if source in STAGES else [("ppo.prompts.source", source)]


@dataclass(frozen=True)
class Stage:
    name: str
    runners: dict[str | None, str]  # engine (None: the stage has no engine setting) -> its runner
    packages: Callable[[Experiment, str], dict[str, str]]  # {module: the setting that makes the stage import it}
    input_files: Callable[[Experiment], list[tuple[str, str]]] = lambda experiment: []  # (setting, path) it reads
    prerun_check: str | None = None  # "module:function"
    prepare: str | None = None  # "module:function"(experiment, job_dir), run once before any engine's runner
    run_part: str | None = None  # "module:function"(experiment, job_dir, part, shard): a stage planned as several jobs

    def engine(self, experiment: Experiment) -> str | None:
        return getattr(getattr(experiment, self.name), "engine", None)

    def runner(self, engine: str | None) -> Callable[[Experiment, str], int] | None:
        target = self.runners.get(engine)
        return function(target) if target else None


TRAINING_RUNNERS = {
    stage: {"native": f"yulan.engines.native.{stage}:train", "openrlhf": f"yulan.engines.openrlhf.driver:run_{stage}"}
    for stage in ("sft", "dpo", "ppo")
}
NATIVE_CHECK = "yulan.engines.native.checks:prerun_problems"

TABLE: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            "curation",
            {None: "yulan.stages.curation.stage:run"},
            _curation_packages,
            prerun_check="yulan.stages.curation.stage:prerun_problems",
            run_part="yulan.stages.curation.stage:run_part",
        ),
        Stage("sft", TRAINING_RUNNERS["sft"], _training_packages, prerun_check=NATIVE_CHECK),
        Stage("preference", {None: "yulan.stages.preference:run"}, _generation_packages, _preference_files),
        Stage("dpo", TRAINING_RUNNERS["dpo"], _training_packages, prerun_check=NATIVE_CHECK),
        Stage(
            "ppo",
            TRAINING_RUNNERS["ppo"],
            _training_packages,
            _ppo_files,
            prerun_check=NATIVE_CHECK,
            prepare="yulan.stages.ppo_prompts:select",
        ),
        Stage(
            "eval",
            {None: "yulan.stages.evaluation.stage:run"},
            _generation_packages,
            prerun_check="yulan.stages.evaluation.stage:prerun_problems",
        ),
    )
}
assert tuple(TABLE) == STAGES, "one record per stage, in pipeline order"


def available(stage: str, engine: str | None) -> bool:
    return engine in TABLE[stage].runners


def missing_inputs(experiment: Experiment, stage: str) -> list[Problem]:
    """Data files a stage reads that do not exist (another stage's output is made by the run, and is not checked)."""
    made_by_runs = Path(experiment.run_root).resolve()
    return [
        Problem(setting, "the file must exist", path, "check the path (a JSONL file)")
        for setting, path in TABLE[stage].input_files(experiment)
        if not Path(path).exists() and made_by_runs not in Path(path).resolve().parents
    ]


def missing_packages(experiment: Experiment, stage: str) -> list[Problem]:
    """The packages a stage needs that this environment lacks (checked at the start of its job, before any step)."""
    from yulan.runtime.packages import install_hint, installed

    return [
        Problem(
            setting,
            f"the {stage} stage imports {module} for this setting, and {module} is not installed in this environment",
            module,
            install_hint(module),
        )
        for module, setting in TABLE[stage].packages(experiment, stage).items()
        if not installed(module)
    ]


def prerun_problems(experiment: Experiment, stage: str, here: bool = True) -> list[Problem]:
    """Settings of a stage that cannot be carried out, found before anything runs; `here`: also what this machine
    lacks (packages), when the stage will run on it."""
    problems = missing_inputs(experiment, stage) + (missing_packages(experiment, stage) if here else [])
    check = TABLE[stage].prerun_check
    if problems or check is None:
        return problems
    return function(check)(experiment, stage, here)
