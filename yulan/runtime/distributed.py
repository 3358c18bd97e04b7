"""Bootstraps for multi-task SLURM jobs, computed from SLURM's own environment (never guessed or slept on).

DeepSpeed trainers (OpenRLHF SFT/DPO) run one SLURM task per GPU: each task gets the torch distributed
environment (master address/port, global and local rank, world size). Ray-based PPO runs one task per node:
the first node starts the Ray head, the others join it, the head waits until Ray reports every GPU of the
allocation, runs the driver, and tears Ray down; workers leave when the head says it is done.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping

RAY_PORT = 6379


def hostnames(nodelist: str) -> list[str]:
    """SLURM's compressed node list (e.g. 'gpu[01-04]') expanded by scontrol, in allocation order."""
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    return out.stdout.split()


def master_port(job_id: str) -> int:
    """A port per job, so two jobs sharing a node do not collide."""
    return 20_000 + int(job_id.split("_")[0]) % 20_000


def torch_env(env: Mapping[str, str], hosts: list[str]) -> dict[str, str]:
    tasks, nodes = int(env["SLURM_NTASKS"]), int(env.get("SLURM_JOB_NUM_NODES", env.get("SLURM_NNODES", "1")))
    return {
        "MASTER_ADDR": hosts[0],
        "MASTER_PORT": str(master_port(env["SLURM_JOB_ID"])),
        "WORLD_SIZE": str(tasks),
        "RANK": env["SLURM_PROCID"],
        "LOCAL_RANK": env["SLURM_LOCALID"],
        "LOCAL_WORLD_SIZE": str(tasks // nodes),
        "NODE_RANK": env["SLURM_NODEID"],
    }


def ray_executable() -> str:
    """The `ray` of this interpreter's environment (jobs often run without the environment activated)."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else "ray"


def is_head(env: Mapping[str, str]) -> bool:
    """The job's first node (or a job outside SLURM): where work done once per job runs."""
    return env.get("SLURM_NODEID", "0") == "0"


def ray_start(env: Mapping[str, str], hosts: list[str], gpus: int, reserved_on_head: int = 0) -> tuple[str, list[str]]:
    """('head' | 'worker', the `ray start` command of this task). The head keeps `reserved_on_head` GPUs out of
    Ray (the reward server's)."""
    if is_head(env):
        return "head", [
            ray_executable(),
            "start",
            "--head",
            f"--node-ip-address={hosts[0]}",
            f"--port={RAY_PORT}",
            f"--num-gpus={gpus - reserved_on_head}",
            "--disable-usage-stats",
        ]
    return "worker", [
        ray_executable(),
        "start",
        f"--address={hosts[0]}:{RAY_PORT}",
        f"--num-gpus={gpus}",
        "--disable-usage-stats",
    ]


def ray_gpus() -> float:
    import ray

    ray.init(address="auto", logging_level="ERROR")
    try:
        return ray.cluster_resources().get("GPU", 0.0)
    finally:
        ray.shutdown()


def wait_until(ready: Callable[[], bool], what: str, timeout_s: float, poll_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s:.0f} s")
        time.sleep(poll_s)


def run_ray_job(
    env: Mapping[str, str],
    gpus_per_node: int,
    reserved_on_head: int,
    job_dir: str,
    driver: Callable[[], int],
    timeout_s: float = 600.0,
) -> int:
    """The Ray side of a multi-node PPO job. `driver` runs on the head once every GPU has joined."""
    hosts = hostnames(env["SLURM_JOB_NODELIST"])
    role, start = ray_start(env, hosts, gpus_per_node, reserved_on_head)
    done = Path(job_dir) / f"ray.done.{env['SLURM_JOB_ID']}"
    subprocess.run(start, check=True)
    try:
        if role == "worker":
            wait_until(done.exists, "the head did not finish", timeout_s=float("inf"), poll_s=5.0)
            return 0
        expected = gpus_per_node * len(hosts) - reserved_on_head
        wait_until(lambda: ray_gpus() >= expected, f"Ray did not report {expected} GPUs", timeout_s)
        return driver()
    finally:
        if role == "head":
            done.touch()
        subprocess.run([ray_executable(), "stop", "--force"], capture_output=True)


def task_environment() -> dict[str, str]:
    """What this SLURM task would get: its torch distributed environment and its GPUs (a check for new clusters:
    `srun -N2 --ntasks-per-node=8 --gpus-per-node=8 python -m yulan.runtime.distributed`)."""
    import os

    return {
        **torch_env(os.environ, hostnames(os.environ["SLURM_JOB_NODELIST"])),
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(task_environment()))
