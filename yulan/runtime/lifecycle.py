"""A job's lifecycle: stop requests (preemption, time limit), the requeue exit status and DONE markers.
Light on purpose: the launchers import it on the login node."""

from __future__ import annotations

import signal
from pathlib import Path

# Exit status of a stage that saved a checkpoint and stopped because it was asked to (preemption, time limit).
REQUEUE_STATUS = 75
# Exit status of a stage that a health rule stopped (ppo.health): it saved a checkpoint and wrote alerts.jsonl.
HEALTH_STOP_STATUS = 3
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


def started_marker(job_dir: str | Path) -> Path:
    """Written when a stage's job (its last attempt; a stage split into parts: its first part) starts."""
    return Path(job_dir) / "STARTED"


STAGE_STATES = (NOT_STARTED, STARTED, DONE) = ("not started", "started", "done")


def stage_state(job_dir: str | Path) -> str:
    """done (its DONE marker), started (its directory exists) or not started."""
    job_dir = Path(job_dir)
    if done_marker(job_dir).exists():
        return DONE
    return STARTED if job_dir.is_dir() else NOT_STARTED
