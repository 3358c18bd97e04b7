"""Record files: JSONL (what every stage reads and writes) and Parquet (read in record batches, never whole).
Writes go to a temporary file renamed into place, so a failed write never leaves a partial file behind."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator


class RecordError(ValueError):
    """A record file that cannot be read: the message names the file and line."""


def iter_records(path: str | Path, batch_rows: int = 10_000) -> Iterator[dict]:
    """The records of a JSONL or Parquet file, one at a time."""
    for _, record in numbered_records(path, batch_rows):
        yield record


def numbered_records(path: str | Path, batch_rows: int = 10_000) -> Iterator[tuple[int, dict]]:
    """(line or row number from 1, record) of a JSONL or Parquet file; a line that is not UTF-8 JSON holding one
    object raises RecordError naming the file and line."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            for record in batch.to_pylist():
                number += 1
                yield number, record
        return
    with path.open("rb") as source:
        for number, raw in enumerate(source, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise RecordError(f"{path}:{number}: not valid UTF-8 (byte {error.start}); expected UTF-8 text") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise RecordError(f"{path}:{number}: not valid JSON ({error.msg}); expected one JSON object per line") from None
            if not isinstance(record, dict):
                raise RecordError(f"{path}:{number}: a {type(record).__name__}, expected a JSON object per line")
            yield number, record


def read_jsonl(path: str | Path) -> list[dict]:
    return list(iter_records(path))


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """Writes the records, then renames the file into place; returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    building = path.with_name(f".{path.name}.{os.getpid()}.partial")
    count = 0
    try:
        with building.open("w", encoding="utf-8") as sink:
            for record in records:
                sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
        building.replace(path)
    finally:
        building.unlink(missing_ok=True)
    return count


def read_log(path: str | Path) -> list[dict]:
    """A JSONL log another process appends to (metrics, alerts): a missing file is empty, and a line still being
    written is left for the next read."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows
