"""Files of samples that `yulan eval score` and `yulan reward score` read, every line checked."""

from __future__ import annotations

from pathlib import Path

from yulan.schema.errors import ConfigError

TEXT, NUMBER_OR_TEXT = (str,), (str, int, float)
KINDS = {  # what a field of a samples file holds where it is present, and how the message says it
    "task_id": (TEXT, "a string naming a problem"),
    "completion": (TEXT, "a string (the model's text)"),
    "response": (TEXT, "a string (the model's text)"),
    "subject": (TEXT, "a string"),
    "reference": (NUMBER_OR_TEXT, "the answer as a string or number"),
    "answer": (NUMBER_OR_TEXT, "the answer as a string or number"),
    "tests": (TEXT, "the test code as one string"),
    "truncated": ((bool,), "true or false (omit it when unknown)"),
    "prompt": ((str, list), "a string, or chat messages: a list of {role, content} objects"),
}


def kind_problem(sample: dict, needed: set[str]) -> tuple[str, str] | None:
    """(field, what it must hold) for the first field of `sample` that holds something else (null only where the
    field may be left out), or None."""
    for field, (types, expected) in KINDS.items():
        value = sample.get(field)
        if field not in sample or (value is None and field not in needed):
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            return field, expected
        if field == "prompt" and isinstance(value, list):
            for message in value:
                if not (
                    isinstance(message, dict)
                    and isinstance(message.get("role"), str)
                    and isinstance(message.get("content"), str)
                ):
                    return field, "chat messages: each a {role: string, content: string} object"
    return None


def read_samples(path: Path, needed: set[str], task_ids: set[str] | None) -> tuple[list[int], list[dict]]:
    """(line numbers, samples) of a samples file, every line checked: FILE:LINE, what is wrong and what was expected."""
    from yulan.runtime.records import RecordError, numbered_records
    from yulan.schema.errors import Problem, suggest

    def bad(line: int, rule: str, value, fix: str) -> ConfigError:
        return ConfigError(f"malformed samples in {path}", [Problem(f"{path}:{line}", rule, value, fix)])

    if not path.is_file():
        raise ConfigError(
            "no samples file", [Problem("--samples", "must be a JSONL file", str(path), "check the path")]
        )
    lines, samples = [], []
    try:
        for number, sample in numbered_records(path):
            absent = sorted(needed - set(sample))
            if absent:
                raise bad(
                    number,
                    f"every line needs {' and '.join(sorted(needed))}; this one lacks {', '.join(absent)}",
                    sorted(sample),
                    "write one JSON object per line with those keys",
                )
            wrong = kind_problem(sample, needed)
            if wrong:
                field, expected = wrong
                raise bad(number, f"{field} must be {expected}", sample[field], f"write {field} as {expected}")
            if task_ids is not None and sample["task_id"] not in task_ids:
                close = suggest(str(sample["task_id"]), sorted(task_ids))
                raise bad(
                    number,
                    "task_id must name a problem of the benchmark's data",
                    sample["task_id"],
                    f"did you mean '{close}'?" if close else "check --data (the benchmark's data file)",
                )
            lines.append(number)
            samples.append(sample)
    except RecordError as error:
        raise ConfigError(
            f"malformed samples in {path}",
            [Problem("--samples", str(error), str(path), "write one JSON object per line, UTF-8")],
        ) from None
    return lines, samples
