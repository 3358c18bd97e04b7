"""Rule-based penalties against reward hacking (report §5): truncated and cut-off responses, mixed language,
generic one-liners.

Shared by the reward function of both PPO engines, `yulan reward score` and curation's truncation filter.
Pure Python: no model, no network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from yulan.schema.reward import Penalties

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
BRACKETED = re.compile(r"[(（][^()（）]*+[)）]")
LATIN_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
CODE_BLOCK = re.compile(r"```.*?(?:```|$)", re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$", re.DOTALL)
SENTENCE_END = re.compile(r"(?<=[.!?。！？…])\s*")
COMMAND_LINE = re.compile(r"^(?:\s{4,}|\t|\$ |> |# )")
LIST_ITEM = re.compile(r"^\s*+(?:[-*+•]|\d{1,3}[.)])\s")
OPENERS, CLOSERS = "([{（【「", ")]}）】」"
DANGLING = ",，、-–—:：(/[{"  # a line ending in these waits for more


@dataclass(frozen=True)
class Verdict:
    penalty: float
    reasons: dict[str, bool] = field(default_factory=dict)

    @property
    def fired(self) -> list[str]:
        return [name for name, hit in self.reasons.items() if hit]


def prose(text: str) -> str:
    """The natural-language part of a response: code blocks, inline code and formulas removed."""
    return MATH.sub(" ", INLINE_CODE.sub(" ", CODE_BLOCK.sub(" ", text)))


def cjk_fraction(text: str, borrowed: frozenset[str] = frozenset()) -> float:
    """The share of CJK characters among CJK characters and Latin letters; Latin words in `borrowed` (quoted from
    the prompt) and code names (`requests.get`, `snake_case`, `camelCase`, `f()`) are not counted."""
    cjk = len(CJK.findall(text))
    latin = sum(len(word) for word in LATIN_WORD.findall(plain_words(text, borrowed)))
    return cjk / (cjk + latin) if cjk + latin else 0.0


def plain_words(text: str, borrowed: frozenset[str]) -> str:
    kept = []
    for token in text.split():
        core = token.strip(".,;:!?'\"“”‘’()（）[]，。：；！？、")
        code_name = any(c in core for c in "._()") or (core[1:] != core[1:].lower() and core != core.upper())
        if not code_name and core.lower() not in borrowed:
            kept.append(token)
    return " ".join(kept)


def last_word(line: str) -> str:
    """The line's last run of Latin letters or of CJK characters, past trailing punctuation ('' when none)."""
    end = len(line)
    while end and not (line[end - 1].isascii() and line[end - 1].isalpha() or CJK.match(line[end - 1])):
        if line[end - 1].isalnum():  # a digit or another script ends the line: no word to judge
            return ""
        end -= 1
    start = end
    latin = end > 0 and line[end - 1].isascii()
    while start and (line[start - 1].isascii() and line[start - 1].isalpha() if latin else CJK.match(line[start - 1])):
        start -= 1
    return line[start:end]


def ends_with_continuation(line: str, words: tuple[str, ...]) -> bool:
    """The line's last word is one a sentence cannot end with ("the", "of", "is", "并且"...)."""
    word = last_word(line)
    if not word:
        return False
    if CJK.match(word):  # Chinese has no spaces: the run's tail is the last word
        return any(word.endswith(w) for w in words if CJK.match(w))
    return word.lower() in words


def bold_markers(line: str) -> int:
    """The `**` in the line that mark bold: not an exponent (`2**10`, `x**2`) nor Python's unpacking
    (`f(**kwargs)`, `**options)`, `, **extra`)."""
    count, at = 0, line.find("**")
    while at >= 0:
        before = line[at - 1] if at else " "
        after = line[at + 2] if at + 2 < len(line) else " "
        end = at + 2
        while end < len(line) and (line[end].isalnum() or line[end] == "_"):
            end += 1
        following = line[end] if end < len(line) else ""
        exponent = (before.isalnum() or before in ")]") and (after.isalnum() or after in "(-")
        unpacking = (before in "(,[{=" or before == " " and following in "),=:") and (after.isalpha() or after == "_")
        if not (exponent or unpacking):
            count += 1
        at = line.find("**", at + 2)
    return count


def unbalanced(line: str) -> bool:
    """An opened bracket or bold that the line never closes."""
    depth = 0
    for char in line:
        if char in OPENERS:
            depth += 1
        elif char in CLOSERS:
            depth -= 1
    return depth > 0 or bold_markers(line) % 2 == 1


