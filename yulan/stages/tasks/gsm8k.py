"""GSM8K, zero-shot chain of thought: the final answer is extracted and compared with the reference."""

from __future__ import annotations

from typing import Any

from yulan.schema.evaluation import Benchmark
from yulan.stages.tasks import COT_INSTRUCTION, Dataset, Task

DATASET = Dataset("gsm8k", fields=("question", "answer"), hub=("openai/gsm8k", "main", "test"))


def item(record: dict[str, Any], index: int, pool: list[dict[str, Any]], benchmark: Benchmark) -> dict[str, Any]:
    return {"id": str(index), "question": f"{record['question']}\n{COT_INSTRUCTION}", "reference": record["answer"]}


TASKS = (Task("gsm8k", DATASET, "generate", ("exact_match",), item, scoring="answer"),)
