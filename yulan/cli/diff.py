"""`yulan diff A... -- B...` and `yulan diff --paper [overrides...]`: typed differences of effective values."""

from __future__ import annotations

import argparse
import json
import sys

from yulan.cli.common import add_overrides, effective
from yulan.compose import compose, paper_differences, validate


def add_parser(sub) -> None:
    parser = sub.add_parser("diff", help="typed differences between two experiments, or against the report")
    parser.add_argument("--paper", action="store_true")
    add_overrides(parser)


def overrides_of(argv: list[str]) -> list[str]:
    """The raw arguments after `diff`, '--' kept (argparse drops it, and it separates the two sides), less
    --paper and `--experiments DIR` (argparse has read them)."""
    out, skip = [], False
    for arg in argv[argv.index("diff") + 1 :]:
        if skip:
            skip = False
        elif arg in ("--experiments", "--config-dir", "-cd"):
            skip = True
        elif arg != "--paper" and not arg.startswith(("--experiments=", "--config-dir=")):
            out.append(arg)
    return out


def run(args: argparse.Namespace) -> int:
    if args.paper:
        experiment = validate(compose(args.overrides))
        rows = paper_differences(experiment)
        print(f"{experiment.name} vs the report's recipe: {len(rows)} difference(s)")
        for row in rows:
            print(
                f"  {row['path']}: report {json.dumps(row['report'])} -> {json.dumps(row['value'])}    ({row['where']})"
            )
        return 0
    if "--" not in args.overrides:
        print("error: yulan diff needs two sides: yulan diff A... -- B... (or --paper)", file=sys.stderr)
        return 1
    split = args.overrides.index("--")
    left_overrides, right_overrides = args.overrides[:split], args.overrides[split + 1 :]
    _, left = effective(left_overrides)
    _, right = effective(right_overrides)
    paths = dict.fromkeys([*left, *right])
    rows = [(path, left.get(path), right.get(path)) for path in paths if left.get(path) != right.get(path)]
    print(f"A: {' '.join(left_overrides) or '(defaults)'}\nB: {' '.join(right_overrides) or '(defaults)'}")
    print(f"{len(rows)} difference(s)")
    for path, a, b in rows:
        print(f"  {path}: {json.dumps(a)} -> {json.dumps(b)}")
    return 0
