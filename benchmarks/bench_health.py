"""What watching a PPO run's health costs.

OpenRLHF calls the reward function once per sample: this times that call without the health watch (the anchor) and
with it (counting the response's tokens, the truncation check, gathering the sample under the file lock, and for
the call that completes a rollout its statistics and rules), A/B interleaved, at two rollout sizes (the cost per call
must not grow with the rollout). Then the native engine's statistics of one rollout. The reward model is left out
(a constant score) so that what is timed is what the watch adds; a real reward model costs far more per sample.

    python benchmarks/bench_health.py [--samples-per-rollout 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from yulan.rewards.health import RewardFunctionWatch, health_samples, sample_statistics  # noqa: E402
from yulan.rewards.reward import YulanReward, for_openrlhf  # noqa: E402
from yulan.runtime import tiny  # noqa: E402
from yulan.schema.health import HealthConfig  # noqa: E402
from yulan.schema.reward import RewardConfig  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "yulan" / "data" / "sft_samples.jsonl"


def samples(count: int) -> list[tuple[str, str]]:
    """(prompt, query) pairs: ChatML prompts and answers of a few hundred to ~1,500 tokens from the sample data."""
    texts = [m["content"] for line in DATA.read_text().splitlines() for m in json.loads(line)["messages"]]
    out = []
    for i in range(count):
        prompt = f"<|im_start|>user\n{texts[i % len(texts)]}<|im_end|>\n<|im_start|>assistant\n"
        answer = " ".join(texts[(i + k) % len(texts)] for k in range(1 + i % 12))
        out.append((prompt, prompt + answer + "<|im_end|>"))
    return out


def per_call_us(reward_func, calls: list[tuple[str, str]]) -> float:
    started = time.perf_counter()
    for prompt, query in calls:
        reward_func([query], [prompt], [""])
    return (time.perf_counter() - started) / len(calls) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples-per-rollout", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    config = RewardConfig()
    reward = YulanReward(config, score_texts=lambda texts: [0.0] * len(texts))
    tokenizer_path = tiny.resolve("tiny:policy", 4096, 1024)
    size = args.samples_per_rollout
    calls = samples(size)
    timings: dict[str, list[float]] = {
        "anchor: reward function": [],
        f"watched, rollout {size}": [],
        "watched, rollout 64": [],
    }
    with tempfile.TemporaryDirectory() as scratch:
        watched = {
            rollout: for_openrlhf(
                reward,
                RewardFunctionWatch(
                    f"{scratch}/{rollout}",
                    HealthConfig(),
                    config.penalties,
                    rollout,
                    2048,
                    tokenizer_path,
                    config.actor_stop_strings,
                ),
            )
            for rollout in (size, 64)
        }
        for func in (for_openrlhf(reward), *watched.values()):
            per_call_us(func, calls[:8])  # warm up: imports, the tokenizer, the regexes
        for _ in range(args.rounds):  # A/B interleaved: the machine's noise falls on every variant alike
            timings["anchor: reward function"].append(per_call_us(for_openrlhf(reward), calls))
            timings[f"watched, rollout {size}"].append(per_call_us(watched[size], calls))
            timings["watched, rollout 64"].append(per_call_us(watched[64], calls))
        lines = sum(1 for _ in open(f"{scratch}/{size}/metrics.jsonl"))
    anchor = statistics.median(timings["anchor: reward function"])
    print(f"per reward-function call, {size} samples per round, {args.rounds} rounds (median):")
    for name, values in timings.items():
        median = statistics.median(values)
        print(
            f"  {name:28} {median:9.0f} us/sample   x{median / anchor:.2f} of the anchor   (+{median - anchor:.0f} us)"
        )
    print(f"  rollouts judged at {size}: {lines} (expected {(8 + args.rounds * size) // size})")

    out = reward([q for _, q in calls], [p for p, _ in calls], [""] * size)
    responses = [reward.response_of(q, p) for p, q in calls]
    started = time.perf_counter()
    for _ in range(5):
        sample_statistics(
            health_samples(
                [p for p, _ in calls],
                responses,
                [len(r) // 4 for r in responses],
                [False] * size,
                out,
                config.penalties,
            )
        )
    print(f"native engine: statistics of a {size}-sample rollout in {(time.perf_counter() - started) / 5 * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
