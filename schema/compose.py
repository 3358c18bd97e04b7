"""argv overrides -> Hydra composition (experiments/ + the schema's defaults) -> a validated Experiment.

Light by design: Hydra, OmegaConf, PyYAML and pydantic only, so that it runs on a login node in well under a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import typing
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from schema.errors import (
    ConfigError,
    Problem,
    field_source,
    from_validation_error,
    is_model,
    suggest,
    unknown_key_hint,
    unwrap,
)
from schema.common import STAGES
from schema.experiment import Experiment, stage_output
from schema.fields import REPORT, default_tree
from schema.infra import SECRET_NAME
from schema.ppo import CRITIC_SETTINGS

EXPERIMENTS_DIR = Path(__file__).resolve().parent.parent / "experiments"
GROUPS = ("model", "reward_model", "cluster", "launcher", "experiment")
SCHEMA_DEFAULTS = "schema_defaults"


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


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (EXPERIMENTS_DIR / group).glob("*.yaml"))


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
        raise ConfigError("cannot parse the overrides", [Problem("overrides", first_lines, overrides,
                          "write overrides as key=value (quote values with spaces or brackets)")]) from None


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
                    problems.append(Problem(key, f"no such {key} (experiments/{key}/{value}.yaml)", value, hint, line))
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
                return Problem(path, "derived value: it is computed from other settings and cannot be set",
                               None, f"set the settings it is computed from ({annotation.model_computed_fields[part].description})",
                               line, has_value=False)
            if part not in annotation.model_fields:
                return Problem(path, "unknown key", None, unknown_key_hint(Experiment, parts[:depth], part), line,
                               has_value=False)
            annotation = annotation.model_fields[part].annotation
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        elif typing.get_origin(annotation) in (tuple, list):
            if not part.isdigit():
                return Problem(path, "a list is indexed by position", None, "use a number, e.g. .0", line, has_value=False)
            annotation = typing.get_args(annotation)[0]
        else:
            return Problem(path, f"'{'.'.join(parts[:depth])}' is a single value and has no keys", None,
                           f"set {'.'.join(parts[:depth])} itself", line, has_value=False)
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
            raise ConfigError("cannot sweep an interval", [Problem(
                "overrides", "interval() asks an optimiser to choose values; this launcher runs a grid", line,
                "list the values (key=a,b,c) or use range(start,stop,step)")])
        if override.value_type == ValueType.GLOB_CHOICE_SWEEP:
            group = override.key_or_group
            if group not in GROUPS:
                raise ConfigError("cannot glob this key", [Problem(
                    "overrides", f"glob() picks among a group's options ({', '.join(GROUPS)})", line,
                    "list the values (key=a,b,c)")])
            names = override.value().filter(options(group))
            if not names:
                raise ConfigError("the glob matches nothing", [Problem(
                    "overrides", f"no {group} option matches", line, f"options: {', '.join(options(group))}")])
            line = f"{group}={','.join(names)}"
        expanded.append(line)
    batches = BasicSweeper.split_arguments(parse_overrides(expanded), max_batch_size=None)
    points = [list(point) for batch in batches for point in batch]
    if not points:
        empty = [o.input_line for o in parsed if o.is_sweep_override()]
        raise ConfigError("the sweep has no points", [Problem(
            "overrides", "a sweep over no values runs nothing", empty, "check range(start,stop): stop must exceed start "
            "for a positive step, e.g. range(0,5)")])
    return points


def sweeping(overrides: list[str]) -> list[str]:
    if not any("," in o or "(" in o for o in overrides):  # no sweep syntax: skip Hydra's parser
        return []
    return [o.input_line for o in parse_overrides(overrides) if o.is_sweep_override()]


# -- composition ---------------------------------------------------------------------------------------------
@cache
def _register() -> None:
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    ConfigStore.instance().store(name=SCHEMA_DEFAULTS, node=default_tree(Experiment))
    OmegaConf.register_new_resolver("stage_output", _stage_output)


def _stage_output(experiment: str, stage: str, *, _root_: Any) -> str:
    """${stage_output:EXPERIMENT,STAGE}: where another experiment's stage leaves its output."""
    known = experiment_names()
    if experiment not in known:
        close = suggest(experiment, known)
        raise ValueError(f"${{stage_output:{experiment},{stage}}} names no experiment of experiments/experiment "
                         f"({f'did you mean {close!r}?' if close else 'known: ' + ', '.join(known)})")
    if stage not in STAGES:
        raise ValueError(f"${{stage_output:{experiment},{stage}}}: stages are {', '.join(STAGES)}")
    return stage_output(f"{_root_.run_root}/{experiment}", stage)


