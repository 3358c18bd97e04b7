"""Sample files: JSONL (what every step reads and writes) and Parquet (read in record batches, never whole)."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import IO, Iterable, Iterator

from yulan.runtime.records import iter_records


def copy_as_jsonl(path: str | Path, sink: IO[str], batch_rows: int = 10_000) -> int:
    """Appends the samples of a JSONL or Parquet file to `sink` as JSONL; returns how many."""
    path = Path(path)
    count = 0
    if path.suffix == ".parquet":
        for record in iter_records(path, batch_rows):
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
        return count
    with path.open() as source:  # JSONL lines are copied as they are
        for line in source:
            if line.strip():
                sink.write(line if line.endswith("\n") else line + "\n")
                count += 1
    return count


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
