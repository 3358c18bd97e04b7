"""Files of samples that `yulan eval score` and `yulan reward score` read, every line checked."""

from __future__ import annotations

from pathlib import Path

from yulan.schema.errors import ConfigError


def read_samples(
    path: Path, needed: set[str], task_ids: set[str] | None, text_key: str = "completion"
) -> tuple[list[int], list[dict]]:
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
            if not isinstance(sample[text_key], str):
                raise bad(
                    number, f"{text_key} must be a string", sample[text_key], "write the model's text as a JSON string"
                )
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
