"""`yulan show [overrides...] [--all] [--json] [--sources]`: the settings of the stages an experiment runs."""

from __future__ import annotations

import argparse

from yulan.cli.common import add_overrides
from yulan.compose import compose, validate


def add_parser(sub) -> None:
    parser = sub.add_parser("show", help="the effective settings of the stages it runs, derived values included")
    parser.add_argument("--all", action="store_true", help="every section, also those of stages it does not run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--sources", action="store_true", help="annotate each value with the file or override that set it"
    )
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    from yulan.compose.show import render

    composed = compose(args.overrides)
    print(render(composed, validate(composed), everything=args.all, as_json=args.json, sources=args.sources), end="")
    return 0
