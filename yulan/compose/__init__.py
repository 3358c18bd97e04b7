"""argv overrides -> Hydra composition (the experiment trees + the schema's defaults) -> a validated Experiment.

The shipped tree (`yulan/experiments/`, installed with the package) is searched after the user's own trees: the
directories in $YULAN_EXPERIMENTS (`--experiments DIR` adds one), each holding group folders (`experiment/`,
`model/`, `cluster/`, ...) whose files add options to those groups. One option name lives in one tree only.

Light by design: Hydra, OmegaConf, PyYAML and pydantic only, so that it runs on a login node in well under a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import typing
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from yulan.schema.common import STAGES
from yulan.schema.errors import (
    ConfigError,
    Problem,
    field_source,
    from_validation_error,
    is_model,
    suggest,
    unknown_key_hint,
    unwrap,
)
from yulan.schema.experiment import Experiment, stage_output
from yulan.schema.fields import REPORT, default_tree
from yulan.schema.infra import SECRET_NAME
from yulan.schema.ppo import CRITIC_SETTINGS

SHIPPED_EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
SHIPPED_DATA = Path(__file__).resolve().parent.parent / "data"
SEARCH_PATH_VARIABLE = "YULAN_EXPERIMENTS"
GROUPS = ("model", "reward_model", "cluster", "launcher", "experiment")


@dataclass
class Composed:
    """A composed (not yet validated) experiment and where each value came from."""

    config: dict[str, Any]
    choices: dict[str, str]
    overrides: list[str]
    sources: dict[str, str] = field(default_factory=dict)

    def source_of(self, path: str) -> str | None:
        """The file or override that last set `path` (or a key under it, or the section holding it)."""
        if path in self.sources:
            return self.sources[path]
        below = [key for key in self.sources if key.startswith(path + ".")]
        if below:
            return self.sources[below[-1]]
        parts = path.split(".")
        for end in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:end])
            if prefix in self.sources:
                return self.sources[prefix]
        return None


def add_experiment_dirs(directories: list[str]) -> None:
    """`--experiments DIR`: searched before the trees already in the path (this process and the jobs it starts)."""
    known = os.environ.get(SEARCH_PATH_VARIABLE, "")
    os.environ[SEARCH_PATH_VARIABLE] = os.pathsep.join(
        [*(str(Path(d).resolve()) for d in directories), *filter(None, [known])]
    )


def user_trees() -> list[Path]:
    """The user's experiment trees, in search order; each must exist and hold at least one group folder."""
    trees = []
    for entry in filter(None, os.environ.get(SEARCH_PATH_VARIABLE, "").split(os.pathsep)):
        tree = Path(entry).expanduser().resolve()
        if not tree.is_dir():
            raise ConfigError(
                "an experiment directory does not exist",
                [
                    Problem(
                        SEARCH_PATH_VARIABLE,
                        "every entry must be a directory of experiment trees",
                        entry,
                        "fix the path given to --experiments or in $YULAN_EXPERIMENTS",
                    )
                ],
            )
        if not any((tree / group).is_dir() for group in GROUPS):
            raise ConfigError(
                "an experiment directory holds no group folder",
                [
                    Problem(
                        SEARCH_PATH_VARIABLE,
                        f"a tree holds group folders: {', '.join(f'{g}/' for g in GROUPS)}",
                        entry,
                        f"put experiment files in {entry}/experiment/NAME.yaml (or name the directory above it)",
                    )
                ],
            )
        if tree != SHIPPED_EXPERIMENTS and tree not in trees:
            trees.append(tree)
    return trees


def search_path() -> list[Path]:
    return [*user_trees(), SHIPPED_EXPERIMENTS]


def shown(path: Path) -> str:
    """A config file as messages name it: inside the package for shipped files, else relative to here if below."""
    package_root = SHIPPED_EXPERIMENTS.parent.parent  # yulan/experiments/ shown from above yulan/
    if path.is_relative_to(package_root):
        return str(path.relative_to(package_root))
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def option_files(group: str) -> dict[str, Path]:
    """{option: its file} of a group over the whole search path. An option defined in two trees is refused: which
    one Hydra took would depend on the search order."""
    found: dict[str, Path] = {}
    for tree in search_path():
        for path in sorted((tree / group).glob("*.yaml")):
            if path.stem in found:
                raise ConfigError(
                    f"{group} '{path.stem}' is defined twice",
                    [
                        Problem(
                            f"{group}={path.stem}",
                            "an option name must be unique over the experiment search path",
                            [shown(found[path.stem]), shown(path)],
                            "rename one of the two files",
                        )
                    ],
                )
            found[path.stem] = path
    return found


