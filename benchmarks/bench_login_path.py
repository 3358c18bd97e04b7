"""Benchmark: wall time of `yulan launch experiment=ppo_yulan dry_run=true` next to a bare
`import hydra, pydantic, omegaconf`, interleaved round by round (this machine is noisy).

    python benchmarks/bench_login_path.py [--rounds 15] [--against DIR]

Prints the median of each, cold (compose cache off: Hydra composes) and warm (cache hit), their ratios to the
bare import, and which heavy packages the launch path imported (must be none). `--against DIR` (another checkout,
e.g. `git worktree add /tmp/before HEAD~1`) times its launch.py in the same rounds.
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


def wall(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--against", type=Path, help="another checkout to time in the same rounds")
    args = parser.parse_args()
    launch = [sys.executable, "launch.py", "experiment=ppo_yulan", "dry_run=true"]
    checkouts = {"this": REPO, **({"against": args.against.resolve()} if args.against else {})}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, XDG_CACHE_HOME=cache)
        times: dict[str, list[float]] = {}
        for root in checkouts.values():
            wall(launch, root, dict(env, PYTHONPATH=str(root)))  # fill the cache
        for _ in range(args.rounds):
            times.setdefault("bare", []).append(
                wall([sys.executable, "-c", "import hydra, pydantic, omegaconf"], REPO, env)
            )
            for name, root in checkouts.items():
                here = dict(env, PYTHONPATH=str(root))
                times.setdefault(f"{name} cold", []).append(wall(launch, root, dict(here, YULAN_COMPOSE_CACHE="0")))
                times.setdefault(f"{name} warm", []).append(wall(launch, root, here))
        probe = (
            "import sys, io, contextlib\nfrom yulan.cli import launch\n"
            "with contextlib.redirect_stdout(io.StringIO()): launch.main(['experiment=ppo_yulan', 'dry_run=true'])\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])"
        )
        heavy = subprocess.run(
            [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True
        ).stdout.strip()
    bare = statistics.median(times.pop("bare"))
    print(f"median of {args.rounds} interleaved rounds, wall seconds")
    print(f"  python -c 'import hydra, pydantic, omegaconf'   {bare:.3f}")
    for name, values in times.items():
        print(
            f"  launch.py ppo_yulan dry_run, {name:13}   {statistics.median(values):.3f}   "
            f"{statistics.median(values) / bare:.2f}x"
        )
    print(f"  heavy packages imported by the launch path: {heavy}")


if __name__ == "__main__":
    main()
