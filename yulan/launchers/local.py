"""Run a plan on this machine: every check first, then the run directory, then the jobs in order. A launcher
module offers `dry_run(experiments, runs)` (the plan as JSON data) and `launch(experiments, runs, multirun)` (an exit
status); launch.py picks the module named by `launcher.kind`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from yulan.launchers import manifest
from yulan.launchers.plan import Run
from yulan.launchers.preflight import preflight
from yulan.runtime.lifecycle import REQUEUE_STATUS
from yulan.schema.errors import ConfigError, Problem
from yulan.schema.experiment import Experiment


def dry_run(experiments: list[Experiment], runs: list[Run]) -> list[dict]:
    return [run.to_json() for run in runs]


def launch(experiments: list[Experiment], runs: list[Run], multirun: bool) -> int:
    git = manifest.git_state()
    problems = [p for experiment, run in zip(experiments, runs) for p in preflight(experiment, run, git)]
    if problems:
        raise ConfigError("cannot run on this machine; nothing was written", problems)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(manifest.REPO_ROOT), os.environ.get("PYTHONPATH")]))
    )
    for experiment, run in zip(experiments, runs):
        try:
            lock = manifest.claim(Path(run.run_dir), experiment.launcher.on_existing_run == "refuse")
        except manifest.RunDirTaken as error:
            raise ConfigError(
                "cannot run; nothing was written",
                [
                    Problem(
                        "run_dir",
                        "one launch at a time per run directory",
                        run.run_dir,
                        f"{error}: wait for it, or choose another name=/run_root=",
                    )
                ],
            ) from None
        with lock:
            run_dir = manifest.write(experiment, run, git)
            print(f"run directory: {run_dir}", file=sys.stderr)
            for job in run.jobs:
                for shard in job.shards:  # an array's tasks, one after another
                    command = job.command + (["--shard", str(shard)] if shard is not None else [])
                    print(f"[{job.name}] {' '.join(command)}", file=sys.stderr)
                    status = run_forwarding_stop([sys.executable, *command[1:]], env)  # this interpreter, not PATH's
                    if status == REQUEUE_STATUS:
                        print(
                            f"[{job.name}] stopped at a checkpoint as asked; later stages were not run; relaunch "
                            "with launcher.on_existing_run=resume to continue",
                            file=sys.stderr,
                        )
                        return status
                    if status:
                        print(
                            f"[{job.name}] failed with exit status {status}; later stages were not run", file=sys.stderr
                        )
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
