"""Command-line overrides, read by Hydra's own grammar: unknown keys and options refused with a suggestion before
anything composes, and sweeps expanded into one override list per point."""

from __future__ import annotations

import typing
from typing import Any

from yulan.compose.search import GROUPS, options, search_path, shown
from yulan.schema.errors import ConfigError, Problem, is_model, suggest, unknown_key_hint, unwrap
from yulan.schema.experiment import Experiment


def _parser() -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def parse_overrides(overrides: list[str]) -> list[Any]:
    from hydra.errors import HydraException

    try:
        parsed: list[Any] = _parser().parse_overrides(overrides)
        return parsed
    except HydraException as error:
        first_lines = " ".join(str(error).strip().splitlines()[:2])
        raise ConfigError(
            "cannot parse the overrides",
            [
                Problem(
                    "overrides",
                    first_lines,
                    overrides,
                    "write overrides as key=value (quote values with spaces or brackets)",
                )
            ],
        ) from None


def check_overrides(overrides: list[str]) -> None:
    """Unknown keys and unknown group options fail here, with a suggestion, before Hydra composes anything."""
    problems = []
    for override in parse_overrides(overrides):
        key = override.key_or_group
        line = f"override '{override.input_line}'"
        if key in GROUPS:
            known = options(key)
            values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
            for value in values:
                if str(value) not in known:
                    close = suggest(str(value), known)
                    hint = f"did you mean '{key}={close}'?" if close else f"choose one of: {', '.join(known)}"
                    where = ", ".join(shown(tree / key) for tree in search_path())
                    problems.append(Problem(key, f"no such {key} ({value}.yaml in {where})", value, hint, line))
            continue
        problem = check_key(key.split("."), line, override.is_delete())
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError("invalid overrides; nothing was run or submitted", problems)


def check_key(parts: list[str], line: str, deleting: bool) -> Problem | None:
    annotation: Any = Experiment
    for depth, part in enumerate(parts):
        annotation = unwrap(annotation)
        path = ".".join(parts[: depth + 1])
        if is_model(annotation):
            if part in annotation.model_computed_fields:
                return Problem(
                    path,
                    "derived value: it is computed from other settings and cannot be set",
                    None,
                    f"set the settings it is computed from ({annotation.model_computed_fields[part].description})",
                    line,
                    has_value=False,
                )
            if part not in annotation.model_fields:
                return Problem(
                    path, "unknown key", None, unknown_key_hint(Experiment, parts[:depth], part), line, has_value=False
                )
            annotation = annotation.model_fields[part].annotation
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        elif typing.get_origin(annotation) in (tuple, list):
            if not part.isdigit():
                return Problem(
                    path, "a list is indexed by position", None, "use a number, e.g. .0", line, has_value=False
                )
            annotation = typing.get_args(annotation)[0]
        else:
            return Problem(
                path,
                f"'{'.'.join(parts[:depth])}' is a single value and has no keys",
                None,
                f"set {'.'.join(parts[:depth])} itself",
                line,
                has_value=False,
            )
    return None


def sweep_points(overrides: list[str]) -> list[list[str]]:
    """Hydra's own sweep expansion (cartesian product; choice, range) into one override list per point; `glob` picks
    among a group's options (experiment=glob(smoke*)). An empty sweep or an `interval` is refused."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.types import ValueType

    parsed = parse_overrides(overrides)
    expanded = []
    for override in parsed:
        line = override.input_line
        if override.value_type == ValueType.INTERVAL_SWEEP:
            raise ConfigError(
                "cannot sweep an interval",
                [
                    Problem(
                        "overrides",
                        "interval() asks an optimiser to choose values; this launcher runs a grid",
                        line,
                        "list the values (key=a,b,c) or use range(start,stop,step)",
                    )
                ],
            )
        if override.value_type == ValueType.GLOB_CHOICE_SWEEP:
            group = override.key_or_group
            if group not in GROUPS:
                raise ConfigError(
                    "cannot glob this key",
                    [
                        Problem(
                            "overrides",
                            f"glob() picks among a group's options ({', '.join(GROUPS)})",
                            line,
                            "list the values (key=a,b,c)",
                        )
                    ],
                )
            names = override.value().filter(options(group))
            if not names:
                raise ConfigError(
                    "the glob matches nothing",
                    [Problem("overrides", f"no {group} option matches", line, f"options: {', '.join(options(group))}")],
                )
            line = f"{group}={','.join(names)}"
        expanded.append(line)
    batches = BasicSweeper.split_arguments(parse_overrides(expanded), max_batch_size=None)
    points = [list(point) for batch in batches for point in batch]
    if not points:
        empty = [o.input_line for o in parsed if o.is_sweep_override()]
        raise ConfigError(
            "the sweep has no points",
            [
                Problem(
                    "overrides",
                    "a sweep over no values runs nothing",
                    empty,
                    "check range(start,stop): stop must exceed start for a positive step, e.g. range(0,5)",
                )
            ],
        )
    return points


def sweeping(overrides: list[str]) -> list[str]:
    if not any("," in o or "(" in o for o in overrides):  # no sweep syntax: skip Hydra's parser
        return []
    return [o.input_line for o in parse_overrides(overrides) if o.is_sweep_override()]