def compose(overrides: list[str]) -> Composed:
    """Compose experiments/ and the overrides with Hydra. Raises ConfigError; never a traceback for bad input.

    The result is cached under a hash of everything composition reads (the overrides, every file in experiments/,
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
    """Every file of experiments/, read once per composition (or sweep): {path inside experiments/: contents}."""
    return {str(path.relative_to(EXPERIMENTS_DIR)): path.read_bytes() for path in sorted(EXPERIMENTS_DIR.rglob("*.yaml"))}


def _environment_lookups(overrides: list[str], files: dict[str, bytes]) -> list[str]:
    """Variables `${oc.env:NAME}` reads in the overrides or config files. A secret's value would land in config.json,
    the sbatch script and the compose cache: those are refused."""
    texts = [*overrides, *(data.decode(errors="replace") for data in files.values())]
    names = sorted({name for text in texts for name in ENV_LOOKUP.findall(text)})
    secrets = [name for name in names if SECRET_NAME.search(name)]
    if secrets:
        raise ConfigError("a secret read into the config", [Problem(
            "overrides", "a config value is written to config.json, resolved.yaml and sbatch scripts; a secret never is",
            [f"${{oc.env:{name}}}" for name in secrets], "export the variable where the job runs; jobs inherit the "
            "environment and the code reads it there (as WANDB_API_KEY is)")])
    return names


def _cache_dir() -> Path | None:
    if os.environ.get("YULAN_COMPOSE_CACHE", "1") == "0":
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "yulan" / "compose"


def _cache_key(overrides: list[str], files: dict[str, bytes]) -> str:
    digest = hashlib.sha256(json.dumps([overrides, schema_defaults()], sort_keys=True).encode())
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
    check_overrides(overrides)
    cfg, choices = _hydra_config(overrides)
    return _finish(cfg, choices, overrides)


def _hydra_config(overrides: list[str]) -> tuple[Any, dict[str, str]]:
    """Hydra's composition (an unresolved DictConfig without its `hydra` node) and the group choices."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    _register()
    with _hydra_errors(overrides):
        with initialize_config_dir(config_dir=str(EXPERIMENTS_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=_hydra_form(overrides), return_hydra_config=True)
        choices = {group: str(cfg.hydra.runtime.choices[group]) for group in GROUPS}
        check_package_header(choices["experiment"])
        with open_dict(cfg):
            del cfg["hydra"]
    return cfg, choices


def _finish(cfg: Any, choices: dict[str, str], overrides: list[str]) -> Composed:
    from omegaconf import OmegaConf, open_dict

    with _hydra_errors(overrides):
        if not any(o.startswith(("name=", "++name=", "+name=")) for o in overrides):
            with open_dict(cfg):
                cfg.name = choices["experiment"]
        config = OmegaConf.to_container(cfg, resolve=True)
    composed = Composed(config=config, choices=choices, overrides=list(overrides))
    composed.sources = _sources(choices, overrides)
    return composed


@contextmanager
def _hydra_errors(overrides: list[str]):
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        yield
    except yaml.MarkedYAMLError as error:  # a config file that is no YAML (syntax, duplicate keys): its file and line
        mark = error.problem_mark or error.context_mark
        where = f"{mark.name}:{mark.line + 1}" if mark else "config"
        raise ConfigError("a config file is not valid YAML", [Problem(
            where, f"{error.context + ', ' if error.context else ''}{error.problem}", None,
            "fix the YAML at that line (each key once per mapping)", has_value=False)]) from None
    except (HydraException, OmegaConfBaseException) as error:
        message = str(error).strip().splitlines()
        raise ConfigError("cannot compose the experiment", [Problem("config", " ".join(message), overrides,
                          "check the override or YAML file named above", has_value=False)]) from None


def check_package_header(choice: str) -> None:
    """An experiment file sets top-level keys: without `# @package _global_` Hydra nests it under `experiment`."""
    path = EXPERIMENTS_DIR / "experiment" / f"{choice}.yaml"
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    if lines and lines[0] != "# @package _global_":
        raise ConfigError("an experiment file lacks its package line", [Problem(
            f"{path}:1", "an experiment file must start with '# @package _global_'", lines[0],
            "add '# @package _global_' as its first line")])


def compose_sweep(points: list[list[str]]) -> list[Composed | ConfigError]:
    """Every point of a sweep, composing with Hydra once per distinct choice of config groups: a point's plain
    `key=value` overrides of schema fields are then set on a copy, which is what Hydra does after composing its
    defaults list. Points with other overrides (+, ++, ~, keys outside the schema's defaults) compose in full."""
    import copy

    from omegaconf import OmegaConf, open_dict

    if len(points) == 1:  # a single run: the compose cache makes a repeated launch skip Hydra altogether
        try:
            return [compose(points[0])]
        except ConfigError as error:
            return [error]
    bases: dict[tuple[str, ...], tuple[Any, dict[str, str], str | None]] = {}
    results: list[Composed | ConfigError] = []
    files = _config_files()
    for point in points:
        try:
            _environment_lookups(point, files)  # a secret is refused in a sweep as in a single run
            check_overrides(point)
            parsed = parse_overrides(point)
            plain = all(o.key_or_group in GROUPS or (not o.input_line.startswith(("+", "~")) and _in_defaults(o.key_or_group))
                        for o in parsed)
            if not plain:
                results.append(compose(point))
                continue
            groups = tuple(o.input_line for o in parsed if o.key_or_group in GROUPS)
            if groups not in bases:
                cfg, choices = _hydra_config(list(groups))
                as_json = json.dumps(OmegaConf.to_container(cfg, resolve=False))
                bases[groups] = (cfg, choices, None if "${" in as_json else as_json)  # JSON: nothing to resolve
            base, choices, base_json = bases[groups]
            values = [(o.key_or_group, o.value()) for o in parsed if o.key_or_group not in GROUPS]
            if base_json is not None and "${" not in json.dumps(values):
                config = json.loads(base_json)  # a plain copy is much cheaper than copying a DictConfig
                for key, value in values:
                    _set(config, key, value)
                if not any(key == "name" for key, _ in values):
                    config["name"] = choices["experiment"]
                results.append(Composed(config=config, choices=choices, overrides=list(point),
                                        sources=_sources(choices, point)))
                continue
            cfg = copy.deepcopy(base)
            with _hydra_errors(point), open_dict(cfg):
                for key, value in values:
                    OmegaConf.update(cfg, key, value, merge=False)
            results.append(_finish(cfg, choices, point))
        except ConfigError as error:
            results.append(error)
    return results


def _set(tree: Any, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        tree = tree[int(part)] if isinstance(tree, list) else tree[part]
    if isinstance(tree, list):
        tree[int(last)] = value
    else:
        tree[last] = value


def _hydra_form(overrides: list[str]) -> list[str]:
    """New keys of open dicts (cluster.env.X, a new mix category) need Hydra's '+'; the schema already checked them."""
    return [
        f"++{line}" if key not in GROUPS and not line.startswith(("+", "~")) and not _in_defaults(key) else line
        for line, key in ((o.input_line, o.key_or_group) for o in parse_overrides(overrides))
    ]


def _in_defaults(path: str) -> bool:
    return _default_node(path) is not _MISSING


def _sources(choices: dict[str, str], overrides: list[str]) -> dict[str, str]:
    sources: dict[str, str] = {}
    for group in GROUPS:  # the order of experiments/config.yaml's defaults list
        path = EXPERIMENTS_DIR / group / f"{choices[group]}.yaml"
        data = _read_yaml(path)
        data.pop("defaults", None)
        if not data:
            continue
        package = [] if group == "experiment" else [group]
        for key in _leaves(data, package):
            sources[key] = str(path.relative_to(EXPERIMENTS_DIR.parent))
    for override in parse_overrides(overrides):
        key = override.key_or_group
        if key not in GROUPS:
            line = f"{key}=<redacted>" if SECRET_NAME.search(key) else override.input_line
            sources[key] = f"override '{line}'"
    return sources


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
        Problem(key, f"applies only to an estimator with a critic (gae), and ppo.estimator={ppo.estimator} has none",
                _node_at(composed.config, key),
                "drop the override, or set ppo.estimator=gae", source)
        for key, source in composed.sources.items()
        if source.startswith("override") and any(key == name or key.startswith(name + ".") for name in CRITIC_SETTINGS)
    ]


def load(overrides: list[str]) -> Experiment:
    """Compose and validate one experiment from command-line overrides."""
    return validate(compose(overrides))

