"""argv overrides -> Hydra's composition of the experiment trees over the schema's defaults -> a validated Experiment.

    search       where experiment files are found (the user's trees, then the shipped one)
    overrides    Hydra's override grammar: checks with suggestions, sweeps
    composition  Hydra composes; the result laid over the schema's defaults, interpolations resolved
    cache        Hydra's result kept under a key of every input that can change it
    tree         plain settings trees: defaults, dotted paths, a Composed experiment with its sources

Light by design: Hydra, OmegaConf, PyYAML and pydantic only, so that it runs on a login node in well under a second.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from yulan.compose import cache
from yulan.compose.composition import check_expansion, finish, hydra_config, plain_setting
from yulan.compose.overrides import check_overrides, parse_overrides, sweep_points, sweeping
from yulan.compose.search import (
    GROUPS,
    SHIPPED_EXPERIMENTS,
    add_experiment_dirs,
    config_file,
    experiment_names,
    search_path,
    shown,
)
from yulan.compose.tree import Composed, default_at, flatten, node_at, with_value
from yulan.schema.errors import ConfigError, Problem, field_source, from_validation_error
from yulan.schema.experiment import Experiment
from yulan.schema.fields import PAPER
from yulan.schema.ppo import CRITIC_SETTINGS

__all__ = [
    "GROUPS",
    "SHIPPED_EXPERIMENTS",
    "Composed",
    "ConfigError",
    "add_experiment_dirs",
    "compose",
    "compose_sweep",
    "config_file",
    "default_at",
    "experiment_names",
    "flatten",
    "load",
    "paper_differences",
    "search_path",
    "shown",
    "sweep_points",
    "sweeping",
    "validate",
]


def compose(overrides: list[str]) -> Composed:
    """Compose the experiment trees and the overrides with Hydra. Raises ConfigError; never a traceback for bad input.

    The result is cached (see yulan.compose.cache), so that a repeated composition skips Hydra; validation always
    runs afresh.
    """
    files = cache.config_files()
    check_expansion(files)
    if not cache.cacheable(overrides, cache.file_texts(files)):
        return compose_with_hydra(overrides)
    key = cache.key(overrides, files)
    cached = cache.read(key)
    if cached is not None:
        return cached
    composed = compose_with_hydra(overrides)
    cache.write(key, composed)
    return composed


def compose_with_hydra(overrides: list[str]) -> Composed:
    check_overrides(overrides)
    return finish(*hydra_config(overrides), overrides)


def compose_sweep(points: list[list[str]]) -> list[Composed | ConfigError]:
    """Every point of a sweep, composing with Hydra once per distinct choice of config groups: a point's plain
    `key=value` overrides of schema fields are then set on a copy, which is what Hydra does after composing its
    defaults list. Points with other overrides (+, ++, ~, keys outside the schema's defaults) compose in full."""
    if len(points) == 1:  # a single run: the compose cache makes a repeated launch skip Hydra altogether
        try:
            return [compose(points[0])]
        except ConfigError as error:
            return [error]
    bases: dict[tuple[str, ...], tuple[dict[str, Any], dict[str, str]]] = {}
    results: list[Composed | ConfigError] = []
    files = cache.config_files()
    check_expansion(files)
    texts = cache.file_texts(files)
    for point in points:
        try:
            cache.environment_lookups(point, texts)  # a secret is refused in a sweep as in a single run
            check_overrides(point)
            parsed = parse_overrides(point)
            if not all(o.key_or_group in GROUPS or plain_setting(o) for o in parsed):
                results.append(compose(point))
                continue
            groups = tuple(o.input_line for o in parsed if o.key_or_group in GROUPS)
            if groups not in bases:
                bases[groups] = hydra_config(list(groups))
            tree, choices = bases[groups]
            for key, value in ((o.key_or_group, o.value()) for o in parsed if o.key_or_group not in GROUPS):
                tree = with_value(tree, key.split("."), value)  # the base stays as it is for the next point
            results.append(finish(tree, choices, point))
        except ConfigError as error:
            results.append(error)
    return results


def paper_differences(experiment: Experiment) -> list[dict[str, Any]]:
    """The report's recipe values this experiment changes: path, the report's value, this one's, where it is stated."""
    rows = []
    for path, value in flatten(experiment.model_dump(mode="json")).items():
        source = field_source(Experiment, path)
        if source.get("source") == PAPER:
            paper = default_at(path)
            if paper is not None and paper != value:
                rows.append({"path": path, "report": paper, "value": value, "where": source.get("where", "")})
    return rows


def validate(composed: Composed) -> Experiment:
    try:
        experiment = Experiment.model_validate(composed.config)
    except ValidationError as error:
        problems = from_validation_error(Experiment, error, composed.source_of, default_at)
        raise ConfigError(f"invalid experiment '{composed.choices['experiment']}'", problems) from None
    problems = _critic_overrides(experiment, composed)
    if problems:
        raise ConfigError(f"invalid experiment '{composed.choices['experiment']}'", problems)
    return experiment


def _critic_overrides(experiment: Experiment, composed: Composed) -> list[Problem]:
    """A critic setting asked for on the command line together with an estimator that has no critic. Critic
    settings from experiment files stay (they describe the critic for GAE) and are inert, so one experiment can be
    swept over estimators."""
    ppo = experiment.ppo
    if "ppo" not in experiment.stages or ppo.uses_critic:
        return []
    return [
        Problem(
            key,
            f"applies only to an estimator with a critic (gae), and ppo.estimator={ppo.estimator} has none",
            node_at(composed.config, key),
            "drop the override, or set ppo.estimator=gae",
            source,
        )
        for key, source in composed.sources.items()
        if source.startswith("override") and any(key == name or key.startswith(name + ".") for name in CRITIC_SETTINGS)
    ]


def load(overrides: list[str]) -> Experiment:
    """Compose and validate one experiment from command-line overrides."""
    return validate(compose(overrides))
