"""A cache of Hydra's compositions, keyed by every input that can change one: the overrides, every file of the
search path (name and bytes), the schema's defaults, the code that composes, the Hydra and OmegaConf installs and the
working directory (messages name files relative to it). A composition that reads the environment or the clock is
never cached, and one that reads a secret from the environment is refused."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from yulan.compose.search import search_path
from yulan.compose.tree import Composed, schema_defaults
from yulan.schema.errors import ConfigError, Problem
from yulan.schema.infra import SECRET_NAME

COMPOSING_CODE = sorted(Path(__file__).parent.glob("*.py"))


# The clock: `${now:...}` differs between launches
CLOCK_LOOKUP = re.compile(r"\$\\?\{\s*+now\s*+\\?:")
ENV_RESOLVERS = ("oc.env", "env")
UNPARSED = "<a lookup this check could not parse>"


def lookups_in(value: str) -> list[str]:
    """The variables `oc.env` reads in one value, found by OmegaConf's own grammar: every spelling (spaces, quotes,
    a default, nested in another resolver) is the same lookup. A name that is itself computed comes back as the
    expression (`${x}`); text the grammar cannot parse but that mentions `env` comes back as UNPARSED."""
    if "$" not in value:
        return []
    # Hydra's sweep expansion hands each point its lookups escaped (`$\{oc.env\:NAME\}`); they still resolve
    text = value.replace("$\\{", "${").replace("\\:", ":").replace("\\}", "}")
    from omegaconf import grammar_parser
    from omegaconf.errors import GrammarParseError
    from omegaconf.grammar.gen.OmegaConfGrammarParser import OmegaConfGrammarParser as Grammar

    try:
        tree = grammar_parser.parse(text)
    except (GrammarParseError, RecursionError):
        return [UNPARSED] if "env" in text else []
    found: list[str] = []
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, Grammar.InterpolationResolverContext):
            resolver = "".join(node.resolverName().getText().split())  # type: ignore[no-untyped-call]
            if resolver in ENV_RESOLVERS:
                sequence = node.sequence()  # type: ignore[no-untyped-call]
                found.append(variable_of(sequence.element(0) if sequence else None, Grammar))
        stack.extend(getattr(node, "children", None) or [])
    return found


def variable_of(element: Any, grammar: Any) -> str:
    """The variable an `oc.env` element names: the literal text, unquoted; the expression when it is computed."""
    if element is None:
        return UNPARSED
    stack = [element]
    while stack:
        node = stack.pop()
        if isinstance(node, grammar.InterpolationContext):
            return str(element.getText()).strip()
        stack.extend(getattr(node, "children", None) or [])
    text = str(element.getText()).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return text


def interpolations(text: str) -> list[str]:
    """Each `${...}` of a text (an override, a whole config file) with its nested braces, Hydra's escaped braces
    counted too; an unclosed one runs to the end of the text. One pass, no YAML loading."""
    found, start = [], text.find("$")
    while start >= 0:
        if text.startswith(("${", "$\\{"), start):
            depth, index = 0, start
            while index < len(text):
                char = text[index]
                if char == "{":
                    depth += 1
                elif char == "}":
                    depth -= 1
                    if depth == 0:
                        break
                index += 1
            found.append(text[start : index + 1])
            start = text.find("$", index + 1)
        else:
            start = text.find("$", start + 1)
    return found


def config_files() -> dict[str, bytes]:
    """Every file of the search path, read once per composition (or sweep): {path: contents}."""
    return {str(path): path.read_bytes() for tree in search_path() for path in sorted(tree.rglob("*.yaml"))}


def file_texts(files: dict[str, bytes]) -> list[str]:
    """The config files as text, for the lookups below (decoded once per composition or sweep)."""
    return [data.decode(errors="replace") for data in files.values()]


def environment_lookups(overrides: list[str], files: list[str] | None = None) -> list[str]:
    """Variables `oc.env` reads in the overrides and the config files' texts. A secret's value would land in
    config.json, the sbatch script and the compose cache: a secret-looking name is refused, in any spelling, and
    so is a name computed at composition (which no check can see)."""
    names = sorted(
        {
            name
            for text in (*overrides, *(files or []))
            for interpolation in interpolations(text)
            if "env" in interpolation  # only a lookup that names a resolver with `env` in it is parsed
            for name in lookups_in(interpolation)
        }
    )
    secrets = [name for name in names if SECRET_NAME.search(name) or name.startswith("${")]
    if secrets:
        raise ConfigError(
            "a secret read into the config",
            [
                Problem(
                    "overrides",
                    "a config value is written to config.json, resolved.yaml and sbatch scripts; a secret never is",
                    [f"${{oc.env:{name}}}" for name in secrets],
                    "export the variable where the job runs; jobs inherit the "
                    "environment and the code reads it there (as WANDB_API_KEY is); a variable read into the "
                    "config is named literally",
                )
            ],
        )
    return names


def cacheable(overrides: list[str], files: list[str]) -> bool:
    """Whether a composition of these overrides and config files' texts is the same at every launch: it reads
    neither the environment nor the clock."""
    clock = any(CLOCK_LOOKUP.search(text) for text in (*overrides, *files))
    return not environment_lookups(overrides, files) and not clock


def cache_dir() -> Path | None:
    if os.environ.get("YULAN_COMPOSE_CACHE", "1") == "0":
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "yulan" / "compose"


def installed(package: str) -> str:
    """Which install of a package composes, without importing it: its location and when it was written (an upgrade
    or a reinstall rewrites it). A tenth of the cost of asking importlib.metadata for the version."""
    spec = importlib.util.find_spec(package)
    origin = spec.origin if spec and spec.origin else ""
    return f"{origin}@{os.stat(origin).st_mtime_ns}" if origin else "absent"


def key(overrides: list[str], files: dict[str, bytes]) -> str:
    digest = hashlib.sha256(
        json.dumps([overrides, schema_defaults(), installed("hydra"), installed("omegaconf"), os.getcwd()]).encode()
    )
    for path in COMPOSING_CODE:  # this code decides what is composed: an upgrade misses the cache
        digest.update(path.read_bytes())
    for name, data in files.items():
        digest.update(name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


def read(key: str) -> Composed | None:
    directory = cache_dir()
    entry = directory / f"{key}.json" if directory else None
    if entry is None or entry.is_symlink() or not entry.is_file():  # a FIFO would never answer; a link is foreign
        return None
    try:
        return Composed(**json.loads(entry.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write(key: str, composed: Composed) -> None:
    directory = cache_dir()
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        entry = directory / f"{key}.json"
        if entry.is_symlink() or (entry.exists() and not entry.is_file()):
            return  # what is not a cache file of ours is never replaced; the composition just is not cached
        temporary = directory / f"{key}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(asdict(composed)))
        temporary.replace(entry)  # atomic: concurrent launches never read half a file
    except OSError:
        pass  # a read-only home only costs speed
