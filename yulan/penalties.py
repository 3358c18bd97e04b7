"""Rule-based penalties against reward hacking (report §5): cut-off responses, mixed language, generic one-liners.

Shared by the OpenRLHF reward function and the native PPO engine. Pure Python: no model, no network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from schema.ppo import Penalties

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
LATIN_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
CODE_BLOCK = re.compile(r"```.*?(?:```|$)", re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$", re.DOTALL)
SENTENCE_END = re.compile(r"(?<=[.!?。！？…])\s*")


@dataclass(frozen=True)
class Verdict:
    penalty: float
    reasons: dict[str, bool] = field(default_factory=dict)


def prose(text: str) -> str:
    """The natural-language part of a response: code blocks, inline code and formulas removed."""
    return MATH.sub(" ", INLINE_CODE.sub(" ", CODE_BLOCK.sub(" ", text)))


def cjk_fraction(text: str) -> float:
    cjk = len(CJK.findall(text))
    latin = sum(len(word) for word in LATIN_WORD.findall(text))
    return cjk / (cjk + latin) if cjk + latin else 0.0


def word_count(line: str) -> float:
    return len(LATIN_WORD.findall(line)) + len(CJK.findall(line)) / 2


def is_incomplete(response: str, end_marks: str, min_words: int) -> bool:
    """Cut off: empty, an unclosed code block, or a long last line that ends without an end mark."""
    text = response.strip()
    if not text:
        return True
    if text.count("```") % 2:  # a code block that never closes was cut off
        return True
    if text[-1] in end_marks:
        return False
    last_line = text.splitlines()[-1].strip()
    if re.fullmatch(r"(?:[-*+]|\d+[.)])\s+.*", last_line):  # list items need no final period
        return False
    return word_count(last_line) >= min_words


def is_mixed_language(prompt: str, response: str, rules: Penalties) -> bool:
    lowered = prompt.lower()
    if any(word in lowered for word in rules.language_exempt_words):
        return False
    answer = prose(response)
    if cjk_fraction(prompt) >= rules.chinese_prompt_min_cjk_fraction:
        has_letters = bool(CJK.search(answer) or LATIN_WORD.search(answer))
        return has_letters and cjk_fraction(answer) < rules.chinese_response_min_cjk_fraction
    return bool(CJK.search(answer))


def sentences(text: str) -> list[str]:
    return [part for part in SENTENCE_END.split(text.strip()) if part.strip()]


def is_generic(response: str, rules: Penalties) -> bool:
    parts = sentences(response)
    phrases = [phrase.lower() for phrase in rules.generic_phrases]
    generic = [part for part in parts if any(phrase in part.lower() for phrase in phrases)]
    if not generic:
        return False
    return len(parts) <= rules.generic_max_sentences or len(generic) == len(parts)


def judge(prompt: str, response: str, rules: Penalties) -> Verdict:
    reasons = {
        "incomplete": is_incomplete(response, rules.sentence_end_marks, rules.incomplete_min_words),
        "mixed_language": is_mixed_language(prompt, response, rules),
        "generic": is_generic(response, rules),
    }
    sizes = {"incomplete": rules.incomplete, "mixed_language": rules.mixed_language, "generic": rules.generic}
    return Verdict(penalty=sum(sizes[name] for name, hit in reasons.items() if hit), reasons=reasons)