def options(group: str) -> list[str]:
    return sorted(option_files(group))


def config_file(group: str, option: str) -> Path | None:
    return option_files(group).get(option)


def experiment_names() -> list[str]:
    return options("experiment")


# -- overrides -----------------------------------------------------------------------------------------------
def _parser() -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def parse_overrides(overrides: list[str]) -> list[Any]:
    from hydra.errors import HydraException

    try:
        return _parser().parse_overrides(overrides)
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
        problem = _check_key(key.split("."), line, override.is_delete())
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError("invalid overrides; nothing was run or submitted", problems)


def _check_key(parts: list[str], line: str, deleting: bool) -> Problem | None:
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


# -- composition ---------------------------------------------------------------------------------------------
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


def compose(overrides: list[str]) -> Composed:
    """Compose the experiment trees and the overrides with Hydra. Raises ConfigError; never a traceback for bad input.

    The result is cached under a hash of everything composition reads (the overrides, every file of the trees,
    the schema's fields and defaults), so repeated compositions skip Hydra; validation always runs afresh.
    """
    files = _config_files()
    if _environment_lookups(overrides, files):  # their values can change between launches: never cached
        return _compose_with_hydra(overrides)
    key = _cache_key(overrides, files)
    cached = _cache_read(key)
    if cached is not None:
        return cached
    composed = _compose_with_hydra(overrides)
    _cache_write(key, composed)
    return composed


# Hydra's sweep expansion hands each point the lookup escaped (`$\{oc.env\:NAME\}`); it still resolves.
ENV_LOOKUP = re.compile(r"\$\\?\{oc\.env\\?:([A-Za-z_][A-Za-z0-9_]*)")


def _config_files() -> dict[str, bytes]:
    """Every file of the search path, read once per composition (or sweep): {path: contents}."""
    return {str(path): path.read_bytes() for tree in search_path() for path in sorted(tree.rglob("*.yaml"))}


def _environment_lookups(overrides: list[str], files: dict[str, bytes]) -> list[str]:
    """Variables `${oc.env:NAME}` reads in the overrides or config files. A secret's value would land in config.json,
    the sbatch script and the compose cache: those are refused."""
    texts = [*overrides, *(data.decode(errors="replace") for data in files.values())]
    names = sorted({name for text in texts for name in ENV_LOOKUP.findall(text)})
    secrets = [name for name in names if SECRET_NAME.search(name)]
    if secrets:
        raise ConfigError(
            "a secret read into the config",
            [
                Problem(
                    "overrides",
                    "a config value is written to config.json, resolved.yaml and sbatch scripts; a secret never is",
                    [f"${{oc.env:{name}}}" for name in secrets],
                    "export the variable where the job runs; jobs inherit the "
                    "environment and the code reads it there (as WANDB_API_KEY is)",
                )
            ],
        )
    return names


def _cache_dir() -> Path | None:
    if os.environ.get("YULAN_COMPOSE_CACHE", "1") == "0":
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "yulan" / "compose"


