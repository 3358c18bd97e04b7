"""A model server for the length of a job: the configured OpenAI-compatible endpoint, or vLLM's server started
here on the job's GPUs, waited for until healthy, and stopped (its whole process group) when the job is done."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from yulan.runtime.vllm_engine import serve_command, server_environment
from yulan.schema.generation import VllmEngine

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def visible_gpus() -> int:
    """GPUs this job may use (CUDA_VISIBLE_DEVICES, else SLURM's count, else 1) — without importing torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return max(1, len([d for d in visible.split(",") if d.strip()]))
    return max(1, int(os.environ.get("SLURM_GPUS_ON_NODE", "1") or 1))


def healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(base_url + "/health", timeout=5) as reply:
            return reply.status == 200
    except OSError:
        return False


def tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@contextmanager
def serving(
    command: list[str],
    base_url: str,
    log_path: Path,
    startup_timeout_s: float = 1800.0,
    environment: dict[str, str] | None = None,
) -> Iterator[str]:
    """Run `command` (a server answering GET /health at `base_url`) until the block ends; yields `base_url`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as server_log:
        process = subprocess.Popen(
            command,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=os.environ | (environment or {}),
        )
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not healthy(base_url):
            if process.poll() is not None:
                raise RuntimeError(
                    f"the model server exited with status {process.returncode} before it was ready; "
                    f"its log ({log_path}) ends:\n{tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"the model server was not healthy after {startup_timeout_s:.0f} s; log: {log_path}")
            time.sleep(1.0)
        log.info(f"[server] ready at {base_url}: {' '.join(command)}")
        yield base_url
    finally:
        stop(process)


def stop(process: subprocess.Popen, grace_s: float = 30.0) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def endpoint_for(model: str, endpoint: str | None, gpus: int, log_dir: Path, engine: VllmEngine) -> Iterator[str]:
    """The OpenAI-compatible base URL (…/v1) to ask `model` at: `endpoint`, or `vllm serve` started here with the
    engine settings of generation.vllm."""
    if endpoint:
        yield endpoint
        return
    port = free_port()
    with serving(
        serve_command(model, port, gpus, engine),
        f"http://127.0.0.1:{port}",
        log_dir / f"vllm-{model.replace('/', '--')}.log",
        engine.startup_timeout_s,
        server_environment(engine, log_dir / ".vllm-metadata"),
    ) as url:
        yield url + "/v1"
