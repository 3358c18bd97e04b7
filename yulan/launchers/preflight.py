"""What every launcher checks before anything is written or queued: the run directory, the git tree, and that each
stage can be carried out (`local`: on this machine)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from yulan.launchers.manifest import LOCK
from yulan.launchers.plan import Run
from yulan.runtime.records import read_json_object
from yulan.schema.errors import Problem
from yulan.schema.experiment import Experiment
from yulan.schema.fields import plain
from yulan.stages import available, prerun_problems


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A config as it decides results: how to treat an existing run directory is not part of it."""
    return {**config, "launcher": {k: v for k, v in config["launcher"].items() if k != "on_existing_run"}}


RUN_FIELDS = ("name", "stages", "launcher", "model")  # what every run's config.json holds
RUN_RECORDS = ("config.json", "manifest.json", "plan.json", "launches.jsonl", LOCK)  # what a launch writes first


def run_dir_problems(experiment: Experiment, run: Run) -> list[Problem]:
    """What makes the run directory unusable whatever happens before the launch, so the dry run refuses it too: a
    file where a directory must be, and a directory to resume that is not a run of this product."""
    run_dir = Path(run.run_dir)
    for path in (run_dir, *run_dir.parents):
        if path.is_dir():
            break
        if path.exists() or path.is_symlink():
            return [
                Problem(
                    "run_dir" if experiment.run_dir else "run_root",
                    f"{path} is not a directory, and the run directory {run_dir} would be made in it",
                    experiment.run_dir or experiment.run_root,
                    "choose another run_root= (or run_dir=), or move that file away",
                )
            ]
    if experiment.launcher.on_existing_run != "resume" or not run_dir.is_dir():
        return []
    config = run_dir / "config.json"
    if not config.exists():
        if any(run_dir.iterdir()) and not any((run_dir / name).exists() for name in RUN_RECORDS):
            return [not_a_run(run_dir, f"holds files but none of a run's ({', '.join(RUN_RECORDS)})")]
        return []  # empty, or a run whose config.json is gone (its stages' markers decide what runs again)
    recorded = read_json_object(config)
    absent = [field for field in RUN_FIELDS if field not in recorded]
    if absent or not isinstance(recorded.get("launcher"), dict):
        return [not_a_run(run_dir, f"its config.json is not a run's (no {', '.join(absent) or 'launcher settings'})")]
    return []


def not_a_run(run_dir: Path, why: str) -> Problem:
    return Problem(
        "launcher.on_existing_run",
        f"resume continues a run this product started; {run_dir} {why}",
        "resume",
        "name the run directory that launch.py printed, or choose another name=/run_root=",
    )


def preflight(experiment: Experiment, run: Run, git: dict[str, Any], local: bool = True) -> list[Problem]:
    """Everything checked before a run directory is written; `local`: the jobs run on this machine."""
    problems = run_dir_problems(experiment, run)
    if problems:
        return problems
    existing = Path(run.run_dir) / "config.json"
    if Path(run.run_dir).exists() and experiment.launcher.on_existing_run == "refuse":
        problems.append(
            Problem(
                "run_dir",
                "the run directory exists; nothing is overwritten",
                run.run_dir,
                "choose another name=/run_root=, delete it, or set launcher.on_existing_run=resume",
            )
        )
    elif existing.exists() and comparable(read_json_object(existing)) != comparable(plain(experiment)):
        problems.append(
            Problem(
                "launcher.on_existing_run",
                "a run resumes only with the config it started with",
                "resume",
                f"compare with `yulan show` against {existing}, or start a new run",
            )
        )
    if experiment.launcher.refuse_dirty_tree and git["dirty"]:
        problems.append(
            Problem(
                "launcher.refuse_dirty_tree",
                "the git tree has uncommitted changes",
                True,
                "commit or stash them, or set launcher.refuse_dirty_tree=false",
            )
        )
    for job in {job.stage: job for job in run.jobs}.values():  # a stage split into parts is checked once
        if not available(job.stage, job.engine):
            problems.append(
                Problem(
                    f"{job.stage}.engine",
                    f"stage '{job.stage}' has no {job.engine or 'local'} implementation in this version",
                    job.engine,
                    "run the stages that exist (stages=[...]) or use another engine",
                )
            )
        problems += prerun_problems(experiment, job.stage, here=local)
        if local and job.engine == "openrlhf" and not shutil.which("nvidia-smi"):
            problems.append(
                Problem(
                    f"{job.stage}.engine",
                    "engine=openrlhf needs GPUs on this machine",
                    "openrlhf",
                    f"use launcher=slurm, or {job.stage}.engine=native",
                )
            )
    return problems
