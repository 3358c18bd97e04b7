"""What several subcommands share: the overrides and experiment-tree options, effective values."""

from __future__ import annotations

import argparse
from typing import Any

from yulan.compose import compose, flatten, validate
from yulan.schema.experiment import Experiment


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """Hydra overrides, and the experiment trees searched before the shipped one."""
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=ppo_yulan ppo.num_episodes=2")
    add_experiment_dirs_option(parser)


def add_experiment_dirs_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--experiments",
        "--config-dir",
        "-cd",
        action="append",
        default=[],
        metavar="DIR",
        help="an experiment tree (DIR/experiment/*.yaml, ...) searched before the shipped one",
    )


def effective(overrides: list[str]) -> tuple[Experiment, dict[str, Any]]:
    composed = compose(overrides)
    experiment = validate(composed)
    return experiment, flatten(experiment.model_dump(mode="json"))
