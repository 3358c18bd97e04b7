"""Sample files: JSONL (what every step reads and writes) and Parquet (read in record batches, never whole)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Iterator


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


def iter_records(path: str | Path, batch_rows: int = 10_000) -> Iterator[dict]:
    """The samples of a JSONL or Parquet file, one at a time."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            yield from batch.to_pylist()
        return
    with path.open() as source:
        for line in source:
            if line.strip():
                yield json.loads(line)
