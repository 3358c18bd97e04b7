"""What runs inside a job, per (stage, engine). OpenRLHF stages run their engine command (yulan.run);
the native engine, curation and evaluation register their entry points here as they are built."""

from __future__ import annotations

from importlib import import_module
from typing import Callable

# (stage, engine) -> "module:function"; the function takes (experiment, job_dir) and returns an exit status.
RUNNERS: dict[tuple[str, str | None], str] = {}


def runner(stage: str, engine: str | None) -> Callable | None:
    target = RUNNERS.get((stage, engine))
    if target is None:
        return None
    module, function = target.split(":")
    return getattr(import_module(module), function)


def available(stage: str, engine: str | None) -> bool:
    return engine == "openrlhf" or (stage, engine) in RUNNERS
