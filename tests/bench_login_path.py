"""Benchmark: wall time of `launch.py experiment=ppo_yulan dry_run=true` next to a bare `import hydra, pydantic`.

    python tests/bench_login_path.py [--repeats 10]

Prints the median of each, cold (compose cache off: Hydra composes) and warm (cache hit), their ratios to the
bare import, and which heavy packages the launch path imported (must be none).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "vllm", "deepspeed", "ray", "openrlhf", "wandb")


def wall(argv: list[str], env: dict[str, str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    repeats = parser.parse_args().repeats
    launch = [sys.executable, "launch.py", "experiment=ppo_yulan", "dry_run=true"]
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, XDG_CACHE_HOME=cache)
        bare = wall([sys.executable, "-c", "import hydra, pydantic"], env, repeats)
        cold = wall(launch, dict(env, YULAN_COMPOSE_CACHE="0"), repeats)
        wall(launch, env, 1)  # fill the cache
        warm = wall(launch, env, repeats)
        probe = (
            "import sys, io, contextlib, launch\n"
            "with contextlib.redirect_stdout(io.StringIO()): launch.main(['experiment=ppo_yulan', 'dry_run=true'])\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])"
        )
        heavy = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True).stdout.strip()
    print(f"median of {repeats} runs, wall seconds")
    print(f"  python -c 'import hydra, pydantic'          {bare:.3f}")
    print(f"  launch.py ppo_yulan dry_run, cold (Hydra)   {cold:.3f}   {cold / bare:.2f}x")
    print(f"  launch.py ppo_yulan dry_run, warm (cached)  {warm:.3f}   {warm / bare:.2f}x")
    print(f"  heavy packages imported by launch.py: {heavy}")


if __name__ == "__main__":
    main()
