"""The run directory as the unit of reproducibility: resolved config, overrides, plan, code version, environment."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from launchers.plan import Run
from schema.experiment import Experiment
from schema.fields import plain

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pydantic", "hydra-core", "omegaconf", "submitit", "torch", "transformers", "openrlhf", "vllm", "deepspeed", "wandb")


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
        return result.stdout if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD").strip() or None
    status = git("status", "--porcelain")
    return {"commit": commit, "dirty": bool(status.strip()), "status": status.splitlines(), "diff": git("diff", "HEAD")}


@cache
def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def resolved(experiment: Experiment) -> dict[str, Any]:
    """Every setting plus every derived value, as the jobs see them."""
    return experiment.model_dump(mode="json")


def write(experiment: Experiment, run: Run, git: dict[str, Any]) -> Path:
    run_dir = Path(run.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(plain(experiment), indent=2))  # what jobs load
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when present: sweeps write hundreds of these
    (run_dir / "resolved.yaml").write_text(yaml.dump(resolved(experiment), Dumper=dumper, sort_keys=False, allow_unicode=True))
    (run_dir / "plan.json").write_text(json.dumps(run.to_json(), indent=2))
    if git["dirty"] and git["diff"]:
        (run_dir / "code.diff").write_text(git["diff"])
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
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return run_dir
