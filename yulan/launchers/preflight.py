"""What every launcher checks before anything is written or queued: the run directory, the git tree, and that each
stage can be carried out (`local`: on this machine)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from yulan.launchers.plan import Run
from yulan.schema.errors import Problem
from yulan.schema.experiment import Experiment
from yulan.schema.fields import plain
from yulan.stages import available, prerun_problems


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A config as it decides results: how to treat an existing run directory is not part of it."""
    return {**config, "launcher": {k: v for k, v in config["launcher"].items() if k != "on_existing_run"}}


def preflight(experiment: Experiment, run: Run, git: dict[str, Any], local: bool = True) -> list[Problem]:
    """Everything checked before a run directory is written; `local`: the jobs run on this machine."""
    problems = []
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
    elif existing.exists() and comparable(json.loads(existing.read_text())) != comparable(plain(experiment)):
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
