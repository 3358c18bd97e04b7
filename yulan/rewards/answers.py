"""Final answers of math completions and references: extract, then decide equality in one place (`equivalent`),
for every caller — evaluation, preference pairs, math distillation, PPO rewards.

Extraction prefers what the model marks as final: the last `\\boxed{...}`, "Final Answer: The final answer is $…$",
"#### …", "The answer is …", "答案是 …"; else the last number. Equality: two plain numbers (GSM8K style: thousands
separators, `$`, units, a unit in brackets, `%`, Markdown emphasis, trailing punctuation, full-width characters, a
Unicode minus, `.5`, `1e3`, a scale word: `5 thousand`, `3万`) compare as numbers; a number followed by arithmetic
in words (`9 minus two`) is no answer; anything else goes to math-verify, what lm-evaluation-harness's
`minerva_math` scores with (fractions, radicals, sets, intervals, tuples, matrices, percentages, units, `x=5`
against `5`), in a worker process that is killed when one check runs past MATH_VERIFY_TIMEOUT_S.

Nothing here raises or hangs on a model's output: every pattern is linear in the text (no nested or adjacent
ambiguous quantifiers), numbers are parsed with a bounded exponent, and what cannot be decided in time is wrong.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import unicodedata
from fractions import Fraction
from pathlib import Path

log = logging.getLogger(__name__)

ANSWER_IS = re.compile(r"answer\s*+(?:is|:)\s*+(.+)", re.IGNORECASE)
FINAL_ANSWER = re.compile(r"final answer is\s*+\$([^$]++)\$", re.IGNORECASE)
CHINESE_ANSWER = re.compile(r"答案(?:是|为)?+(.+)")
LAST_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})++|\d++)(?:\.\d++)?|[-+]?\.\d++")
NUMBER = re.compile(r"[-+]?+(?:\d{1,3}(?:,\d{3})++(?!\d)|\d++)?+(?:\.\d++)?+(?:[eE][-+]?+\d++)?+")
MINUS_SIGNS = str.maketrans({"−": "-", "–": "-", "﹣": "-", "－": "-"})
MAX_EXPONENT = 400  # 1e99999999999999999999 must not build a huge integer
MAX_NUMBER_CHARS = 200
SCALES = {
    "hundred": 100,
    "thousand": 1000,
    "million": 10**6,
    "billion": 10**9,
    "trillion": 10**12,
    "k": 1000,
    "百": 100,
    "千": 1000,
    "万": 10**4,
    "萬": 10**4,
    "亿": 10**8,
    "億": 10**8,
}
ARITHMETIC_WORDS = {
    "plus",
    "minus",
    "times",
    "divided",
    "over",
    "multiplied",
    "add",
    "added",
    "subtract",
    "subtracted",
    "less",
    "more",
    "squared",
    "cubed",
    "加",
    "减",
    "乘",
    "除",
    "乘以",
    "除以",
}
TRAILING = ".。!！?？,，;；:：、"
MATH_VERIFY_TIMEOUT_S = 10.0


def boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), with nested braces; None when unclosed or absent."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    depth, begin = 0, text.index("{", start)
    for i in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin + 1 : i]
    return None


def extract(completion: str) -> str | None:
    """The completion's final answer as written, or None when it states none."""
    if not isinstance(completion, str):
        return None
    if (inside := boxed(completion)) is not None:
        return inside.strip()
    if final := FINAL_ANSWER.findall(completion):
        return final[-1].strip()
    if "####" in completion:
        after = completion.rsplit("####", 1)[1].strip()
        return after.splitlines()[0] if after else None
    for pattern in (ANSWER_IS, CHINESE_ANSWER):
        matches = pattern.findall(completion)
        if matches:
            stated = matches[-1].strip().splitlines()[0].lstrip(":：").strip().rstrip(TRAILING).strip()
            return stated or None
    found = list(LAST_NUMBER.finditer(completion))
    if not found:
        return None
    last = found[-1]
    # '5 thousand', '3万', '9 minus two': the words after the number belong to it
    tail = completion[last.end() : last.end() + 80].split("\n")[0]
    words = tail.split()
    first = words[0].lower().rstrip(TRAILING) if words else ""
    if first in SCALES or first in ARITHMETIC_WORDS or tail[:1] in SCALES or tail[:1] in ARITHMETIC_WORDS:
        return (last.group(0) + tail).strip().rstrip(TRAILING)
    return last.group(0)


def reference_of(answer_field: str) -> str:
    """GSM8K's answer field ends with '#### <answer>'; MATH's solution holds a \\boxed{}; else the field itself."""
    if "####" in answer_field:
        return answer_field.rsplit("####", 1)[1].strip()
    return boxed(answer_field) or answer_field.strip()


def trimmed(text: str) -> str:
    """The answer without what does not change its value: full-width forms, Markdown emphasis, a trailing unit in
    brackets, trailing punctuation, escaped dollars."""
    plain = unicodedata.normalize("NFKC", text).translate(MINUS_SIGNS)
    plain = plain.replace("\\$", "$").replace("\\!", "").replace("**", "").replace("__", "").strip()
    for _ in range(3):  # `**18** (dollars).` : punctuation, then the bracket, then what preceded it
        plain = without_bracketed_tail(plain.strip().rstrip(TRAILING).strip("*_ ")).strip()
    return plain


