"""Final answers of math completions and references: extract, then decide equality in one place (`equivalent`),
for every caller — evaluation, preference pairs, math distillation, PPO rewards.

Extraction prefers what the model marks as final: the last `\\boxed{...}`, "Final Answer: The final answer is $…$",
"#### …", "The answer is …", "答案是 …"; else the last number. Equality: two plain numbers (GSM8K style: thousands
separators, `$`, units, `%`, a Unicode minus, `.5`, `1e3`) compare as numbers; anything else goes to math-verify,
what lm-evaluation-harness's `minerva_math` scores with (fractions, radicals, sets, intervals, tuples, matrices,
percentages, units, `x=5` against `5`). Nothing here raises on a model's output: what cannot be parsed is wrong.
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction

ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*(.+)", re.IGNORECASE)
FINAL_ANSWER = re.compile(r"final answer is\s*\$(.+?)\$", re.IGNORECASE | re.DOTALL)
CHINESE_ANSWER = re.compile(r"答案(?:是|为|：|:)\s*(.+)")
NUMBER_TEXT = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?"
LAST_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
PLAIN_NUMBER = re.compile(rf"\$?\s*({NUMBER_TEXT})\s*(?:%|\\%|[A-Za-z\u4e00-\u9fff]+\.?\s*)*")
MINUS_SIGNS = str.maketrans({"−": "-", "–": "-", "﹣": "-", "－": "-"})


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
            return matches[-1].strip().splitlines()[0].rstrip(".。").strip() or None
    numbers = LAST_NUMBER.findall(completion)
    return numbers[-1] if numbers else None


def reference_of(answer_field: str) -> str:
    """GSM8K's answer field ends with '#### <answer>'; MATH's solution holds a \\boxed{}; else the field itself."""
    if "####" in answer_field:
        return answer_field.rsplit("####", 1)[1].strip()
    return boxed(answer_field) or answer_field.strip()


def plain_number(text: str) -> Fraction | None:
    """A plain number with GSM8K's trimmings ('$1,234.5', '12 apples', '−3', '.5', '1e3', '40%'), or None for
    anything else (LaTeX, expressions, lists, several numbers)."""
    plain = text.translate(MINUS_SIGNS).replace("\\$", "$").replace("\\!", "").strip().rstrip(".。").strip()
    match = PLAIN_NUMBER.fullmatch(plain)
    if not match or not re.search(r"\d", match.group(1)):
        return None
    try:
        return Fraction(match.group(1).replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def equivalent(answer: str | None, reference: str) -> bool:
    """The one equality of the project: a final answer against a reference answer."""
    if not isinstance(answer, str) or not answer.strip():
        return False
    a, b = plain_number(answer), plain_number(reference)
    if a is not None and b is not None:
        return a == b
    return math_verify_equal(answer, reference)


def math_verify_equal(answer: str, reference: str) -> bool:
    from math_verify import parse, verify

    # math-verify bounds its own time with SIGALRM, which only the main thread may use
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        gold = parse(f"${reference}$", parsing_timeout=timeout)
        predicted = parse(f"${answer}$", parsing_timeout=timeout)
        return bool(gold and predicted and verify(gold, predicted, timeout_seconds=timeout))
    except Exception:  # a model's output never stops scoring
        return False


def is_correct(completion: str, reference: str) -> bool:
    return equivalent(extract(completion), reference)
