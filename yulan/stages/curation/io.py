"""Sample files and a step's outputs.

A step reads one sample file and writes its kept samples (the output), the dropped ones with their reason
(`.dropped.jsonl`), bad records set aside (`.bad.jsonl`, with on_bad_record=skip) and its counts
(`.report.json`). All of them are built under temporary names and renamed into place only when the step
succeeds; none of them may be the input, under any name."""

from __future__ import annotations

import json
from contextlib import ExitStack
from itertools import islice
from pathlib import Path
from typing import IO, Iterable, Iterator

from yulan.runtime.records import (
    WRITE_CAUSES,
    RecordError,
    SetAside,
    copy_ranges,
    numbered_records,
    output_target,
    partial_path,
    same_file,
    write_failed,
    write_jsonl,
)

SIDE_FILES = ("dropped.jsonl", "bad.jsonl", "report.json")


def sample_problem(record: dict) -> str | None:
    """What is wrong with a curation sample (and what was expected), or None."""
    messages = record.get("messages")
    if "messages" not in record:
        return f"no `messages` (fields: {sorted(record)[:8]}); expected `messages`: a list of {{role, content}} objects"
    if not isinstance(messages, list) or not messages:
        return f"`messages` is {json.dumps(messages)[:80]}; expected a non-empty list of {{role, content}} objects"
    for index, message in enumerate(messages):
        if not (
            isinstance(message, dict)
            and isinstance(message.get("role"), str)
            and isinstance(message.get("content"), str)
        ):
            return (
                f"messages[{index}] is {json.dumps(message, ensure_ascii=False)[:80]}; expected "
                f"{{role: string, content: string}}"
            )
    if "category" in record and not isinstance(record["category"], str):
        return f"`category` is {json.dumps(record['category'])[:40]}; expected a string"
    return None


def side_file(output: Path, suffix: str) -> Path:
    return output.with_name(f"{output.stem}.{suffix}")


def refuse_overwriting(inputs: Iterable[Path], outputs: Iterable[Path]) -> None:
    """RecordError when an output (or side file) is an input under any name: the input would be destroyed."""
    outputs = list(outputs)
    for source in inputs:
        for target in outputs:
            if same_file(source, target):
                raise RecordError(
                    f"{target} is the input {source}; the input is never overwritten: "
                    "choose an output whose name and side files (.dropped/.bad/.report) differ from it"
                )