def without_bracketed_tail(text: str) -> str:
    """'18 (dollars)' -> '18 ': a short bracketed note that ends the text, without brackets inside it; a text that
    is all one bracket ('(18元)') is its inside."""
    closers = {")": "(", "）": "（", "]": "["}
    if not text or text[-1] not in closers:
        return text
    opening = text.rfind(closers[text[-1]], max(0, len(text) - 62))
    if opening < 0 or any(c in "()（）[]" for c in text[opening + 1 : -1]):
        return text
    return text[:opening] if text[:opening].strip() else text[opening + 1 : -1]


def plain_number(text: str) -> Fraction | None:
    """A plain number with GSM8K's trimmings ('$1,234.5', '12 apples', '18 (dollars)', '**18**.', '−3', '.5',
    '1e3', '40%', '5 thousand', '3万'), or None for anything else (LaTeX, expressions, lists, several numbers, an
    exponent over MAX_EXPONENT)."""
    number, rest = leading_number(text)
    if not any(c.isdigit() for c in number) or len(number) > MAX_NUMBER_CHARS:
        return None
    number_text = number.replace(",", "")
    if "e" in number_text.lower() and abs(int(number_text.lower().split("e")[1])) > MAX_EXPONENT:
        return None
    words = rest.replace("\\%", " % ").replace("%", " % ").split()
    scale = 1
    if words and words[0].lower() in SCALES:
        scale = SCALES[words.pop(0).lower()]
    elif rest[:1] in SCALES and rest[:1] and not rest[:1].isascii():
        scale, words = SCALES[rest[:1]], rest[1:].split()
    if not all(word == "%" or unit_word(word) for word in words):
        return None
    try:
        return Fraction(number_text) * scale
    except (ValueError, ZeroDivisionError):
        return None


def leading_number(text: str) -> tuple[str, str]:
    """The answer trimmed (a leading `$` too), split into the number it starts with as written ('' for none) and
    what follows."""
    plain = trimmed(text)
    if plain.startswith("$"):
        plain = plain[1:].lstrip()
    match = NUMBER.match(plain)
    number = match.group(0) if match else ""
    return number, plain[len(number) :]


def unit_word(word: str) -> bool:
    """A word that can follow a number as its unit ('apples', 'km', 'dollars.', '元')."""
    word = word.rstrip(TRAILING)
    return bool(word) and all(c.isalpha() for c in word) and word.lower() not in ARITHMETIC_WORDS


def arithmetic_in_words(text: str) -> bool:
    """'9 minus two', '3 plus 4': an operation left undone is not an answer."""
    number, rest = leading_number(text)
    if not number:
        return False
    return any(word.lower().rstrip(TRAILING) in ARITHMETIC_WORDS for word in rest.split()) or any(
        rest.lstrip().startswith(word) for word in ARITHMETIC_WORDS if not word.isascii()
    )


def equivalent(answer: str | None, reference: str) -> bool:
    """The one equality of the project: a final answer against a reference answer."""
    if not isinstance(answer, str) or not answer.strip():
        return False
    if arithmetic_in_words(answer):
        return False
    a, b = plain_number(answer), plain_number(reference)
    if a is not None and b is not None:
        return a == b
    return MATH_VERIFY.equal(answer, reference)


def is_correct(completion: str, reference: str) -> bool:
    return equivalent(extract(completion), reference)


class MathVerify:
    """math-verify in a worker process: its own timeouts use SIGALRM, which only a main thread may set, and a
    parse can run far past them; the worker is killed after `timeout_s` and the check counts as wrong. One check
    at a time per process (a lock); the worker starts on the first check and is reused."""

    STARTUP_TIMEOUT_S = 120.0  # importing sympy on a loaded machine

    def __init__(self, timeout_s: float = MATH_VERIFY_TIMEOUT_S):
        self.timeout_s = timeout_s
        self.lock = threading.Lock()
        self.worker: subprocess.Popen | None = None
        self.owner = os.getpid()
        self.timeouts = 0

    def line(self, worker: subprocess.Popen, timeout_s: float) -> str | None:
        import select

        if select.select([worker.stdout], [], [], timeout_s)[0]:
            return worker.stdout.readline().strip()
        return None

    def start(self) -> subprocess.Popen | None:
        worker = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("math_worker.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        greeting = self.line(worker, self.STARTUP_TIMEOUT_S)
        if greeting == "ready":
            return worker
        worker.kill()
        worker.wait()
        if greeting and greeting.startswith("missing"):
            from yulan.runtime.packages import install_hint

            raise ModuleNotFoundError(
                f"math-verify is not installed for {sys.executable}: {install_hint('math_verify')}"
            )
        log.warning("math-verify's worker did not start: answers it would decide count as wrong")
        return None

    def equal(self, answer: str, reference: str) -> bool:
        with self.lock:
            if self.owner != os.getpid():  # a forked child must not share its parent's worker
                self.worker, self.owner = None, os.getpid()
            if self.worker is None or self.worker.poll() is not None:
                self.worker = self.start()
                if self.worker is None:
                    return False
            try:
                self.worker.stdin.write(json.dumps([answer, reference]) + "\n")
                self.worker.stdin.flush()
                verdict = self.line(self.worker, self.timeout_s)
            except (OSError, ValueError):
                verdict = None
            if verdict is not None:
                return verdict == "true"
            self.timeouts += 1
            log.warning(
                f"math-verify ran past {self.timeout_s} s comparing {answer[:80]!r} with {reference[:80]!r}: "
                "counted as wrong"
            )
            self.worker.kill()
            self.worker.wait()
            self.worker = None
            return False


MATH_VERIFY = MathVerify()
