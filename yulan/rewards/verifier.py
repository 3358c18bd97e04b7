"""Verifiable rewards: a checker's verdict for a prompt that carries a checkable reference.

A prompt record's `answer` makes it a math prompt (the response's final answer is compared by the shared answer
matcher, `yulan.rewards.answers.is_correct`); its `tests` make it a code prompt (the response's code runs in the
evaluation sandbox; the tests, which must import what they use, run in the judge and call the functions the code
defines). Other prompts have no checker.
"""

from __future__ import annotations

from dataclasses import dataclass

from yulan.rewards.answers import is_correct
from yulan.rewards.sandbox import code_of, isolation, run_tests
from yulan.schema.reward import Verifier


@dataclass(frozen=True)
class Check:
    kind: str
    passed: bool
    detail: str = ""


def kind_of(reference: dict) -> str | None:
    if reference.get("answer") is not None:
        return "math"
    if reference.get("tests"):
        return "code"
    return None


class Checker:
    """Checks responses against references; the sandbox's isolation is settled on the first code check."""

    def __init__(self, config: Verifier):
        self.config = config
        self._isolation: str | None = None

    def isolation(self) -> str:
        """Raises SandboxUnavailable where bubblewrap cannot start and unisolated code is not allowed."""
        if self._isolation is None:
            self._isolation = isolation(self.config.allow_unisolated_code)
        return self._isolation

    def __call__(self, reference: dict, response: str) -> Check | None:
        kind = kind_of(reference)
        if kind is None or kind not in self.config.weights:
            return None
        if kind == "math":
            return Check("math", is_correct(response, str(reference["answer"])))
        outcome = run_tests(
            code_of(response),
            str(reference["tests"]),
            self.config.code_timeout_s,
            self.config.code_memory_mb,
            self.isolation(),
        )
        return Check("code", outcome.passed, outcome.detail)
