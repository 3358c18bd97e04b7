"""MATH, as lm-eval's `minerva_math` zero-shot ("Problem:\n…\n\nSolution:", the completion cut at "Problem:"), its
`math_verify` metric computed by yulan.rewards.answers (math-verify for everything but plain numbers). Data: the test
split of EleutherAI/hendrycks_math's seven subjects (hub or HF_HOME cache), or data_path."""

from __future__ import annotations

from typing import Any

from yulan.schema.evaluation import Benchmark
from yulan.stages.tasks import Dataset, Task

SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)
HUB_NAME = "EleutherAI/hendrycks_math"


def test_split() -> list[dict[str, Any]]:
    try:
        import datasets

        return [
            dict(record) for subject in SUBJECTS for record in datasets.load_dataset(HUB_NAME, subject, split="test")
        ]
    except Exception as error:  # offline without a cache, or without the datasets package
        raise ValueError(
            f"the MATH test split could not be loaded ({type(error).__name__}: {str(error)[:200]}); set "
            "data_path to a local JSONL file with problem, solution (and type) per line"
        ) from None


DATASET = Dataset(
    "math",
    fields=("problem", "solution"),
    hub=(HUB_NAME, *SUBJECTS, "test"),
    default_records=test_split,
    default_origin=f"the hub ({HUB_NAME})",
)


def item(record: dict[str, Any], index: int, pool: list[dict[str, Any]], benchmark: Benchmark) -> dict[str, Any]:
    return {
        "id": str(index),
        "question": f"Problem:\n{record['problem']}\n\nSolution:",
        "reference": record["solution"],
        **({"subject": record["type"]} if "type" in record else {}),
    }


TASKS = (Task("math", DATASET, "generate", ("math_verify",), item, scoring="answer", until="Problem:"),)
