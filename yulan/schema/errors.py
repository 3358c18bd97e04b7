"""Readable configuration errors: field path, bad value, rule, fix, report value and where the value came from."""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, TypeGuard

from pydantic import BaseModel, ValidationError

from yulan.schema.fields import PAPER, source_of


@dataclass(frozen=True)
class Problem:
    path: str
    rule: str
    value: Any = None
    fix: str | None = None
    source: str | None = None
    report: str | None = None
    has_value: bool = True

    def render(self) -> str:
        head = f"  {self.path}" + (f" = {_show(self.value)}" if self.has_value else "")
        lines = [head + (f"   (set by {self.source})" if self.source else "")]
        lines.append(f"    rule: {self.rule}")
        if self.report:
            lines.append(f"    report: {self.report}")
        if self.fix:
            lines.append(f"    fix:  {self.fix}")
        return "\n".join(lines)


class ConfigError(Exception):
    """One or more problems with an experiment; str() is the message shown to the user."""

    def __init__(self, context: str, problems: list[Problem]):
        self.context = context
        self.problems = problems
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        super().__init__(f"error: {context} ({count})\n" + "\n".join(p.render() for p in problems))


def _show(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def suggest(name: str, candidates: list[str]) -> str | None:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return close[0] if close else None


def unwrap(annotation: Any) -> Any:
    """X | None -> X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def is_model(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def field_at(root: type[BaseModel], parts: list[str]) -> tuple[type[BaseModel], str] | None:
    """The model class and field name that a dotted path ends on (None if the path leaves the schema)."""
    annotation: Any = root
    owner: tuple[type[BaseModel], str] | None = None
    for part in parts:
        annotation = unwrap(annotation)
        if is_model(annotation):
            if part not in annotation.model_fields:
                return None
            owner = (annotation, part)
            annotation = annotation.model_fields[part].annotation
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
            owner = None
        elif typing.get_origin(annotation) in (tuple, list):
            annotation = typing.get_args(annotation)[0]
            owner = None
        else:
            return None
    return owner


def all_field_paths(root: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in root.model_fields.items():
        path = f"{prefix}{name}"
        paths.append(path)
        annotation = unwrap(field.annotation)
        if is_model(annotation):
            paths.extend(all_field_paths(annotation, path + "."))
    return paths


def unknown_key_hint(root: type[BaseModel], parent: list[str], name: str) -> str:
    owner = field_at(root, parent) if parent else None
    annotation = unwrap(owner[0].model_fields[owner[1]].annotation) if owner else (root if not parent else None)
    siblings = list(annotation.model_fields) if is_model(annotation) else []
    close = suggest(name, siblings)
    if close:
        return f"did you mean '{'.'.join([*parent, close])}'?"
    matches = [p for p in all_field_paths(root) if suggest(name, [p.rsplit(".", 1)[-1]])]
    if matches:
        return f"did you mean '{matches[0]}'?"
    where = ".".join(parent) or "the top level"
    return f"valid keys at {where}: {', '.join(siblings)}" if siblings else "remove it"


def field_source(root: type[BaseModel], path: str) -> dict[str, Any]:
    """Provenance metadata of the nearest field on `path` that declares one (entries of a report table inherit it)."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        owner = field_at(root, parts[:end])
        if owner is not None:
            meta = source_of(*owner)
            if "source" in meta:
                return meta
    return {}


def report_note(root: type[BaseModel], path: str, default_of: Callable[[str], Any]) -> str | None:
    meta, value = field_source(root, path), default_of(path)
    if meta.get("source") != PAPER or value is None:
        return None
    return f"{_show(value)} ({meta.get('where')})"


def from_validation_error(
    root: type[BaseModel],
    error: ValidationError,
    source_of_path: Callable[[str], str | None],
    default_of: Callable[[str], Any],
) -> list[Problem]:
    problems = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"] if not _is_union_tag(part)]
        if item["type"] == "rule":
            ctx = item["ctx"]
            path = ".".join([*loc, ctx["field"]])
            problems.append(
                Problem(
                    path,
                    ctx["rule"],
                    ctx["value"],
                    ctx["fix"],
                    source_of_path(path),
                    report_note(root, path, default_of),
                )
            )
        elif item["type"] == "literal_error" and isinstance(item.get("input"), str):
            path = ".".join(loc)
            choices = re.findall(r"'([^']*)'", item["ctx"]["expected"])
            close = suggest(item["input"], choices)
            problems.append(
                Problem(
                    path,
                    f"must be one of: {', '.join(choices)}",
                    item["input"],
                    f"did you mean '{close}'?" if close else "choose one of those",
                    source_of_path(path),
                    report_note(root, path, default_of),
                )
            )
        elif item["type"] == "extra_forbidden":
            path = ".".join(loc)
            problems.append(
                Problem(
                    path, "unknown key", item["input"], unknown_key_hint(root, loc[:-1], loc[-1]), source_of_path(path)
                )
            )
        else:
            path = ".".join(loc)
            problems.append(
                Problem(
                    path,
                    item["msg"],
                    item.get("input"),
                    "set it to a value that satisfies the rule",
                    source_of_path(path),
                    report_note(root, path, default_of),
                )
            )
    return problems


def _is_union_tag(part: Any) -> bool:
    # pydantic adds the member type to the location of errors inside `X | None` unions.
    return isinstance(part, str) and (
        part in {"str", "int", "float", "bool", "none"} or part.startswith(("function-", "literal["))
    )
