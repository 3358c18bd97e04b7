"""Benchmark: one native PPO rollout iteration (generate, reward, score, train) per estimator on the smoke models,
with the critic (gae) and without (group_norm, rloo, reinforce), each run in its own process, interleaved A/B.

    python benchmarks/bench_estimators.py [--rounds 3] [--rollouts 3] [--estimators gae,group_norm,rloo,reinforce]

Prints, per estimator, the median over rounds of the time per rollout iteration and its training part, and the
peak RSS of the process: what dropping the critic saves.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHILD = """
import json, resource, sys
from yulan.compose import load
from yulan.engines.native import ppo
from yulan.runtime.records import write_jsonl
from yulan.cli.job import run_stage
estimator, rollouts, directory = sys.argv[1], int(sys.argv[2]), sys.argv[3]
write_jsonl(f"{directory}/prompts.jsonl", [{"id": str(i), "prompt": f"What is {i} + {i}?", "answer": str(2 * i),
                                           "mean_reward": 0.0} for i in range(64)])
overrides = ["stages=[ppo]", "ppo.actor.init_from=tiny:policy", f"ppo.prompts.source={directory}/prompts.jsonl",
             "ppo.prompts.count=64", f"ppo.max_steps={rollouts}", "ppo.save_every_steps=1000", f"run_dir={directory}",
             f"ppo.estimator={estimator}", "ppo.rollout_batch_size=8", "ppo.train_batch_size=16",
             "ppo.micro_train_batch_size=4", "ppo.micro_rollout_batch_size=8", "ppo.generate_max_length=48"]
if estimator == "gae":
    overrides.append("ppo.actor.frozen_steps=0")
assert run_stage(load(overrides), "ppo", f"{directory}/ppo") == 0
metrics = [json.loads(line) for line in open(f"{directory}/ppo/metrics.jsonl")]
print(json.dumps({"step_s": [m["ppo/step_time_s"] for m in metrics],
                  "train_s": [m["ppo/train_time_s"] for m in metrics],
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rollouts", type=int, default=3)
    parser.add_argument("--estimators", default="gae,group_norm,rloo,reinforce")
    args = parser.parse_args()
    names = args.estimators.split(",")
    results: dict[str, list[dict]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        for name in names if round_index % 2 == 0 else reversed(names):  # A/B interleaved, order alternating
            with tempfile.TemporaryDirectory() as directory:
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, name, str(args.rollouts), directory],
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                    check=True,
                )
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'estimator':20}{'s/rollout':>12}{'train s':>10}{'peak RSS MB':>14}")
    for name in names:
        runs = results[name]
        step = statistics.median(statistics.median(r["step_s"][1:] or r["step_s"]) for r in runs)
        train = statistics.median(statistics.median(r["train_s"][1:] or r["train_s"]) for r in runs)
        rss = statistics.median(r["rss_mb"] for r in runs)
        print(f"{name:20}{step:12.3f}{train:10.3f}{rss:14.0f}")


if __name__ == "__main__":
    main()
