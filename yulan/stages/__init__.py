"""What runs inside a job, per (stage, engine). OpenRLHF stages run their engine command (yulan.run); the
others are registered here. Modules are imported only when their job runs (they import torch)."""

from __future__ import annotations

import signal
from importlib import import_module
from pathlib import Path
from typing import Callable

# Exit status of a stage that saved a checkpoint and stopped because it was asked to (preemption, time limit).
REQUEUE_STATUS = 75
_stop = {"requested": False}


def install_stop_handler() -> None:
    """SIGUSR1 (from the job wrapper), SIGUSR2 (SLURM's --signal, which reaches every process of the step) or
    SIGTERM (preemption, `kill`): finish the current step, checkpoint, exit with REQUEUE_STATUS."""
    for signum in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM):
        signal.signal(signum, lambda *_: _stop.update(requested=True))


def stop_requested() -> bool:
    return _stop["requested"]


def done_marker(job_dir: str | Path, part: str | None = None, shard: int | None = None) -> Path:
    """Written when a stage, or one part (one shard) of a stage split into jobs, has finished."""
    if part is None:
        return Path(job_dir) / "DONE"
    return Path(job_dir) / "parts" / (f"{part}.{shard}.DONE" if shard is not None else f"{part}.DONE")

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


def missing(experiment, stage: str, here: bool = True) -> list:
    """Settings of a stage that cannot be carried out, found before anything runs; `here`: also what this
    machine lacks (packages), when the stage will run on it."""
    if stage == "curation":
        from yulan.curation.stage import missing_steps

        return missing_steps(experiment, here)
    if stage == "eval":
        from yulan.evaluation.stage import missing as eval_missing

        return eval_missing(experiment, here)
    return []
