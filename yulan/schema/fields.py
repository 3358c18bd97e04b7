"""Building blocks shared by every schema module.

Every setting is declared with `paper(...)` (a value the YuLan-Mini report states, with where it states it)
or `chosen(...)` (a value the report leaves open; the reason for our choice is part of the description).
Cross-field rules raise `rule_error(...)`, which carries the field path, the value, the rule and the fix so
that `schema.errors` can print a message that names all four.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

PAPER = "report"  # the provenance label of a value the YuLan-Mini report gives
CHOSEN = "not in the report"


class Section(BaseModel):
    """A frozen block of settings that rejects unknown keys and non-finite numbers (1e400 is not a learning rate)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False, defer_build=True)


def paper(default: Any = ..., *, where: str, description: str, unit: str | None = None, **kwargs: Any) -> Any:
    """A setting whose default is the value the report gives (`where` says in which section or table)."""
    return _field(default, description, {"source": PAPER, "where": where, "unit": unit}, kwargs)


def chosen(default: Any = ..., *, description: str, unit: str | None = None, **kwargs: Any) -> Any:
    """A setting the report leaves open; the description says why this default was chosen."""
    return _field(default, description, {"source": CHOSEN, "unit": unit}, kwargs)


def _field(default: Any, description: str, extra: dict[str, Any], kwargs: dict[str, Any]) -> Any:
    extra = {key: value for key, value in extra.items() if value is not None}
    if "default_factory" in kwargs:
        return Field(description=description, json_schema_extra=extra, **kwargs)
    return Field(default, description=description, json_schema_extra=extra, **kwargs)


CONTROL = re.compile(r"[\x00-\x1f\x7f]")
NAME_MAX = 255  # bytes in one file name on Linux file systems


def path_problem(value: str) -> str | None:
    """Why a path cannot name a directory and stand in an sbatch script, or None: control characters (a newline
    would end an #SBATCH line and start a shell one) and file names too long for any file system."""
    control = CONTROL.search(value)
    if control:
        return f"holds the control character {control.group()!r}; a path is one line of printable characters"
    longest = max(value.split("/"), key=lambda part: len(part.encode()))
    if len(longest.encode()) > NAME_MAX:
        return f"has a {len(longest.encode())}-byte file name ('{longest[:20]}...'); file systems take {NAME_MAX}"
    return None


def rule_error(field: str, value: Any, rule: str, fix: str) -> PydanticCustomError:
    """A broken cross-field rule. `field` is a dotted path relative to the model that checks the rule."""
    return PydanticCustomError(
        "rule",
        "{rule}",
        {"field": field, "value": value, "rule": rule, "fix": fix},
    )


def source_of(model_cls: type[BaseModel], name: str) -> dict[str, Any]:
    """The provenance metadata (`source`, `where`, `unit`) declared for one field."""
    extra = model_cls.model_fields[name].json_schema_extra
    return dict(extra) if isinstance(extra, dict) else {}


def plain(value: Any) -> Any:
    """Settings as plain YAML/JSON data: models become dicts of their declared (not computed) fields."""
    if isinstance(value, BaseModel):
        return {name: plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def default_tree(model_cls: type[BaseModel]) -> dict[str, Any]:
    """Every field of `model_cls` with its default, without running cross-field rules of the whole."""
    return {name: plain(field.get_default(call_default_factory=True)) for name, field in model_cls.model_fields.items()}
