"""Benchmark: validate and submit a 256-point sweep to the local SLURM, next to Hydra's own submitit launcher.

    python -m yulan.launchers.slurm.local_cluster start && pip install hydra-submitit-launcher
    PYTHONPATH=. python benchmarks/bench_sweep_submit.py [--points 256]

Scheduler calls are counted with logging shims for sbatch/sacct/squeue/scontrol/scancel placed first on PATH.
Ours returns once every job is queued (then the benchmark cancels them); Hydra's launcher blocks until every job
has finished, so for it both the time to its sbatch call and the time until it returns are shown.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMANDS = ("sbatch", "sacct", "squeue", "scontrol", "scancel")

HYDRA_APP = """
import hydra

@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg):
    return cfg.seed

if __name__ == "__main__":
    main()
"""
HYDRA_CONFIG = """
defaults:
  - override hydra/launcher: submitit_slurm
seed: 0
hydra:
  launcher:
    partition: cpu
    timeout_min: 10
    cpus_per_task: 1
    mem_gb: 1
    array_parallelism: 16
"""


def shims(directory: Path, log: Path) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        real = shutil.which(name)
        shim = directory / name
        shim.write_text(f'#!/bin/sh\necho "{name} $(date +%s.%N)" >> {log}\nexec {real} "$@"\n')
        shim.chmod(0o755)
    return dict(os.environ, PATH=f"{directory}:{os.environ['PATH']}")


def calls(log: Path) -> dict[str, int]:
    lines = log.read_text().splitlines() if log.exists() else []
    return {name: sum(line.split()[0] == name for line in lines) for name in COMMANDS}


def first_sbatch(log: Path) -> float | None:
    for line in log.read_text().splitlines() if log.exists() else []:
        if line.startswith("sbatch "):
            return float(line.split()[1])
    return None


def ours(points: int, work: Path) -> dict:
    log = work / "ours.log"
    env = shims(work / "shims-ours", log)
    started = time.time()
    result = subprocess.run(
        [
            sys.executable,
            "launch.py",
            "-m",
            "experiment=smoke",
            "launcher=slurm",
            "cluster=local",
            "stages=[curation]",
            "tracking.mode=disabled",
            "launcher.array_parallelism=16",
            f"seed=range(0,{points})",
            f"run_root={work}/ours",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    returned = time.time() - started
    if result.returncode:
        raise SystemExit(f"launch.py failed:\n{result.stderr[-2000:]}")
    counted = calls(log)
    subprocess.run([sys.executable, "-m", "yulan.cli", "cancel", f"{work}/ours/smoke"], cwd=REPO, capture_output=True)
    return {
        "returned_s": returned,
        "first_sbatch_s": first_sbatch(log) - started,
        "calls": counted,
        "ledger_points": len(json.loads((work / "ours" / "smoke" / "ledger.json").read_text())["points"]),
    }


def hydra(points: int, work: Path) -> dict:
    app = work / "hydra_app"
    app.mkdir()
    (app / "app.py").write_text(HYDRA_APP)
    (app / "config.yaml").write_text(HYDRA_CONFIG)
    log = work / "hydra.log"
    env = shims(work / "shims-hydra", log)
    started = time.time()
    result = subprocess.run(
        [sys.executable, "app.py", "-m", f"seed=range(0,{points})", f"hydra.sweep.dir={work}/hydra"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
    )
    returned = time.time() - started
    if result.returncode:
        raise SystemExit(f"hydra failed:\n{result.stderr[-2000:]}")
    return {"returned_s": returned, "first_sbatch_s": first_sbatch(log) - started, "calls": calls(log)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        work = Path(tmp)
        a = ours(args.points, work)
        b = hydra(args.points, work)
    print(f"{args.points}-point sweep on the local SLURM")
    print(f"{'':28}{'validate+submit (s)':>22}{'launcher returns (s)':>22}  scheduler calls")
    for name, r in (("launch.py (this project)", a), ("hydra-submitit-launcher", b)):
        print(f"{name:28}{r['first_sbatch_s']:>22.2f}{r['returned_s']:>22.2f}  {json.dumps(r['calls'])}")
    print(
        "(Hydra's launcher returns only after every job has finished; ours returns once they are queued and"
        f" wrote a ledger of {a['ledger_points']} points.)"
    )


if __name__ == "__main__":
    main()
