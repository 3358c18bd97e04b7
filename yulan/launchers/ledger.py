"""The ledger of a SLURM submission (`ledger.json`): each point's overrides, run directory and job ids, and what the
scheduler says of them now. `yulan status` and `yulan cancel` read it; yulan.launchers.slurm writes it and resubmits."""

from __future__ import annotations

import json
import os
import subprocess
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

from yulan.runtime.records import read_json_object

LEDGER = "ledger.json"


class PointState(StrEnum):
    """A sweep point's state, from its jobs' scheduler states in pipeline order."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the scheduler knows one of its jobs no more (or never did)


FINISHED = {"COMPLETED"}
FAILED = {"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}


def read_ledger(directory: Path) -> dict[str, Any]:
    path = directory / LEDGER if directory.is_dir() else directory
    if not path.exists():
        raise FileNotFoundError(f"no {LEDGER} in {directory}: pass the directory launch.py printed")
    try:
        ledger = json.loads(path.read_text())
        if not isinstance(ledger, dict) or not isinstance(ledger.get("points"), list):
            raise ValueError("no list of points")
        return ledger
    except (ValueError, UnicodeDecodeError) as error:
        raise FileNotFoundError(
            f"{path} is not a readable ledger ({error}); the job ids are also in each run directory's manifest.json"
        ) from None


def job_states(job_ids: list[str]) -> dict[str, str]:
    """One sacct call for every job; pending array tasks are listed by sacct as 'ID_[range]'."""
    if not job_ids:
        return {}
    bases = sorted({job_id.split("_")[0] for job_id in job_ids})
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(bases)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line.split("|") for line in out.splitlines() if "|" in line]
    found = {job: state.split()[0] for job, state in rows}
    if any(job_id not in found for job_id in job_ids):  # accounting lags behind a fresh submission: ask the queue
        queue = subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(bases)], capture_output=True, text=True
        ).stdout
        found |= {
            job: state
            for job, state in (line.split("|") for line in queue.splitlines() if "|" in line)
            if job not in found
        }
    states = {}
    for job_id in job_ids:
        state = found.get(job_id)
        if state is None and "_" not in job_id:  # a whole array: its tasks' states summed up
            tasks = [s for j, s in found.items() if j.startswith(job_id + "_")]
            state = array_state(tasks) if tasks else None
        if state is None:
            base = job_id.split("_")[0]
            state = next((s for j, s in found.items() if j.startswith(base + "_[")), "UNKNOWN")
        states[job_id] = state
    return states


def array_state(tasks: list[str]) -> str:
    failed = [state for state in tasks if state in FAILED]
    if failed:
        return failed[0]
    if all(state in FINISHED for state in tasks):
        return "COMPLETED"
    return "RUNNING" if any(state not in ("PENDING",) for state in tasks) else "PENDING"


def point_state(stages: dict[str, str]) -> PointState:
    """From the states of a point's jobs in pipeline order."""
    values = list(stages.values())
    if any(state in FAILED for state in values):
        return PointState.FAILED
    if "UNKNOWN" in values:
        return PointState.UNKNOWN
    if all(state in FINISHED for state in values):
        return PointState.DONE
    if any(state in ("RUNNING", "COMPLETING", "REQUEUED", "RESIZING") for state in values) or any(
        state in FINISHED for state in values
    ):
        return PointState.RUNNING
    return PointState.QUEUED


def status(directory: Path) -> list[dict[str, Any]]:
    ledger = read_ledger(directory)
    states = job_states([job for point in ledger["points"] for job in point["jobs"].values()])
    return [
        {
            "index": p["index"],
            "state": point_state({s: states[j] for s, j in p["jobs"].items()}),
            "stages": {s: f"{j} {states[j]}" for s, j in p["jobs"].items()},
            "overrides": p["overrides"],
            "run_dir": p["run_dir"],
        }
        for p in ledger["points"]
    ]


def cancel(directory: Path) -> list[str]:
    ledger = read_ledger(directory)
    jobs = [job for point in ledger["points"] for job in point["jobs"].values()]
    states = job_states(jobs)
    open_jobs = [job for job in jobs if states[job] not in FINISHED | FAILED]
    if open_jobs:
        subprocess.run(["scancel", *open_jobs], check=True)
    return open_jobs


def wait(directory: Path, timeout_s: float, poll_s: float = 1.0) -> list[dict[str, Any]]:
    """Until no point is queued or running (scripts and tests; launch.py itself never waits)."""
    deadline = time.monotonic() + timeout_s
    while True:
        points = status(directory)
        if all(p["state"] in (PointState.DONE, PointState.FAILED) for p in points) or time.monotonic() > deadline:
            return points
        time.sleep(poll_s)


def ledger_jobs(run_dir: Path) -> dict[str, str]:
    """The SLURM job ids of this run's jobs, from the ledger of its submission (in it or in its sweep directory)."""
    for directory in (run_dir, run_dir.parent):
        ledger = read_json_object(directory / LEDGER)
        points = ledger.get("points")
        for point in points if isinstance(points, list) else []:
            if (
                isinstance(point, dict)
                and isinstance(point.get("run_dir"), str)
                and isinstance(point.get("jobs"), dict)
                and os.path.realpath(point["run_dir"]) == os.path.realpath(run_dir)
            ):
                return {str(stage): str(job) for stage, job in point["jobs"].items()}
    return {}