class StepFiles:
    """A step's input read under its bad-record policy, and its outputs written together when it succeeds:

    with StepFiles(input_path, output_path, config.on_bad_record) as files:
        for number, sample in files.samples():
            files.keep(sample)  or  files.drop(sample, "step", "reason")
        return files.finish(report)
    """

    def __init__(
        self,
        input_path: Path,
        output_path: Path,
        on_bad_record: str | None,
        check=sample_problem,
        reads: Iterable[str | Path] = (),
    ):
        """`reads`: every other file the step reads (evaluation files, a model's files): no output may be one."""
        self.input, self.output, self.check = Path(input_path), Path(output_path), check
        self.set_aside = SetAside.under(on_bad_record)
        self.targets = {"kept": self.output, **{suffix: side_file(self.output, suffix) for suffix in SIDE_FILES}}
        refuse_overwriting([self.input], self.targets.values())
        real = {name: output_target(path, reads).path for name, path in self.targets.items()}
        if not self.input.exists():
            raise RecordError(f"{self.input}: no such file; expected a JSONL or Parquet file of samples")
        self.partials = {name: partial_path(real[name]) for name in ("kept", "dropped.jsonl", "report.json")}
        self.real = real
        self._stack = ExitStack()

    def __enter__(self) -> StepFiles:
        try:
            self.kept: IO[str] = self._stack.enter_context(self.partials["kept"].open("w", encoding="utf-8"))
            self.dropped: IO[str] = self._stack.enter_context(
                self.partials["dropped.jsonl"].open("w", encoding="utf-8")
            )
        except OSError as error:
            self.__exit__()
            raise write_failed(self.output, error) from None
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
        for partial in self.partials.values():  # after a failure nothing is left; after finish() nothing remains
            partial.unlink(missing_ok=True)
        if exc and isinstance(exc[1], OSError) and exc[1].errno in WRITE_CAUSES:  # a write that failed: say which
            raise write_failed(self.output, exc[1]) from None

    def samples(self) -> Iterator[tuple[int, dict]]:
        """(line, sample) of the input; may be read more than once (a bad record is set aside once)."""
        return numbered_records(self.input, check=self.check, set_aside=self.set_aside)

    def keep(self, sample: dict) -> None:
        self.kept.write(json.dumps(sample, ensure_ascii=False) + "\n")

    def keep_ranges(self, source: Path, ranges: list[tuple[int, int]]) -> None:
        """Kept samples copied byte for byte from lines of `source` (read and checked as UTF-8 already): each range
        [start, end) holds whole lines; the last one gets the newline the file may end without."""
        if not ranges:
            return
        self.kept.flush()  # the bytes go under the text layer
        with source.open("rb") as reader:
            copy_ranges(reader, self.kept.buffer, ranges)
            reader.seek(ranges[-1][1] - 1)
            if reader.read(1) != b"\n":
                self.kept.buffer.write(b"\n")

    def drop(self, sample: dict, step: str, reason: str, **detail) -> None:
        record = {**sample, "dropped": {"step": step, "reason": reason, **detail}}
        self.dropped.write(json.dumps(record, ensure_ascii=False) + "\n")

    def finish(self, counts: dict) -> dict:
        """Counts the bad records into the report and moves every file into place (the output last)."""
        counts["bad_records"] = len(self.set_aside.rows) if self.set_aside else 0
        if counts["bad_records"]:
            counts["bad_by_reason"] = self.set_aside.counts()
        self.partials["report.json"].write_text(json.dumps(counts, indent=2, ensure_ascii=False))
        self._stack.close()
        write_set_aside(self.set_aside, self.output)  # or, when none, no stale list of an earlier run's
        for name in ("dropped.jsonl", "report.json", "kept"):
            self.partials[name].replace(self.real[name])
        return counts


def join_inputs(paths: Iterable[str | Path], target: Path, set_aside: SetAside | None) -> int:
    """Every input's samples, checked, as one JSONL file (in order: the earliest sample of a duplicate wins); returns
    how many. A bad record stops the join naming its file and line, or is recorded in `set_aside`."""
    paths = [Path(p) for p in paths]
    refuse_overwriting(paths, [target])
    return write_jsonl(
        target,
        (sample for path in paths for _, sample in numbered_records(path, check=sample_problem, set_aside=set_aside)),
    )


def write_set_aside(set_aside: SetAside | None, target: Path) -> int:
    """The bad records beside `target` (`.bad.jsonl`), or no such file when there are none; returns how many."""
    rows = list(set_aside.rows.values()) if set_aside else []
    path = side_file(target, "bad.jsonl")
    if rows:
        write_jsonl(path, rows)
    else:
        path.unlink(missing_ok=True)
    return len(rows)


def chunks(records: Iterable[dict], size: int) -> Iterator[list[dict]]:
    """`size` records at a time."""
    records = iter(records)
    while chunk := list(islice(records, size)):
        yield chunk


def shard_bounds(path: Path, shard: int, shards: int) -> tuple[int, int]:
    """Byte range of shard `shard` of `shards` of a JSONL file: equal slices of its bytes, each moved to the start
    of the next line, so every line belongs to exactly one shard and shards keep the file's order."""
    size = path.stat().st_size

    def line_start(position: int) -> int:
        if position <= 0 or position >= size:
            return min(max(position, 0), size)
        with path.open("rb") as source:
            source.seek(position - 1)
            source.readline()  # the rest of the line that `position` falls in (just "\n" if it starts one)
            return source.tell()

    return line_start(size * shard // shards), line_start(size * (shard + 1) // shards)


def copy_shard(path: Path, shard: int, shards: int, target: Path) -> None:
    start, end = shard_bounds(path, shard, shards)
    target.parent.mkdir(parents=True, exist_ok=True)
    with path.open("rb") as source, target.open("wb") as sink:
        source.seek(start)
        remaining = end - start
        while remaining:
            block = source.read(min(remaining, 1 << 22))
            sink.write(block)
            remaining -= len(block)
