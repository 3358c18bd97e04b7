"""Sample files: JSONL (what every step reads and writes) and Parquet (read in record batches, never whole)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO


def copy_as_jsonl(path: str | Path, sink: IO[str], batch_rows: int = 10_000) -> int:
    """Appends the samples of a JSONL or Parquet file to `sink` as JSONL; returns how many."""
    path = Path(path)
    count = 0
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            for record in batch.to_pylist():
                sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
        return count
    with path.open() as source:
        for line in source:
            if line.strip():
                sink.write(line if line.endswith("\n") else line + "\n")
                count += 1
    return count
