"""`yulan schema [--output FILE]`: the JSON Schema of experiment files (editor completion)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from yulan.schema.experiment import Experiment

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema" / "experiment.schema.json"


def add_parser(sub) -> None:
    parser = sub.add_parser("schema", help="JSON Schema of experiment files")
    parser.add_argument("--output")


def json_schema() -> dict[str, Any]:
    schema = Experiment.model_json_schema(mode="validation")
    # Experiment files are Hydra configs: they may carry a defaults list.
    schema["properties"]["defaults"] = {
        "type": "array",
        "description": "Hydra defaults list (e.g. override /model: tiny).",
    }
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def run(args: argparse.Namespace) -> int:
    text = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
    if args.output:
        from yulan.runtime.records import write_text

        write_text(args.output, text, stream=True)
    else:
        print(text, end="")
    return 0
