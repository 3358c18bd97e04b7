"""Results of model calls (judgements, complexity scores) by content hash, in a SQLite file beside the step's
output: looked up and added a chunk of samples at a time, so memory does not grow with the corpus, and a rerun
or the merge of array tasks' shards asks the model nothing it has answered."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Iterable


class ResultCache:
    def __init__(self, path: Path | None):
        """`path` None: a scratch file, deleted on close (caching turned off still bounds memory)."""
        self._scratch = None
        if path is None:
            self._scratch = tempfile.NamedTemporaryFile(suffix=".sqlite", delete=False)
            path = Path(self._scratch.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def get(self, keys: Iterable[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 900):  # SQLite's bound on query parameters
            batch = unique[start : start + 900]
            rows = self.db.execute(f"SELECT key, value FROM results WHERE key IN ({','.join('?' * len(batch))})", batch)
            found |= {key: json.loads(value) for key, value in rows}
        return found

    def put(self, results: dict[str, Any]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO results VALUES (?, ?)", ((k, json.dumps(v)) for k, v in results.items())
        )
        self.db.commit()

    def merge(self, other: Path) -> None:
        """Everything another cache file holds (an array task's shard)."""
        self.db.execute("ATTACH DATABASE ? AS other", (str(other),))
        self.db.execute("INSERT OR IGNORE INTO results SELECT key, value FROM other.results")
        self.db.commit()
        self.db.execute("DETACH DATABASE other")

    def close(self) -> None:
        self.db.close()
        if self._scratch is not None:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cache_path(output_path: Path) -> Path:
    return output_path.with_name(output_path.stem + ".cache.sqlite")
