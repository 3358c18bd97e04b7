"""`yulan report DIR [--output FILE]`: DIR/report.html, one self-contained page of a run or sweep."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "report", help="write report.html for a run or sweep directory (self-contained, plots inline)"
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument("--output", type=Path, help="where to write the page (default DIR/report.html)")


def run(args: argparse.Namespace) -> int:
    from yulan import report
    from yulan.runtime.records import skipped_lines

    try:
        target, skipped = report.write(args.directory, args.output)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if skipped:
        print(f"warning: {skipped_lines(skipped)}", file=sys.stderr)
    if not target.direct:  # the path, never into a page written to standard output
        print(target.named)
    return 0
