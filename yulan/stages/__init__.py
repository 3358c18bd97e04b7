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


def missing(experiment, stage: str) -> list[str]:
    """Settings of a stage that this version cannot carry out yet, found before anything runs."""
    if stage == "curation":
        from yulan.curation.stage import missing_steps

        return missing_steps(experiment)
    if stage == "eval":
        from yulan.evaluation.stage import missing as eval_missing

        return eval_missing(experiment)
    return []
