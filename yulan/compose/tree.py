"""Settings as plain trees: the schema's defaults, values at dotted paths, and a composed experiment with the file
or override each value came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from yulan.schema.errors import ConfigError, Problem
from yulan.schema.experiment import Experiment
from yulan.schema.fields import default_tree


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


@cache
def schema_defaults() -> dict[str, Any]:
    return default_tree(Experiment)


MISSING = object()


def node_at(tree: Any, path: str) -> Any:
    """The value at a dotted path of a tree of dicts and lists, or MISSING."""
    node = tree
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
    return node


def default_at(path: str) -> Any:
    """The schema's default at a dotted path (None where there is none)."""
    node = node_at(schema_defaults(), path)
    return None if node is MISSING else node


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested settings as {dotted path: value}."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def with_value(tree: Any, parts: list[str], value: Any) -> Any:
    """`tree` with `value` at the dotted path, copying only the nodes on the way (the schema's defaults are shared
    between compositions and never change); a list item is named by its position, missing mappings are made."""
    if not parts:
        return value
    head, rest = parts[0], parts[1:]
    if isinstance(tree, list) and head.isdigit() and int(head) < len(tree):
        copy = list(tree)
        copy[int(head)] = with_value(copy[int(head)], rest, value)
        return copy
    mapping = dict(tree) if isinstance(tree, dict) else {}
    mapping[head] = with_value(mapping.get(head), rest, value)
    return mapping


def without(tree: Any, parts: list[str], line: str) -> Any:
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
        copy[parts[0]] = without(copy[parts[0]], parts[1:], line)
    return copy


def laid_over(base: Any, delta: Any) -> Any:
    """OmegaConf's merge of plain trees: mappings merge key by key, anything else (lists too) replaces."""
    if isinstance(base, dict) and isinstance(delta, dict):
        return {**base, **{key: laid_over(base[key], value) if key in base else value for key, value in delta.items()}}
    return delta
