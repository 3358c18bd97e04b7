"""`yulan validate [overrides... | --all | FILE...]`: exit 0 when valid, 1 when not."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from yulan.cli.common import add_overrides
from yulan.compose import (
    GROUPS,
    add_experiment_dirs,
    compose,
    config_file,
    experiment_names,
    search_path,
    shown,
    validate,
)
from yulan.schema.errors import ConfigError, Problem


def add_parser(sub) -> None:
    parser = sub.add_parser("validate", help="exit 0 when valid, 1 when not")
    parser.add_argument(
        "--all", action="store_true", help="every experiment of the search path (fails when there is none)"
    )
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    if args.all:
        targets = [[f"experiment={name}"] for name in experiment_names()]
        if not targets:  # a check that checks nothing must not pass
            raise ConfigError(
                "no experiment to validate",
                [
                    Problem(
                        "--all",
                        "found no experiment/*.yaml in the search path",
                        [shown(tree) for tree in search_path()],
                        (
                            "pass --experiments DIR (or set $YULAN_EXPERIMENTS) to the directory above your "
                            "experiment/ folder"
                        ),
                    )
                ],
            )
    elif args.overrides and all(arg.endswith((".yaml", ".yml")) for arg in args.overrides):
        targets = targets_for_files(args.overrides)
    else:
        targets = [args.overrides]
    failed = 0
    for overrides in targets:
        label = " ".join(overrides) or "(defaults)"
        try:
            validate(compose(overrides))
            print(f"ok      {label}")
        except ConfigError as error:
            failed += 1
            print(f"invalid {label}\n{error}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(targets)} invalid", file=sys.stderr)
    return 1 if failed else 0


def targets_for_files(files: list[str]) -> list[list[str]]:
    """What changed files can break: an experiment file, that experiment; a group file (cluster/, model/, ...), the
    file alone as its group's choice and every experiment whose defaults choose it; any other file, everything."""
    paths = [Path(os.path.realpath(file)) for file in files]  # (a symlink loop stays itself: no group file)
    # A changed file's own tree joins the search path (the pre-commit hook in a repository of experiments).
    add_experiment_dirs(
        sorted(
            {
                str(path.parent.parent)
                for path in paths
                if path.parent.name in GROUPS and path.parent.parent not in search_path()
            }
        )
    )
    names = experiment_names()
    trees = search_path()
    targets: list[list[str]] = []
    for path in paths:
        group = path.parent.name if path.parent.parent in trees else None
        if group == "experiment" and path.stem in names:
            targets.append([f"experiment={path.stem}"])
        elif group in GROUPS:
            targets.append([f"{group}={path.stem}"])
            targets += [[f"experiment={name}"] for name in names if chooses(name, group, path.stem)]
        else:
            return [[f"experiment={name}"] for name in names]
    return list({tuple(t): t for t in targets}.values())


def chooses(experiment: str, group: str, option: str) -> bool:
    """The experiment's defaults list picks this option of the group (`- override /model: tiny`)."""
    text = config_file("experiment", experiment).read_text()
    return any(
        line.strip().lstrip("- ").replace("override ", "").strip() == f"/{group}: {option}"
        for line in text.splitlines()
    )
