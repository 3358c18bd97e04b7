"""MMLU two ways: `mmlu`, lm-eval's multiple-choice layout with few-shot examples from the subject's dev split
(data_path a directory holding test.jsonl and dev.jsonl), and `mmlu_cot`, lm-eval's `mmlu_flan_cot_zeroshot` prompt
whose chosen letter is extracted from the completion."""

from __future__ import annotations

from typing import Any

from yulan.schema.evaluation import Benchmark
from yulan.stages.tasks import LETTERS, Dataset, Task

DATASET = Dataset("mmlu", fields=("question",), hub=("cais/mmlu", "all", "test"))


def text(record: dict[str, Any]) -> str:
    options = "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, record["choices"]))
    return f"{record['question'].strip()}{options}\nAnswer:"


def context(record: dict[str, Any], shots: list[dict[str, Any]]) -> str:
    """lm-eval's layout: subject description, the first n dev examples of the subject, then the question."""
    subject = record["subject"].replace("_", " ")
    examples = "".join(f"{text(shot)} {LETTERS[shot['answer']]}\n\n" for shot in shots)
    return f"The following are multiple choice questions (with answers) about {subject}.\n\n{examples}{text(record)}"


def choice_item(record: dict[str, Any], index: int, pool: list[dict[str, Any]], benchmark: Benchmark) -> dict[str, Any]:
    shots = [shot for shot in pool if shot["subject"] == record["subject"]][: benchmark.num_fewshot]
    if len(shots) < benchmark.num_fewshot:
        raise ValueError(
            f"mmlu subject '{record['subject']}' has {len(shots)} dev examples, "
            f"num_fewshot={benchmark.num_fewshot} needs more (put dev.jsonl beside test.jsonl)"
        )
    return {
        "id": str(index),
        "context": context(record, shots),
        "choices": list(LETTERS[: len(record["choices"])]),
        "target": record["answer"],
    }


def cot_question(record: dict[str, Any]) -> str:
    options = " ".join(f"({letter}) {choice}" for letter, choice in zip(LETTERS, record["choices"]))
    return f"Q: {record['question'].strip()}\n{options}\nA: Let's think step by step."


def cot_item(record: dict[str, Any], index: int, pool: list[dict[str, Any]], benchmark: Benchmark) -> dict[str, Any]:
    return {"id": str(index), "question": cot_question(record), "reference": LETTERS[record["answer"]]}


TASKS = (
    Task("mmlu", DATASET, "choice", ("acc", "acc_norm"), choice_item, scoring="choice"),
    Task("mmlu_cot", DATASET, "generate", ("exact_match",), cot_item, scoring="letter"),
)
