"""`yulan curate STEP --input IN --output OUT [key=value ...]`: one curation step on a file of samples."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from yulan.schema.curation import STEPS
from yulan.schema.errors import ConfigError


def add_parser(sub) -> None:
    parser = sub.add_parser("curate", help="run one curation step on a JSONL file")
    parser.add_argument("step", choices=list(STEPS))
    parser.add_argument("--input", type=Path, required=True, help="JSONL or Parquet samples")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--model", help="base model for complexity (local directory or hub id)")
    parser.add_argument("settings", nargs="*", help="settings of the step, e.g. threshold=0.85 bands=16")


def set_path(tree: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        if not isinstance(tree.get(part), dict):
            tree[part] = {}  # validation then names this path and the type it expects
        tree = tree[part]
    tree[last] = value


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from importlib import import_module

    import yaml
    from pydantic import ValidationError

    from yulan.runtime.records import RecordError
    from yulan.schema.errors import from_validation_error
    from yulan.schema.fields import default_tree

    step = STEPS[args.step]
    malformed = [item for item in args.settings if "=" not in item]
    if malformed:
        print(f"error: settings are key=value (got {malformed}); keys are {step.section} fields", file=sys.stderr)
        return 1
    # Settings start from the schema's defaults; values are typed as in YAML and Hydra overrides.
    settings = default_tree(step.settings)
    for key, value in (item.split("=", 1) for item in args.settings):
        try:
            set_path(settings, key, yaml.safe_load(value))
        except yaml.YAMLError as error:
            problem = str(error).splitlines()[0]
            print(
                f"error: setting {key}={value}: not a YAML value ({problem}); write a number, true/false, a "
                "string or a [list] (quote text that holds YAML syntax)",
                file=sys.stderr,
            )
            return 1
    try:
        config = step.settings.model_validate(settings)
    except ValidationError as error:
        problems = [
            dataclasses.replace(problem, path=f"{step.section}.{problem.path}")
            for problem in from_validation_error(step.settings, error, lambda path: None, lambda path: None)
        ]
        print(ConfigError(f"invalid {step.section} settings", problems), file=sys.stderr)
        return 1
    if not args.input.exists():
        print(
            f"error: --input {args.input}: no such file; expected a JSONL or Parquet file of samples", file=sys.stderr
        )
        return 1
    needs: dict[str, Any] = {}
    if step.model == "base":
        if not args.model:
            print(
                (
                    f"error: {args.step} scores responses with a base model: pass --model PATH (a local directory "
                    "or hub id)"
                ),
                file=sys.stderr,
            )
            return 1
        needs["model"] = args.model
    if step.reads_eval_table:
        from yulan.schema.evaluation import EvalConfig

        needs["benchmarks"] = EvalConfig().benchmarks
    try:
        counts = import_module(step.module).run(args.input, args.output, config, args.seed, **needs)
    except RecordError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(counts, indent=2, ensure_ascii=False))
    return 0
