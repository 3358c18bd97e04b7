"""Every regular expression that reads model text ends in time linear in the text: each is run on adversarial
inputs of growing length, and 16 times the text may take at most 64 times as long (quadratic would be 256x)."""

import re
import time

import pytest

from yulan.rewards import answers, penalties, sandbox
from yulan.stages.evaluation import scoring

PATTERNS = {
    f"{module.__name__.rsplit('.', 1)[1]}.{name}": value
    for module in (answers, penalties, sandbox, scoring)
    for name, value in vars(module).items()
    if isinstance(value, re.Pattern)
}
PIECES = [
    "a",
    " ",
    "1",
    "1,",
    "(",
    "（中",
    "中",
    "$$",
    "$",
    "**",
    "`",
    "```",
    "answer is ",
    "答案",
    "答案是 ",
    " ab.",
    "5 apples ",
    "\\boxed{",
    "final answer is $",
    "e9",
    "\n",
    " \n",
    "I pick ",
    "(A",
]


def runtime(function, text: str) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        function(text)
        best = min(best, time.perf_counter() - started)
    return best


def adversarial(piece: str, length: int) -> str:
    return "5 " + piece * (length // len(piece)) + "!\x00x"  # a tail no pattern expects


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_each_pattern_is_linear(name):
    pattern = PATTERNS[name]
    for piece in PIECES:
        small = runtime(
            lambda text: (pattern.findall(text), pattern.match(text), pattern.fullmatch(text)),
            adversarial(piece, 2_000),
        )
        large = runtime(
            lambda text: (pattern.findall(text), pattern.match(text), pattern.fullmatch(text)),
            adversarial(piece, 32_000),
        )
        assert large <= 64 * max(small, 2e-4), (name, piece, small, large)


@pytest.mark.parametrize(
    "function",
    [answers.extract, answers.plain_number, answers.arithmetic_in_words, scoring.chosen_letter, sandbox.code_of],
    ids=["extract", "plain_number", "arithmetic_in_words", "chosen_letter", "code_of"],
)
def test_each_reader_of_model_text_is_linear(function):
    for piece in PIECES:
        small, large = runtime(function, adversarial(piece, 2_000)), runtime(function, adversarial(piece, 32_000))
        assert large <= 64 * max(small, 2e-4), (piece, small, large)


def test_penalties_are_linear():
    rules = penalties.Penalties()
    for piece in PIECES:
        run = lambda text: penalties.judge("Explain it.", text, rules)  # noqa: E731
        small, large = runtime(run, adversarial(piece, 2_000)), runtime(run, adversarial(piece, 32_000))
        assert large <= 64 * max(small, 2e-4), (piece, small, large)


def test_the_old_gsm8k_answer_stays_fast():
    """A one-sentence answer that made the old number pattern backtrack for over a minute."""
    started = time.perf_counter()
    assert answers.plain_number("5" + " apples and" * 30 + " 3.") is None
    assert answers.is_correct("The answer is 18 dollars and" + " some more words" * 40 + " !", "18") in (True, False)
    assert time.perf_counter() - started < 5


def test_math_verify_is_stopped_in_any_thread_and_counts_wrong(caplog):
    """math-verify itself is not linear ('(' * 32000 parses for seconds): its worker is killed at the time limit,
    from a thread as from the main thread, the check is wrong, and the next check gets a fresh worker."""
    import threading

    checker = answers.MathVerify(timeout_s=0.5)
    results = []
    started = time.perf_counter()
    worker = threading.Thread(target=lambda: results.append(checker.equal("(" * 32_000, "5")))
    worker.start()
    worker.join()
    assert results == [False] and checker.timeouts == 1
    assert time.perf_counter() - started < answers.MathVerify.STARTUP_TIMEOUT_S
    assert "ran past 0.5 s" in caplog.text and "counted as wrong" in caplog.text
    assert checker.equal("\\frac{1}{2}", "0.5") is True and checker.timeouts == 1
