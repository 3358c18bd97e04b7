"""Run a plan on this machine: every check first, then the run directory, then the jobs in order, in the foreground
(the Launcher protocol of yulan.launchers). A run directory, or a sweep directory of them, is what it leaves."""

from __future__ import annotations

import fcntl
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from yulan.launchers import manifest
from yulan.launchers.plan import Run, plan
from yulan.launchers.preflight import preflight
from yulan.runtime.lifecycle import DONE, NOT_STARTED, REQUEUE_STATUS, STAGE_STATES, STARTED, stage_state
from yulan.runtime.records import read_json_object
from yulan.schema.errors import ConfigError, Problem
from yulan.schema.experiment import Experiment

POINT_STATES = STAGE_STATES  # a local point is done, started or not started as its stages are


def dry_run(experiments: list[Experiment], runs: list[Run]) -> list[dict[str, Any]]:
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


def status(directory: Path) -> list[dict[str, Any]]:
    runs = manifest.run_dirs(directory)
    if not runs:
        raise FileNotFoundError(
            f"{directory} holds no ledger.json (a SLURM submission) and no config.json (a run "
            "directory): pass the directory launch.py printed"
        )
    points = []
    for index, run_dir in enumerate(runs):
        names = manifest.planned_stages(
            read_json_object(run_dir / "plan.json"), read_json_object(run_dir / "config.json")
        )
        stages = {stage: stage_state(run_dir / stage) for stage in names}
        done = all(state == DONE for state in stages.values())
        started = any(state != NOT_STARTED for state in stages.values())
        points.append(
            {
                "index": index,
                "state": DONE if done else STARTED if started else NOT_STARTED,
                "stages": stages,
                "overrides": manifest.text_list(read_json_object(run_dir / "manifest.json").get("overrides")),
                "run_dir": str(run_dir),
            }
        )
    return points


def cancel(directory: Path) -> list[str]:
    """A local launch holds its run directory's lock while it runs: SIGTERM to that process, which passes it to the
    stage (it checkpoints and stops, as under SLURM). Launches on other hosts are named, not signalled."""
    stopped = []
    if not manifest.run_dirs(directory):
        raise FileNotFoundError(f"{directory} holds no run (no config.json): pass the directory launch.py printed")
    for run_dir in manifest.run_dirs(directory):
        lock = run_dir / manifest.LOCK
        if not lock.is_file():
            continue
        with lock.open() as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                continue  # nobody holds it: nothing runs there
            except BlockingIOError:
                owner = handle.read().split()
        if len(owner) < 4 or owner[0] != "pid" or not owner[1].isdigit():
            continue
        if owner[3] != platform.node():
            raise FileNotFoundError(f"{run_dir} is run by a launch on {owner[3]} (pid {owner[1]}): stop it there")
        os.kill(int(owner[1]), signal.SIGTERM)
        stopped.append(f"pid {owner[1]} ({run_dir})")
    return stopped


def resubmit(directory: Path) -> list[int]:
    """The points not done, run again in their run directories (launcher.on_existing_run=resume): finished stages
    are skipped, a stopped one resumes from its checkpoint."""
    again = [point for point in status(directory) if point["state"] != "done"]
    for point in again:
        run_dir = Path(point["run_dir"])
        experiment = Experiment.model_validate_json((run_dir / "config.json").read_text())
        experiment = experiment.model_copy(
            update={"launcher": experiment.launcher.model_copy(update={"on_existing_run": "resume"})}
        )
        code = launch([experiment], [plan(experiment, point["overrides"])], multirun=False)
        if code:
            raise ChildProcessError(f"point {point['index']} ({run_dir}) failed again with exit status {code}")
    return [point["index"] for point in again]
