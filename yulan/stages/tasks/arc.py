"""ARC-Challenge as lm-eval's `arc_challenge`: the log-likelihood of each answer after "Question: …\nAnswer:"."""

from __future__ import annotations

from typing import Any

from yulan.schema.evaluation import Benchmark
from yulan.stages.tasks import Dataset, Task

DATASET = Dataset("arc", fields=("question",), hub=("allenai/ai2_arc", "ARC-Challenge", "test"))


def item(record: dict[str, Any], index: int, pool: list[dict[str, Any]], benchmark: Benchmark) -> dict[str, Any]:
    return {
        "id": record.get("id", str(index)),
        "context": f"Question: {record['question']}\nAnswer:",
        "choices": list(record["choices"]["text"]),
        "target": list(record["choices"]["label"]).index(record["answerKey"]),
    }


TASKS = (Task("arc", DATASET, "choice", ("acc", "acc_norm"), item, scoring="choice"),)
