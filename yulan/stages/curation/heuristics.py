"""Rule-based filters for SFT samples (report §3: 'repeated punctuation or excessive garbled text').

Rules look mostly at responses, and at prose only where code or formulas would trip them (code blocks,
inline code and $...$ are left out for the punctuation, long-word and symbol rules). Each category can switch
rules off (`rules_off`: code and math keep their symbols). Streams line by line: memory does not grow with the
file. Every dropped sample carries the first rule it broke and what was measured.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from yulan.rewards.penalties import CJK, is_incomplete, prose
from yulan.schema.curation import HeuristicsConfig
from yulan.stages.curation.io import StepFiles
from yulan.stages.curation.sharding import concatenated, run_on_shard

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MOJIBAKE = re.compile(r"Ã[\x80-\xbf]|â€|Â[\xa0-\xbf]")  # UTF-8 bytes read as Latin-1/cp1252
WORD = re.compile(r"[^\s\u3400-\u9fff\uf900-\ufaff]+")


def _punctuation_run(text: str, config: HeuristicsConfig) -> str | None:
    run = config.max_punctuation_run
    for match in re.finditer(r"([^\w\s])\1{%d,}" % (run - 1), text):
        if match.group(1) not in config.punctuation_run_exempt:
            return f"'{match.group(0)[:20]}' repeats {len(match.group(0))} times"
    return None


def _repeated_span(text: str, config: HeuristicsConfig) -> str | None:
    span = config.repeated_span_min_chars
    pattern = r"(.{%d,100}?)\1{%d,}" % (span, config.max_span_repeats - 1)
    match = re.search(pattern, text, re.DOTALL)
    return f"'{match.group(1)[:30]}' repeats back to back" if match else None


def _garbled(text: str, config: HeuristicsConfig) -> str | None:
    if text.count("\ufffd") > config.max_replacement_chars:
        return f"{text.count(chr(0xFFFD))} replacement characters"
    controls = len(CONTROL.findall(text))
    if controls > config.max_control_chars:
        return f"{controls} control characters"
    if config.drop_mojibake and MOJIBAKE.search(text):
        return f"mojibake '{MOJIBAKE.search(text).group(0)}'"
    return None


def _long_word(text: str, config: HeuristicsConfig) -> str | None:
    longest = max((len(word) for word in WORD.findall(text)), default=0)
    return f"a {longest}-character word" if longest > config.max_word_chars else None


def _non_alnum(text: str, config: HeuristicsConfig) -> str | None:
    visible = [ch for ch in text if not ch.isspace()]
    if len(visible) < 20:
        return None
    share = sum(not ch.isalnum() for ch in visible) / len(visible)
    return f"{share:.0%} non-alphanumeric" if share > config.max_non_alnum_fraction else None


def _tokens(text: str) -> list[str]:
    """Words, or characters for Chinese text (Gopher's n-gram rules need tokens)."""
    cjk = len(CJK.findall(text))
    return [ch for ch in text if not ch.isspace()] if cjk * 2 > len(text.split()) + cjk else text.lower().split()


def _repetition(text: str, config: HeuristicsConfig) -> str | None:
    """Gopher's repetition rules: generation loops and copy-pasted blocks."""
    for unit, parts, max_share, max_char_share in (
        (
            "lines",
            [line for line in text.splitlines() if line.strip()],
            config.max_dup_line_fraction,
            config.max_dup_line_char_fraction,
        ),
        (
            "paragraphs",
            [p for p in re.split(r"\n\s*\n", text) if p.strip()],
            config.max_dup_paragraph_fraction,
            config.max_dup_paragraph_char_fraction,
        ),
    ):
        if len(parts) < 6:  # too few lines for statistics: a short poem may repeat its refrain
            continue
        counts = Counter(part.strip() for part in parts)
        repeated = [part for part in parts if counts[part.strip()] > 1]
        if len(repeated) / len(parts) > max_share:
            return f"{len(repeated)} of {len(parts)} {unit} are repeated"
        if sum(map(len, repeated)) / sum(map(len, parts)) > max_char_share:
            return f"repeated {unit} hold {sum(map(len, repeated)) / sum(map(len, parts)):.0%} of the characters"
    tokens = _tokens(text)
    if len(tokens) < 50:  # Gopher's n-gram statistics need ~50 words; shorter answers are not judged by them
        return None
    total = sum(map(len, tokens))
    for n, limit in zip((2, 3, 4), config.max_top_ngram_char_fraction):
        grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        gram, count = grams.most_common(1)[0]
        if count > 1 and count * sum(map(len, gram)) / total > limit:
            return f"the top {n}-gram covers {count * sum(map(len, gram)) / total:.0%} of the characters"
    for n, limit in zip(range(5, 11), config.max_dup_ngram_char_fraction):
        starts = range(len(tokens) - n + 1)
        grams = Counter(tuple(tokens[i : i + n]) for i in starts)
        covered = set()
        for i in starts:
            if grams[tuple(tokens[i : i + n])] > 1:
                covered.update(range(i, i + n))
        share = sum(len(tokens[i]) for i in covered) / total
        if share > limit:
            return f"duplicated {n}-grams cover {share:.0%} of the characters"
    return None


def _structure(sample: dict) -> str | None:
    messages = sample.get("messages")
    if not isinstance(messages, list) or not messages:
        return "no messages"
    turns = [m for m in messages if m.get("role") != "system"]
    if any(m.get("role") == "system" for m in messages[1:]):
        return "a system message after the first turn"
    roles = [m.get("role") for m in turns]
    if roles[::2] != ["user"] * len(roles[::2]) or roles[1::2] != ["assistant"] * len(roles[1::2]):
        return f"roles do not alternate user/assistant: {roles}"
    if roles[-1] != "assistant":
        return "the last turn is not the assistant's"
    if any(not str(m.get("content", "")).strip() for m in turns):
        return "an empty turn"
    if all(
        str(turns[i]["content"]).strip() == str(turns[i + 1]["content"]).strip() for i in range(0, len(turns) - 1, 2)
    ):
        return "every response repeats its instruction"
    return None


def check(sample: dict, config: HeuristicsConfig) -> tuple[str, str] | None:
    """The first rule a sample breaks, as (rule, what was measured); None when it passes them all."""
    off = set(config.rules_off.get(sample.get("category", ""), ()))
    if "structure" not in off and (found := _structure(sample)):
        return "structure", found
    messages = sample.get("messages") or []
    responses = [str(m.get("content", "")) for m in messages if m.get("role") == "assistant"]
    instructions = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
    if "length" not in off:
        for response in responses:
            if not config.min_response_chars <= len(response) <= config.max_response_chars:
                return "length", f"a {len(response)}-character response"
        for instruction in instructions:
            if len(instruction) > config.max_instruction_chars:
                return "length", f"a {len(instruction)}-character instruction"
    for response in responses:
        text = prose(response)
        for rule, test, subject in (
            ("garbled", _garbled, response),
            ("punctuation_run", _punctuation_run, text),
            ("repeated_span", _repeated_span, response),
            ("long_word", _long_word, text),
            ("non_alnum", _non_alnum, text),
            ("repetition", _repetition, response),
        ):
            if rule not in off and (found := test(subject, config)):
                return rule, found
        if "truncated" not in off and is_incomplete(
            response, config.sentence_end_marks, config.continuation_words, config.unfinished_min_words
        ):
            return "truncated", "ends mid-sentence or inside a code block"
        if "ai_identity" not in off:
            lowered = response.lower()
            for pattern in config.ai_identity_patterns:
                if pattern.lower() in lowered:
                    return "ai_identity", f"'{pattern}'"
    return None


def run(input_path: Path, output_path: Path, config: HeuristicsConfig, seed: int = 0) -> dict:
    counts: dict = {"input": 0, "kept": 0, "dropped": {}, "by_category": {}}
    with StepFiles(input_path, output_path, config.on_bad_record) as files:
        for _, sample in files.samples():
            counts["input"] += 1
            category = counts["by_category"].setdefault(sample.get("category", "unknown"), {"in": 0, "out": 0})
            category["in"] += 1
            verdict = check(sample, config)
            if verdict is None:
                files.keep(sample)
                counts["kept"] += 1
                category["out"] += 1
            else:
                rule, detail = verdict
                counts["dropped"][rule] = counts["dropped"].get(rule, 0) + 1
                files.drop(sample, "heuristics", rule, detail=detail)
        return files.finish(counts)


map_shard = run_on_shard(run)
merge_shards = concatenated