def _cache_key(overrides: list[str], files: dict[str, bytes]) -> str:
    digest = hashlib.sha256(json.dumps([overrides, schema_defaults()], sort_keys=True).encode())
    digest.update(Path(__file__).read_bytes())  # this code decides what is composed: an upgrade misses the cache
    for name, data in files.items():
        digest.update(name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


def _cache_read(key: str) -> Composed | None:
    directory = _cache_dir()
    try:
        return Composed(**json.loads((directory / f"{key}.json").read_text())) if directory else None
    except (OSError, ValueError, TypeError):
        return None


def _cache_write(key: str, composed: Composed) -> None:
    directory = _cache_dir()
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        temporary = directory / f"{key}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(asdict(composed)))
        temporary.replace(directory / f"{key}.json")  # atomic: concurrent launches never read half a file
    except OSError:
        pass  # a read-only home only costs speed


def _compose_with_hydra(overrides: list[str]) -> Composed:
    plain = _plain_composition(overrides)
    if plain is not None:
        return _finish(*plain, overrides)
    check_overrides(overrides)
    cfg, choices = _hydra_config(overrides)
    return _finish(cfg, choices, overrides)


# -- the common case without Hydra ---------------------------------------------------------------------------
# `key=value` with a value Hydra's grammar reads as a bool, null, int, float or a plain string.
PLAIN_OVERRIDE = re.compile(r"^([A-Za-z_][\w.]*)=([\w./@-]*)$")
HYDRA_INT = re.compile(r"^[+-]?(0|[1-9][0-9]*)$")
HYDRA_FLOAT = re.compile(r"^[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?$")


def _plain_value(text: str) -> Any:
    """What Hydra's override grammar makes of a value of PLAIN_OVERRIDE's characters, or _MISSING where the two
    might differ (Hydra then parses it)."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    if HYDRA_INT.match(text) and "_" not in text:
        return int(text)
    if HYDRA_FLOAT.match(text):
        return float(text)
    if lowered.lstrip("+-") in ("inf", "nan") or text[:1].isdigit() or "_" in text and text.replace("_", "").isdigit():
        return _MISSING
    return text


def _plain_composition(overrides: list[str]) -> tuple[dict[str, Any], dict[str, str]] | None:
    """Hydra's composition of the defaults lists this project's trees use (the primary's groups; an experiment's
    `override /GROUP: OPTION` entries and the experiments it includes by name; _self_ last unless placed) with
    plain `key=value` overrides, read and merged as Hydra would, at a fraction of its cost. None for anything
    else, which Hydra then composes; a test holds the two equal on every shipped experiment."""
    values: list[tuple[str, Any]] = []
    for line in overrides:
        match = PLAIN_OVERRIDE.match(line)
        value = _plain_value(match.group(2)) if match else _MISSING
        if value is _MISSING:
            return None
        values.append((match.group(1), value))
    for key, value in values:  # the checks check_overrides makes, with the same messages
        if key in GROUPS:
            if str(value) not in options(key):
                return None  # Hydra's path names the problem
        elif "." in key and _check_key(key.split("."), f"override '{key}={value}'", False) is not None:
            return None
        elif "." not in key and key not in schema_defaults():
            return None
    try:
        primary = _hydra_yaml(SHIPPED_EXPERIMENTS / "config.yaml")
        choices: dict[str, str] = {}
        for entry in primary.pop("defaults"):
            if entry == "_self_":
                continue
            ((group, option),) = entry.items()
            choices[group] = option
        if primary or set(choices) != set(GROUPS):
            return None
        choices.update({key: str(value) for key, value in values if key in GROUPS})
        layers = _experiment_layers(choices["experiment"], choices, {key for key, _ in values if key in GROUPS})
        if layers is None:
            return None
        tree: dict[str, Any] = {}
        for group in GROUPS[:-1]:  # the primary's order, the experiment last
            path = config_file(group, choices[group])
            data = _hydra_yaml(path) if path else None
            if data is None or "defaults" in data or "@package" in path.read_text().split("\n", 1)[0]:
                return None
            tree = _laid_over(tree, {group: data})
        for layer in layers:
            tree = _laid_over(tree, layer)
    except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError):
        return None  # Hydra reads it and names what is wrong
    tree = _laid_over(schema_defaults(), tree)
    for key, value in values:
        if key not in GROUPS:
            tree = _with_value(tree, key.split("."), value)
    return tree, choices


def _experiment_layers(
    option: str, choices: dict[str, str], chosen_on_command_line: set[str], seen: tuple[str, ...] = ()
) -> list[dict[str, Any]] | None:
    """An experiment's contents in merge order (the experiments it includes, itself at its _self_), applying its
    `override /GROUP: OPTION` entries to `choices` unless the command line chose that group."""
    path = config_file("experiment", option)
    if path is None or option in seen:
        return None
    check_package_header(option)
    if not path.read_text().lstrip().startswith("# @package _global_"):
        return None
    data = _hydra_yaml(path)
    entries = data.pop("defaults", None) or []
    if not isinstance(entries, list):
        return None
    implicit_self = "_self_" not in entries  # then it comes last
    layers: list[dict[str, Any]] = []
    overriding = False
    for entry in entries:
        if overriding and not isinstance(entry, dict):
            return None  # Hydra refuses it: overrides must end the defaults list
        if entry == "_self_":
            layers.append(data)
        elif isinstance(entry, str) and re.fullmatch(r"[\w-]+", entry):
            included = _experiment_layers(entry, choices, chosen_on_command_line, (*seen, option))
            if included is None:
                return None
            layers += included
        elif isinstance(entry, dict) and len(entry) == 1:
            ((key, value),) = entry.items()
            group = key.removeprefix("override /") if isinstance(key, str) else None
            if not key.startswith("override /") or group not in GROUPS[:-1] or config_file(group, str(value)) is None:
                return None
            if group not in chosen_on_command_line:
                choices[group] = str(value)
            overriding = True
        else:
            return None
    return [*layers, data] if implicit_self else layers


def _hydra_yaml(path: Path) -> dict[str, Any]:
    """A config file as Hydra reads it (OmegaConf's YAML loader: `1e-5` is a float, a key twice is an error)."""
    from omegaconf._utils import get_yaml_loader

    data = yaml.load(path.read_text(), Loader=get_yaml_loader())
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a mapping")
    return data


def _hydra_config(overrides: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
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
    settings = [o for o in parsed if _plain_setting(o)]
    deletions = [o for o in parsed if o.is_delete()]
    for_hydra = [o.input_line for o in parsed if not _plain_setting(o) and not o.is_delete()]
    with _hydra_errors(overrides):
        with initialize_config_dir(config_dir=str(SHIPPED_EXPERIMENTS), version_base="1.3"):
            deltas = hydra_compose(
                config_name="config",
                overrides=[f"hydra.searchpath=[{trees}]", *_hydra_form(for_hydra)],
                return_hydra_config=True,
            )
        choices = {group: str(deltas.hydra.runtime.choices[group]) for group in GROUPS}
        check_package_header(choices["experiment"])
        tree = OmegaConf.to_container(deltas, resolve=False)
        del tree["hydra"]
        tree = _laid_over(schema_defaults(), tree)
        for setting in settings:
            tree = _with_value(tree, setting.key_or_group.split("."), setting.value())
        for deletion in deletions:  # `~key`: back to the schema's default, which validation then applies
            tree = _without(tree, deletion.key_or_group.split("."), deletion.input_line)
    return tree, choices


def _plain_setting(override: Any) -> bool:
    return (
        override.key_or_group not in GROUPS
        and not override.input_line.startswith(("+", "~"))
        and _in_defaults(override.key_or_group)
    )


def _with_value(tree: Any, parts: list[str], value: Any) -> Any:
    """`tree` with `value` at the dotted path, copying only the nodes on the way (the schema's defaults are shared
    between compositions and never change); a list item is named by its position, missing mappings are made."""
    if not parts:
        return value
    head, rest = parts[0], parts[1:]
    if isinstance(tree, list) and head.isdigit() and int(head) < len(tree):
        copy = list(tree)
        copy[int(head)] = _with_value(copy[int(head)], rest, value)
        return copy
    copy = dict(tree) if isinstance(tree, dict) else {}
    copy[head] = _with_value(copy.get(head), rest, value)
    return copy


def _without(tree: Any, parts: list[str], line: str) -> Any:
    """`tree` without the key at the dotted path (copying the nodes on the way)."""
    if not isinstance(tree, dict) or parts[0] not in tree:
        raise ConfigError(
            "nothing to delete",
            [Problem("overrides", "a ~key override deletes a key that is set", line, "check the key's spelling")],
        )
    copy = dict(tree)
    if len(parts) == 1:
        del copy[parts[0]]
    else:
        copy[parts[0]] = _without(copy[parts[0]], parts[1:], line)
    return copy


def _laid_over(base: Any, delta: Any) -> Any:
    """OmegaConf's merge of plain trees: mappings merge key by key, anything else (lists too) replaces."""
    if isinstance(base, dict) and isinstance(delta, dict):
        return {**base, **{key: _laid_over(base[key], value) if key in base else value for key, value in delta.items()}}
    return delta


def _finish(tree: dict[str, Any], choices: dict[str, str], overrides: list[str]) -> Composed:
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
        return OmegaConf.to_container(OmegaConf.create(tree), resolve=True)
    top = {key: value for key, value in tree.items() if not isinstance(value, (dict, list))}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        if isinstance(node, str) and "${" in node:
            return OmegaConf.to_container(OmegaConf.create({**top, "_value_": node}), resolve=True)["_value_"]
        return node

    return walk(tree)


@contextmanager
def _hydra_errors(overrides: list[str]):
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


def check_package_header(choice: str) -> None:
    """An experiment file sets top-level keys: without `# @package _global_` Hydra nests it under `experiment`."""
    path = config_file("experiment", choice)
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()] if path else []
    if lines and lines[0] != "# @package _global_":
        raise ConfigError(
            "an experiment file lacks its package line",
            [
                Problem(
                    f"{path}:1",
                    "an experiment file must start with '# @package _global_'",
                    lines[0],
                    "add '# @package _global_' as its first line",
                )
            ],
        )


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
    files = _config_files()
    for point in points:
        try:
            _environment_lookups(point, files)  # a secret is refused in a sweep as in a single run
            check_overrides(point)
            parsed = parse_overrides(point)
            plain = all(
                o.key_or_group in GROUPS or (not o.input_line.startswith(("+", "~")) and _in_defaults(o.key_or_group))
                for o in parsed
            )
            if not plain:
                results.append(compose(point))
                continue
            groups = tuple(o.input_line for o in parsed if o.key_or_group in GROUPS)
            if groups not in bases:
                bases[groups] = _hydra_config(list(groups))
            tree, choices = bases[groups]
            for key, value in ((o.key_or_group, o.value()) for o in parsed if o.key_or_group not in GROUPS):
                tree = _with_value(tree, key.split("."), value)  # the base stays as it is for the next point
            results.append(_finish(tree, choices, point))
        except ConfigError as error:
            results.append(error)
    return results


def _hydra_form(overrides: list[str]) -> list[str]:
    """Hydra composes the files' deltas only, so a setting they do not hold is new to it: '++' sets it either way
    (the schema already checked every key)."""
    return [
        f"++{line}" if key not in GROUPS and not line.startswith(("+", "~")) else line
        for line, key in ((o.input_line, o.key_or_group) for o in parse_overrides(overrides))
    ]


def _in_defaults(path: str) -> bool:
    return _default_node(path) is not _MISSING


def _sources(choices: dict[str, str], overrides: list[str]) -> dict[str, str]:
    sources: dict[str, str] = {}
    for group in GROUPS:  # the order of config.yaml's defaults list
        package = [] if group == "experiment" else [group]
        for path in _group_files(group, choices[group]):
            data = dict(_read_yaml(path))
            data.pop("defaults", None)
            for key in _leaves(data, package):
                sources[key] = shown(path)
    plain = [PLAIN_OVERRIDE.match(line) for line in overrides]
    if all(plain):  # no need for Hydra's parser
        keyed = [(match.group(1), match.group(0)) for match in plain]
    else:
        keyed = [(override.key_or_group, override.input_line) for override in parse_overrides(overrides)]
    for key, line in keyed:
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


# -- validation ----------------------------------------------------------------------------------------------
@cache
def schema_defaults() -> dict[str, Any]:
    return default_tree(Experiment)


_MISSING = object()


def _default_node(path: str) -> Any:
    return _node_at(schema_defaults(), path)


def _node_at(tree: Any, path: str) -> Any:
    """The value at a dotted path of a tree of dicts and lists, or _MISSING."""
    node = tree
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def default_at(path: str) -> Any:
    """The schema's default at a dotted path (None where there is none)."""
    node = _default_node(path)
    return None if node is _MISSING else node


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested settings as {dotted path: value}."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def paper_differences(experiment: Experiment) -> list[dict[str, Any]]:
    """The report's recipe values this experiment changes: path, the report's value, this one's, where it is stated."""
    rows = []
    for path, value in flatten(experiment.model_dump(mode="json")).items():
        source = field_source(Experiment, path)
        if source.get("source") == REPORT:
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
            _node_at(composed.config, key),
            "drop the override, or set ppo.estimator=gae",
            source,
        )
        for key, source in composed.sources.items()
        if source.startswith("override") and any(key == name or key.startswith(name + ".") for name in CRITIC_SETTINGS)
    ]


def load(overrides: list[str]) -> Experiment:
    """Compose and validate one experiment from command-line overrides."""
    return validate(compose(overrides))
