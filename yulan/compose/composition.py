"""Hydra composes the experiment trees and the overrides; the result is laid over the schema's defaults and its
interpolations resolved. This is the one implementation of Hydra's semantics here: Hydra's own."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, cast

import yaml

from yulan.compose.overrides import parse_overrides
from yulan.compose.search import (
    GROUPS,
    SHIPPED_DATA,
    SHIPPED_EXPERIMENTS,
    check_package_header,
    config_file,
    experiment_names,
    shown,
    user_trees,
)
from yulan.compose.tree import MISSING, Composed, laid_over, node_at, schema_defaults, with_value, without
from yulan.schema.common import STAGES
from yulan.schema.errors import ConfigError, Problem, suggest
from yulan.schema.experiment import stage_output
from yulan.schema.infra import SECRET_NAME


@cache
def _register() -> None:
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("stage_output", _stage_output)
    OmegaConf.register_new_resolver("shipped_data", _shipped_data)


def _shipped_data(name: str) -> str:
    """${shipped_data:NAME}: a sample file installed with the package (yulan/data/NAME), wherever it is installed."""
    path = SHIPPED_DATA / name
    if not path.exists():
        raise ValueError(
            f"${{shipped_data:{name}}}: no {path}; the shipped files are "
            f"{', '.join(sorted(p.name for p in SHIPPED_DATA.iterdir()))}"
        )
    return str(path)


def _stage_output(experiment: str, stage: str, *, _root_: Any) -> str:
    """${stage_output:EXPERIMENT,STAGE}: where another experiment's stage leaves its output."""
    known = experiment_names()
    if experiment not in known:
        close = suggest(experiment, known)
        raise ValueError(
            f"${{stage_output:{experiment},{stage}}} names no experiment of the search path "
            f"({f'did you mean {close!r}?' if close else 'known: ' + ', '.join(known)})"
        )
    if stage not in STAGES:
        raise ValueError(f"${{stage_output:{experiment},{stage}}}: stages are {', '.join(STAGES)}")
    return stage_output(f"{_root_.run_root}/{experiment}", stage)