def is_incomplete(response: str, end_marks: str, continuation_words: tuple[str, ...], min_words: int) -> bool:
    """Stops mid-sentence: empty, an unclosed code block, or a last line left open (an unclosed bracket or bold, a
    trailing comma or dash, a last word such as "the" or "并且", a long English sentence trailing off in a lowercase
    word). A URL, a list item or a line with an end mark is complete. Other last lines are complete without an end
    mark: math results ("x = 2"), poems, commands, Chinese without 。."""
    text = response.strip()
    if not text:
        return True
    if text.count("```") % 2:  # a code block that never closes was cut off
        return True
    if text.endswith("```"):
        return False
    last_line = text.splitlines()[-1]
    if COMMAND_LINE.match(last_line):  # an indented or prompted command line is code, not a sentence
        return False
    list_item = LIST_ITEM.match(last_line) is not None
    last_line = last_line.strip()
    last_token = last_line.split()[-1]
    if "://" in last_token or last_token.startswith("www."):  # a URL ends the line, whatever its last character
        return False
    if last_line[-1] in end_marks or last_line[-1] in CLOSERS or last_line.endswith("**"):
        return False
    if unbalanced(last_line):
        return True
    if last_line[-1] in DANGLING:
        return True
    words = prose(last_line)
    if ends_with_continuation(words, continuation_words):
        return True
    if list_item:  # an item of a list is a phrase, complete without an end mark
        return False
    last = last_word(words)
    trailing_lowercase = bool(last) and last.isascii() and last.islower() and words.rstrip().endswith(last)
    return trailing_lowercase and len(LATIN_WORD.findall(words)) >= min_words


def is_mixed_language(prompt: str, response: str, rules: Penalties) -> bool:
    lowered = prompt.lower()
    if any(word in lowered for word in rules.language_exempt_words):
        return False
    answer = prose(response)
    if cjk_fraction(prompt) >= rules.chinese_prompt_min_cjk_fraction:
        # a Chinese question about an English sentence may quote it: its words are not a switch of language
        quoted = frozenset(word.lower() for word in LATIN_WORD.findall(prompt))
        has_letters = bool(CJK.search(answer) or LATIN_WORD.search(answer))
        return has_letters and cjk_fraction(answer, quoted) < rules.chinese_response_min_cjk_fraction
    if CJK.search(prompt):  # an English prompt naming a Chinese title or place: the answer may repeat and gloss it
        for name in CJK_RUN.findall(prompt):
            answer = answer.replace(name, " ")
        answer = BRACKETED.sub(lambda gloss: " " if CJK.search(gloss.group(0)) else gloss.group(0), answer)
    return bool(CJK.search(answer))


def sentences(text: str) -> list[str]:
    return [part for part in SENTENCE_END.split(text.strip()) if part.strip()]


def has_generic_phrase(response: str, rules: Penalties) -> bool:
    lowered = response.lower()
    return any(phrase.lower() in lowered for phrase in rules.generic_phrases)


def is_generic(response: str, rules: Penalties) -> bool:
    parts = sentences(response)
    phrases = [phrase.lower() for phrase in rules.generic_phrases]
    generic = [part for part in parts if any(phrase in part.lower() for phrase in phrases)]
    if not generic:
        return False
    return len(parts) <= rules.generic_max_sentences or len(generic) == len(parts)


def judge(prompt: str, response: str, rules: Penalties, truncated: bool | None = None) -> Verdict:
    """The rules that fire on one response to `prompt` (the last user turn). `truncated` is the generation's own
    signal (no end-of-turn token within the limit) where the caller has it; truncation and a cut-off last sentence
    cost the `incomplete` penalty once."""
    reasons = {
        "truncated": bool(truncated),
        "incomplete": is_incomplete(
            response, rules.sentence_end_marks, rules.continuation_words, rules.unfinished_min_words
        ),
        "mixed_language": is_mixed_language(prompt, response, rules),
        "generic": is_generic(response, rules),
    }
    penalty = rules.incomplete if reasons["truncated"] or reasons["incomplete"] else 0.0
    penalty += rules.mixed_language * reasons["mixed_language"] + rules.generic * reasons["generic"]
    return Verdict(penalty=penalty, reasons=reasons)
