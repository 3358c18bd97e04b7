"""Run a plan on this machine: every check first, then the run directory, then the jobs in order."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from launchers import manifest
from launchers.plan import Run
from schema.errors import ConfigError, Problem
from schema.experiment import Experiment
from schema.fields import plain
from yulan.runtime.lifecycle import REQUEUE_STATUS
from yulan.stages import available, missing


def comparable(config: dict) -> dict:
    """A config as it decides results: how to treat an existing run directory is not part of it."""
    return {**config, "launcher": {k: v for k, v in config["launcher"].items() if k != "on_existing_run"}}


def preflight(experiment: Experiment, run: Run, git: dict, local: bool = True) -> list[Problem]:
    """Everything checked before a run directory is written; `local`: the jobs run on this machine."""
    problems = []
    existing = Path(run.run_dir) / "config.json"
    if Path(run.run_dir).exists() and experiment.launcher.on_existing_run == "refuse":
        problems.append(Problem("run_dir", "the run directory exists; nothing is overwritten", run.run_dir,
                                "choose another name=/run_root=, delete it, or set launcher.on_existing_run=resume"))
    elif existing.exists() and comparable(json.loads(existing.read_text())) != comparable(plain(experiment)):
        problems.append(Problem("launcher.on_existing_run", "a run resumes only with the config it started with",
                                "resume", f"compare with `yulan show` against {existing}, or start a new run"))
    if experiment.launcher.refuse_dirty_tree and git["dirty"]:
        problems.append(Problem("launcher.refuse_dirty_tree", "the git tree has uncommitted changes", True,
                                "commit or stash them, or set launcher.refuse_dirty_tree=false"))
    for job in {job.stage: job for job in run.jobs}.values():  # a stage split into parts is checked once
        if not available(job.stage, job.engine):
            problems.append(Problem(f"{job.stage}.engine", f"stage '{job.stage}' has no {job.engine or 'local'} "
                                    "implementation in this version", job.engine,
                                    "run the stages that exist (stages=[...]) or use another engine"))
        problems += missing(experiment, job.stage, here=local)
        if local and job.engine == "openrlhf" and not (shutil.which("nvidia-smi") and importlib.util.find_spec("openrlhf")):
            problems.append(Problem(f"{job.stage}.engine", "engine=openrlhf needs GPUs and the openrlhf package on "
                                    "this machine", "openrlhf", f"use launcher=slurm, or {job.stage}.engine=native"))
    return problems


def execute(experiments: list[Experiment], runs: list[Run]) -> int:
    git = manifest.git_state()
    problems = [p for experiment, run in zip(experiments, runs) for p in preflight(experiment, run, git)]
    if problems:
        raise ConfigError("cannot run on this machine; nothing was written", problems)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(manifest.REPO_ROOT), os.environ.get("PYTHONPATH")])))
    for experiment, run in zip(experiments, runs):
        try:
            lock = manifest.claim(Path(run.run_dir), experiment.launcher.on_existing_run == "refuse")
        except manifest.RunDirTaken as error:
            raise ConfigError("cannot run; nothing was written", [Problem(
                "run_dir", "one launch at a time per run directory", run.run_dir,
                f"{error}: wait for it, or choose another name=/run_root=")]) from None
        with lock:
            run_dir = manifest.write(experiment, run, git)
            print(f"run directory: {run_dir}", file=sys.stderr)
            for job in run.jobs:
                for shard in job.shards:  # an array's tasks, one after another
                    command = job.command + (["--shard", str(shard)] if shard is not None else [])
                    print(f"[{job.name}] {' '.join(command)}", file=sys.stderr)
                    status = run_forwarding_stop([sys.executable, *command[1:]], env)  # this interpreter, not PATH's
                    if status == REQUEUE_STATUS:
                        print(f"[{job.name}] stopped at a checkpoint as asked; later stages were not run; relaunch "
                              "with launcher.on_existing_run=resume to continue", file=sys.stderr)
                        return status
                    if status:
                        print(f"[{job.name}] failed with exit status {status}; later stages were not run", file=sys.stderr)
                        return status
    return 0


def run_forwarding_stop(command: list[str], env: dict[str, str]) -> int:
    """The stage as a child process; a SIGTERM to this launcher reaches it (it checkpoints and exits with
    REQUEUE_STATUS, as under SLURM), and its exit status is this launcher's."""
    child = subprocess.Popen(command, env=env)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum))
    try:
        return child.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
