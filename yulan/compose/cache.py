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

from yulan.compose.search import search_path
from yulan.compose.tree import Composed, schema_defaults
from yulan.schema.errors import ConfigError, Problem
from yulan.schema.infra import SECRET_NAME

COMPOSING_CODE = sorted(Path(__file__).parent.glob("*.py"))


# Hydra's sweep expansion hands each point the lookup escaped (`$\{oc.env\:NAME\}`); it still resolves.
ENV_LOOKUP = re.compile(r"\$\\?\{oc\.env\\?:([A-Za-z_][A-Za-z0-9_]*)")
# The clock: `${now:...}` differs between launches
CLOCK_LOOKUP = re.compile(r"\$\\?\{now\\?:")


def config_files() -> dict[str, bytes]:
    """Every file of the search path, read once per composition (or sweep): {path: contents}."""
    return {str(path): path.read_bytes() for tree in search_path() for path in sorted(tree.rglob("*.yaml"))}


def file_texts(files: dict[str, bytes]) -> list[str]:
    """The config files as text, for the lookups below (decoded once per composition or sweep)."""
    return [data.decode(errors="replace") for data in files.values()]


def environment_lookups(texts: list[str]) -> list[str]:
    """Variables `${oc.env:NAME}` reads in these texts (overrides and config files). A secret's value would land in
    config.json, the sbatch script and the compose cache: those are refused."""
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


def cacheable(texts: list[str]) -> bool:
    """Whether a composition of these texts (overrides and config files) is the same at every launch: it reads
    neither the environment nor the clock."""
    return not environment_lookups(texts) and not any(CLOCK_LOOKUP.search(text) for text in texts)


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
    try:
        return Composed(**json.loads((directory / f"{key}.json").read_text())) if directory else None
    except (OSError, ValueError, TypeError):
        return None


def write(key: str, composed: Composed) -> None:
    directory = cache_dir()
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        temporary = directory / f"{key}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(asdict(composed)))
        temporary.replace(directory / f"{key}.json")  # atomic: concurrent launches never read half a file
    except OSError:
        pass  # a read-only home only costs speed
