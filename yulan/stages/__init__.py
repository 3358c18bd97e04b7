"""What runs inside a job, per (stage, engine). OpenRLHF stages run their engine command (yulan.run); the
others are registered here. Modules are imported only when their job runs (they import torch)."""

from __future__ import annotations

from importlib import import_module
from typing import Callable

# (stage, engine) -> "module:function"; the function takes (experiment, job_dir) and returns an exit status.
RUNNERS: dict[tuple[str, str | None], str] = {
    ("curation", None): "yulan.curation.stage:run",
    ("sft", "native"): "yulan.native.sft:train",
    ("preference", None): "yulan.curation.preference:run",
    ("dpo", "native"): "yulan.native.dpo:train",
    ("ppo", "native"): "yulan.native.ppo:train",
    ("eval", None): "yulan.evaluation.stage:run",
}


def runner(stage: str, engine: str | None) -> Callable | None:
    target = RUNNERS.get((stage, engine))
    if target is None:
        return None
    module, function = target.split(":")
    return getattr(import_module(module), function)


def available(stage: str, engine: str | None) -> bool:
    return engine == "openrlhf" or (stage, engine) in RUNNERS


def missing_inputs(experiment, stage: str) -> list:
    """Data files a stage reads that do not exist (another stage's output is made by the run, and is not checked)."""
    from pathlib import Path

    from yulan.schema.common import STAGES
    from yulan.schema.errors import Problem

    files = {
        "preference": [("preference.prompts", p) for p in experiment.preference.prompts]
        + [("preference.off_policy_sources", p) for p in experiment.preference.off_policy_sources],
        "ppo": []
        if experiment.ppo.prompts.source in STAGES
        else [("ppo.prompts.source", experiment.ppo.prompts.source)],
    }
    made_by_runs = Path(experiment.run_root).resolve()
    return [
        Problem(field, "the file must exist", path, "check the path (a JSONL file)")
        for field, path in files.get(stage, [])
        if not Path(path).exists() and made_by_runs not in Path(path).resolve().parents
    ]


def needed_packages(experiment, stage: str) -> dict[str, str]:
    """{module: the setting that makes the stage import it while it runs}."""
    from yulan.schema.curation import STEPS

    config = getattr(experiment, stage)
    engine = getattr(config, "engine", None)
    tracking = {} if experiment.tracking.mode == "disabled" else {"wandb": "tracking.mode"}
    if engine == "openrlhf":
        return dict.fromkeys(["openrlhf", "deepspeed", *(["ray", "vllm"] if stage == "ppo" else [])], f"{stage}.engine")
    if stage in ("sft", "dpo", "ppo"):
        return dict.fromkeys(["torch", "transformers"], f"{stage}.engine") | tracking
    if stage == "curation":
        needs = {}
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
    if stage in ("preference", "eval"):
        return dict.fromkeys(["torch", "transformers", "math_verify"], "stages") | (
            {"matplotlib": "stages"} if stage == "eval" else {}
        )
    return {}


def missing_packages(experiment, stage: str) -> list:
    """The packages a stage needs that this environment lacks (checked at the start of its job, before any step)."""
    from yulan.runtime.packages import install_hint, installed
    from yulan.schema.errors import Problem

    return [
        Problem(
            field,
            f"the {stage} stage imports {module} for this setting, and {module} is not installed in this environment",
            module,
            install_hint(module),
        )
        for module, field in needed_packages(experiment, stage).items()
        if not installed(module)
    ]


def missing(experiment, stage: str, here: bool = True) -> list:
    """Settings of a stage that cannot be carried out, found before anything runs; `here`: also what this
    machine lacks (packages), when the stage will run on it."""
    problems = missing_inputs(experiment, stage) + (missing_packages(experiment, stage) if here else [])
    if problems:
        return problems
    if stage == "curation":
        from yulan.curation.stage import missing_steps

        return missing_steps(experiment, here)
    if stage == "eval":
        from yulan.evaluation.stage import missing as eval_missing

        return eval_missing(experiment, here)
    if stage in ("sft", "dpo", "ppo"):
        from yulan.native.checks import missing as trainer_missing

        return trainer_missing(experiment, stage, here)
    return []
