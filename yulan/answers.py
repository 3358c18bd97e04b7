"""Final answers of math completions and references (GSM8K, MATH, preference data): extract, normalise, compare.

Extraction prefers what the model marks as final — `\\boxed{...}`, "The answer is ...", "#### ..." — and falls
back to the last number. Comparison is numeric when both sides are numbers (thousands separators, units, `$`,
percent signs and LaTeX fractions are normalised), otherwise on the normalised text.
"""

from __future__ import annotations

import re
from fractions import Fraction

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*(.+)", re.IGNORECASE)
CHINESE_ANSWER = re.compile(r"答案(?:是|为|：|:)\s*(.+)")


def boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), with nested braces."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    depth, begin = 0, text.index("{", start)
    for i in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin + 1:i]
    return None


def extract(completion: str) -> str | None:
    """The completion's final answer as written, or None when it states none."""
    if (inside := boxed(completion)) is not None:
        return inside.strip()
    if "####" in completion:
        after = completion.rsplit("####", 1)[1].strip()
        return after.splitlines()[0] if after else None
    for pattern in (ANSWER_IS, CHINESE_ANSWER):
        matches = pattern.findall(completion)
        if matches:
            return matches[-1].strip().splitlines()[0].rstrip(".。")
    numbers = NUMBER.findall(completion)
    return numbers[-1] if numbers else None


def reference_of(answer_field: str) -> str:
    """GSM8K's answer field ends with '#### <answer>'; MATH's solution holds a \\boxed{}; else the field itself."""
    if "####" in answer_field:
        return answer_field.rsplit("####", 1)[1].strip()
    return boxed(answer_field) or answer_field.strip()


def _latex_to_plain(text: str) -> str:
    text = re.sub(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", text)
    text = re.sub(r"\\text\{([^{}]*)\}", r"\1", text)
    text = text.replace("\\left", "").replace("\\right", "").replace("\\!", "").replace("\\,", "")
    text = text.replace("^\\circ", "").replace("^{\\circ}", "").replace("\\%", "%").replace("\\$", "$")
    return text


def as_number(text: str) -> Fraction | None:
    plain = _latex_to_plain(text).strip().strip("$ ").rstrip(".")
    plain = re.sub(r"(?<=\d),(?=\d{3}\b)", "", plain)  # thousands separators
    plain = plain.replace("(", "").replace(")", "").rstrip("%").strip()
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?)(?:\s*/\s*(-?\d+(?:\.\d+)?))?\s*([a-zA-Z\u4e00-\u9fff]+\.?)*", plain)
    if not match:
        numbers = NUMBER.findall(plain)
        if len(numbers) != 1:  # "3 apples" is 3; "3 and 4" is not a number
            return None
        return as_number(numbers[0])
    try:
        value = Fraction(match.group(1))
        return value / Fraction(match.group(2)) if match.group(2) else value
    except (ValueError, ZeroDivisionError):
        return None


def normalised_text(text: str) -> str:
    return re.sub(r"\s+|\\[ ,;!]|\$|\.$", "", _latex_to_plain(text)).lower()


def same(answer: str | None, reference: str) -> bool:
    if answer is None:
        return False
    a, b = as_number(answer), as_number(reference)
    if a is not None and b is not None:
        return a == b
    return normalised_text(answer) == normalised_text(reference)


def is_correct(completion: str, reference: str) -> bool:
    return same(extract(completion), reference)
