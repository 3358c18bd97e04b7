"""Tokenised data in memory-mapped files: a data file is tokenised once, streamed record by record, into
`ids.bin` / `loss.bin` / `offsets.npy` under a directory keyed by the file, the tokenizer and the settings. A
trainer then reads the samples of one step at a time; memory follows the step, not the data set."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from yulan.runtime.batches import IGNORE, Tokenized
from yulan.runtime.records import RecordError, iter_records


class TokenizedData:
    """Entries of a built cache; entry i is a Tokenized sample (a record may have made several: DPO's pairs)."""

    def __init__(self, directory: Path):
        self.offsets = np.load(directory / "offsets.npy")
        size = int(self.offsets[-1])
        self.ids = (
            np.memmap(directory / "ids.bin", dtype=np.int32, mode="r", shape=(size,)) if size else np.zeros(0, np.int32)
        )
        self.loss = (
            np.memmap(directory / "loss.bin", dtype=np.uint8, mode="r", shape=(size,))
            if size
            else np.zeros(0, np.uint8)
        )
        self.per_record = int(json.loads((directory / "meta.json").read_text())["per_record"])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> Tokenized:
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        ids = self.ids[start:end].tolist()
        return Tokenized(ids, [t if keep else IGNORE for t, keep in zip(ids, self.loss[start:end].tolist())])

    @property
    def records(self) -> int:
        return len(self) // self.per_record


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256((vocabulary + str(tokenizer.chat_template)).encode()).hexdigest()


def tokenized(
    data: str | Path,
    tokenizer,
    settings: dict,
    cache_dir: str | Path,
    tokenize: Callable[[dict], Iterable[Tokenized]],
    per_record: int,
) -> TokenizedData:
    """The cache of `data` tokenised by `tokenize` (one record -> `per_record` samples), built when missing."""
    data = Path(data)
    stat = data.stat()
    key = hashlib.sha256(
        json.dumps(
            [str(data.resolve()), stat.st_size, stat.st_mtime_ns, settings, tokenizer_fingerprint(tokenizer)],
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    final = Path(cache_dir) / key
    if not (final / "meta.json").exists():
        _build(data, final, tokenize, per_record)
    return TokenizedData(final)


def _build(data: Path, final: Path, tokenize, per_record: int) -> None:
    building = final.with_name(f"{final.name}.{os.getpid()}.partial")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    offsets = [0]
    with (building / "ids.bin").open("wb") as ids, (building / "loss.bin").open("wb") as loss:
        for number, record in enumerate(iter_records(data), 1):
            try:
                samples = list(tokenize(record))
            except (KeyError, TypeError, ValueError) as error:
                shutil.rmtree(building, ignore_errors=True)
                raise RecordError(
                    f"{data}: record {number}: cannot be tokenised ({type(error).__name__}: {error})"
                ) from None
            assert len(samples) == per_record
            for sample in samples:
                ids.write(np.asarray(sample.input_ids, dtype=np.int32).tobytes())
                loss.write(np.asarray([label != IGNORE for label in sample.labels], dtype=np.uint8).tobytes())
                offsets.append(offsets[-1] + len(sample.input_ids))
    np.save(building / "offsets.npy", np.asarray(offsets, dtype=np.int64))
    (building / "meta.json").write_text(
        json.dumps({"source": str(data), "per_record": per_record, "entries": len(offsets) - 1, "tokens": offsets[-1]})
    )
    try:
        building.rename(final)
    except OSError:  # another process built it first
        shutil.rmtree(building, ignore_errors=True)