def hydra_config(overrides: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The composition (a plain tree, interpolations not yet resolved) and the group choices. Hydra composes the
    files' deltas and the overrides; they are then laid over the schema's defaults, as a first `schema_defaults`
    entry of the defaults list would be, without Hydra copying and merging the whole settings tree at every step
    (most of a cold launch)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    _register()
    trees = ",".join(tree.as_uri() for tree in user_trees())
    parsed = parse_overrides(overrides)
    # A plain `key=value` of a schema setting is set on the whole tree afterwards, as Hydra sets it after composing
    # (list items included); Hydra gets the group choices, its own operators and new keys of open mappings.
    settings = [o for o in parsed if plain_setting(o)]
    deletions = [o for o in parsed if o.is_delete()]
    for_hydra = [o for o in parsed if not plain_setting(o) and not o.is_delete()]
    with _hydra_errors(overrides):
        with initialize_config_dir(config_dir=str(SHIPPED_EXPERIMENTS), version_base="1.3"):
            deltas = hydra_compose(
                config_name="config",
                overrides=[f"hydra.searchpath=[{trees}]", *_hydra_form(for_hydra)],
                return_hydra_config=True,
            )
        choices = {group: str(deltas.hydra.runtime.choices[group]) for group in GROUPS}
        check_package_header(choices["experiment"])
        tree = cast(dict[str, Any], OmegaConf.to_container(deltas, resolve=False))
        del tree["hydra"]
        tree = laid_over(schema_defaults(), tree)
        for setting in settings:
            tree = with_value(tree, setting.key_or_group.split("."), setting.value())
        for deletion in deletions:  # `~key`: back to the schema's default, which validation then applies
            tree = without(tree, deletion.key_or_group.split("."), deletion.input_line)
    return tree, choices


def plain_setting(override: Any) -> bool:
    return (
        override.key_or_group not in GROUPS
        and not override.input_line.startswith(("+", "~"))
        and _in_defaults(override.key_or_group)
    )


def _hydra_form(overrides: list[Any]) -> list[str]:
    """Hydra composes the files' deltas only, so a setting they do not hold is new to it: '++' sets it either way
    (the schema already checked every key)."""
    new_to_hydra = [o.key_or_group not in GROUPS and not o.input_line.startswith(("+", "~")) for o in overrides]
    return [f"++{o.input_line}" if new else o.input_line for o, new in zip(overrides, new_to_hydra)]


def _in_defaults(path: str) -> bool:
    return node_at(schema_defaults(), path) is not MISSING


def finish(tree: dict[str, Any], choices: dict[str, str], overrides: list[str]) -> Composed:
    if not any(o.startswith(("name=", "++name=", "+name=")) for o in overrides):
        tree = {**tree, "name": choices["experiment"]}
    with _hydra_errors(overrides):
        config = _resolved(tree)
    composed = Composed(config=config, choices=choices, overrides=list(overrides))
    composed.sources = _sources(choices, overrides)
    return composed


NODE_REFERENCE = re.compile(r"\$\{(?![\w.]+:)")  # ${a.b} or ${..x}, not a resolver call ${name:args}


def _resolved(tree: dict[str, Any]) -> dict[str, Any]:
    """The tree with its interpolations resolved. Resolver calls alone (${stage_output:...}, ${shipped_data:...},
    ${oc.env:...}) are resolved one value at a time with the top-level settings as their root; a reference to
    another setting needs the whole tree in OmegaConf, which costs a tenth of a second more."""
    text = json.dumps(tree)
    if "${" not in text:
        return tree
    from omegaconf import OmegaConf

    _register()

    if NODE_REFERENCE.search(text):
        return cast(dict[str, Any], OmegaConf.to_container(OmegaConf.create(tree), resolve=True))
    top = {key: value for key, value in tree.items() if not isinstance(value, (dict, list))}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        if isinstance(node, str) and "${" in node:
            return cast(
                dict[str, Any], OmegaConf.to_container(OmegaConf.create({**top, "_value_": node}), resolve=True)
            )["_value_"]
        return node

    resolved: dict[str, Any] = walk(tree)
    return resolved


MAX_EXPANDED_NODES = 200_000  # a config far larger than any experiment; an alias bomb expands to billions


def check_expansion(files: dict[str, bytes]) -> None:
    """Refuses a config file whose YAML aliases expand beyond MAX_EXPANDED_NODES nodes (nested anchors: a few
    hundred bytes that expand to gigabytes), or that nests deeper than the YAML reader can follow. Counted on the
    composed node graph, where an alias is one shared node: nothing is expanded to count."""
    for name, data in files.items():
        if b"*" not in data or b"&" not in data:  # no aliases: the file is as large as it looks
            continue
        try:
            root = yaml.compose(data.decode(errors="replace"))
        except yaml.YAMLError:
            continue  # composing reports it with its line
        except RecursionError:
            raise _expansion_error(name, "nests deeper than a YAML reader can follow") from None
        sizes: dict[int, int] = {}
        stack: list[tuple[Any, bool]] = [(root, False)] if root is not None else []
        while stack:
            node, children_done = stack.pop()
            if id(node) in sizes and sizes[id(node)] >= 0:
                continue
            children = (
                [part for pair in node.value for part in pair]
                if isinstance(node, yaml.MappingNode)
                else node.value
                if isinstance(node, yaml.SequenceNode)
                else []
            )
            if children_done:
                sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
                if sizes[id(node)] > MAX_EXPANDED_NODES:
                    raise _expansion_error(name, f"its aliases expand to more than {MAX_EXPANDED_NODES:,} nodes")
                continue
            if sizes.get(id(node)) == -1:
                raise _expansion_error(name, "an alias refers to the node that contains it")
            sizes[id(node)] = -1  # in progress
            stack.append((node, True))
            stack.extend((child, False) for child in children if sizes.get(id(child), -2) < 0)


def _expansion_error(name: str, rule: str) -> ConfigError:
    return ConfigError(
        "a config file expands beyond reason",
        [Problem(shown(Path(name)), rule, None, "write the values out, or use fewer nested anchors", has_value=False)],
    )


@contextmanager
def _hydra_errors(overrides: list[str]) -> Iterator[None]:
    from omegaconf.errors import OmegaConfBaseException

    try:
        yield
    except yaml.MarkedYAMLError as error:  # a config file that is no YAML (syntax, duplicate keys): its file and line
        mark = error.problem_mark or error.context_mark
        where = f"{mark.name}:{mark.line + 1}" if mark else "config"
        raise ConfigError(
            "a config file is not valid YAML",
            [
                Problem(
                    where,
                    f"{error.context + ', ' if error.context else ''}{error.problem}",
                    None,
                    "fix the YAML at that line (each key once per mapping)",
                    has_value=False,
                )
            ],
        ) from None
    except Exception as error:
        if not isinstance(error, OmegaConfBaseException) and not _is_hydra_error(error):
            raise
        message = str(error).strip().splitlines()
        raise ConfigError(
            "cannot compose the experiment",
            [
                Problem(
                    "config",
                    " ".join(message),
                    overrides,
                    "check the override or YAML file named above",
                    has_value=False,
                )
            ],
        ) from None


def _is_hydra_error(error: Exception) -> bool:
    if "hydra" not in sys.modules:  # no Hydra call ran: it raised nothing (and is not imported for the question)
        return False
    from hydra.errors import HydraException

    return isinstance(error, HydraException)


def _sources(choices: dict[str, str], overrides: list[str]) -> dict[str, str]:
    sources: dict[str, str] = {}
    for group in GROUPS:  # the order of config.yaml's defaults list
        package = [] if group == "experiment" else [group]
        for path in _group_files(group, choices[group]):
            data = dict(_read_yaml(path))
            data.pop("defaults", None)
            for key in _leaves(data, package):
                sources[key] = shown(path)
    for key, line in ((override.key_or_group, override.input_line) for override in parse_overrides(overrides)):
        if key not in GROUPS:
            sources[key] = f"override '{f'{key}=<redacted>' if SECRET_NAME.search(key) else line}'"
    return sources


def _group_files(group: str, option: str, seen: tuple[str, ...] = ()) -> list[Path]:
    """An option's file after the files of its group that its defaults list includes (`- ppo_yulan`)."""
    path = config_file(group, option)
    if path is None or option in seen:
        return []
    included = [
        entry
        for entry in _read_yaml(path).get("defaults", []) or []
        if isinstance(entry, str) and entry != "_self_" and not entry.startswith("/")
    ]
    return [file for entry in included for file in _group_files(group, entry, (*seen, option))] + [path]


@cache
def _read_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def _leaves(data: Any, prefix: list[str]) -> list[str]:
    if isinstance(data, dict) and data:
        return [leaf for key, value in data.items() for leaf in _leaves(value, [*prefix, str(key)])]
    return [".".join(prefix)] if prefix else []
