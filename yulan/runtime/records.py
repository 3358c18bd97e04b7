"""Record files: JSONL (what every stage reads and writes), Parquet (read in record batches, never whole) and
`datasets` folders (`save_to_disk`). One reader for all of them, with one policy for a record that cannot be used:
stop, naming FILE:LINE, what is wrong and what was expected; or set it aside with its line and reason.
Writes go to a temporary file renamed into place, so a failed write never leaves a partial file behind."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import orjson


class RecordError(ValueError):
    """A record file that cannot be read or written: the message names the file (and line) and the fix."""


Check = Callable[[dict], "str | None"]  # what is wrong with a record (and what was expected), or None


class SetAside:
    """Bad records under on_bad_record=skip: file, line, reason and the line's text, once each."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], dict] = {}

    @classmethod
    def under(cls, on_bad_record: str | None) -> SetAside | None:
        """Where bad records go under a policy: set aside (skip), or nowhere, so that the first one stops (stop)."""
        return cls() if on_bad_record == "skip" else None

    def add(self, path: Path, number: int, reason: str, text: str | None) -> None:
        self.rows.setdefault((str(path), number), {"file": str(path), "line": number, "reason": reason, "text": text})

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows.values():
            kind = row["reason"].split(":")[0].split("(")[0].strip()
            out[kind] = out.get(kind, 0) + 1
        return out


LONG_NUMBER = re.compile(rb"\d{19,}")


def parse_line(raw: bytes) -> dict | str:
    """One JSONL line as an object, or what is wrong with it."""
    record, problem = _parse_quickly(raw)
    if not problem and _has_float(record) and LONG_NUMBER.search(raw):
        record, problem = _parse_slowly(raw)  # orjson reads an integer beyond 64 bits as a float; json keeps it
    if problem:
        return problem
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, expected a JSON object per line"
    return record


def _has_float(value: object) -> bool:
    pending = [value]
    while pending:
        value = pending.pop()
        kind = type(value)  # orjson makes exactly these types
        if kind is dict:
            pending.extend(value.values())
        elif kind is list:
            pending.extend(value)
        elif kind is float:
            return True
    return False


def _parse_quickly(raw: bytes) -> tuple[object, str | None]:
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError:  # what orjson refuses but JSON allows, or why not
        return _parse_slowly(raw)


def _parse_slowly(raw: bytes) -> tuple[object, str | None]:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, f"not valid UTF-8 (byte {error.start}); expected UTF-8 text"
    try:
        record = json.loads(line.rstrip("\r\n"))
    except json.JSONDecodeError as error:
        cut = "" if raw.endswith(b"\n") else " (the file ends inside this record: truncated?)"
        return None, f"not valid JSON ({error.msg}, column {error.colno}){cut}; expected one JSON object per line"
    try:  # json accepts an escaped lone UTF-16 surrogate, which no text holds and no step could write
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:
        lone = f"\\u{ord(error.object[error.start]):04x}"
        return None, f"a string holds {lone}, half of a UTF-16 surrogate pair; expected whole characters (text cut?)"
    return record, None


def numbered_records(
    path: str | Path, batch_rows: int = 10_000, check: Check | None = None, set_aside: SetAside | None = None
) -> Iterator[tuple[int, dict]]:
    """(line or row number from 1, record) of a JSONL file, a Parquet file or a `datasets` folder. A record that
    is not an object, or that `check` finds wrong, raises RecordError naming FILE:LINE; with `set_aside` it is
    recorded there and skipped."""
    path = Path(path)
    if not path.exists():
        raise RecordError(f"{path}: no such file; expected a JSONL or Parquet file (or a `datasets` folder)")

    def rejected(number: int, reason: str, text: str | None) -> None:
        if set_aside is None:
            raise RecordError(f"{path}:{number}: {reason}")
        set_aside.add(path, number, reason, text)

    if path.is_dir() or path.suffix == ".parquet":
        for number, record in _table_rows(path, batch_rows):
            problem = check(record) if check else None
            if problem:
                rejected(number, problem, None)
            else:
                yield number, record
        return
    try:
        source = path.open("rb")
    except OSError as error:
        raise RecordError(f"{path}: cannot be read ({error.strerror})") from None
    with source:
        for number, raw in enumerate(source, 1):
            if not raw.strip():
                continue
            record = parse_line(raw)
            problem = record if isinstance(record, str) else (check(record) if check else None)
            if problem:
                rejected(number, problem, raw.decode("utf-8", "replace").rstrip("\n"))
            else:
                yield number, record


def _table_rows(path: Path, batch_rows: int) -> Iterator[tuple[int, dict]]:
    if path.is_dir():
        if not (path / "dataset_info.json").exists() and not (path / "dataset_dict.json").exists():
            raise RecordError(
                f"{path}: a directory, expected a JSONL or Parquet file or a `datasets.save_to_disk` folder"
            )
        import datasets

        dataset = datasets.load_from_disk(str(path))
        if isinstance(dataset, datasets.DatasetDict):
            raise RecordError(
                f"{path}: a DatasetDict with splits {list(dataset)}; name one split's folder, "
                f"e.g. {path / next(iter(dataset))}"
            )
        for number, record in enumerate(dataset, 1):
            yield number, dict(record)
        return
    import pyarrow
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except (pyarrow.ArrowInvalid, OSError) as error:
        raise RecordError(
            f"{path}: not a Parquet file ({error}); expected Parquet, or name a JSONL file .jsonl"
        ) from None
    number = 0
    for batch in table.iter_batches(batch_size=batch_rows):
        for record in batch.to_pylist():
            number += 1
            yield number, record


def iter_records(
    path: str | Path, batch_rows: int = 10_000, check: Check | None = None, set_aside: SetAside | None = None
) -> Iterator[dict]:
    """The records of a JSONL or Parquet file, one at a time."""
    for _, record in numbered_records(path, batch_rows, check, set_aside):
        yield record


def read_jsonl(path: str | Path, check: Check | None = None, set_aside: SetAside | None = None) -> list[dict]:
    return list(iter_records(path, check=check, set_aside=set_aside))


def partial_path(path: Path) -> Path:
    """Where `path` is built before it is renamed into place (same directory, so the rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


def writable(path: str | Path) -> Path:
    """`path` ready to be written: its directory made; RecordError naming it when it cannot be."""
    path = Path(path)
    if path.is_dir():
        raise RecordError(f"{path}: is a directory; name a file to write")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RecordError(f"{path}: {parent} is a file, not a directory; choose another output path")
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RecordError(
            f"{path}: its directory cannot be made ({error.strerror}); choose another output path"
        ) from None
    if not os.access(path.parent, os.W_OK):
        raise RecordError(f"{path}: the directory {path.parent} is not writable; choose another output path")
    return path


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths are one file: the same inode (hard links, symbolic links) or the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """Writes the records, then renames the file into place; returns how many."""
    path = writable(path)
    building = partial_path(path)
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


COPY_PIECE = 16 << 20


def copy_ranges(source: BinaryIO, sink: BinaryIO, ranges: Iterable[tuple[int, int]]) -> None:
    """Appends the bytes [start, end) of each range of `source` to `sink`, in the kernel where it can
    (copy_file_range), through memory where it cannot (another OS, some pairs of file systems)."""
    sink.flush()  # what is buffered goes first; the kernel writes at the file's own position
    in_kernel = hasattr(os, "copy_file_range")
    for start, end in ranges:
        while start < end:
            copied = 0
            if in_kernel:
                try:
                    copied = os.copy_file_range(source.fileno(), sink.fileno(), end - start, start)
                except OSError:
                    in_kernel = False
            if not in_kernel:
                source.seek(start)
                copied = sink.write(source.read(min(end - start, COPY_PIECE)))
                sink.flush()
            if not copied:
                raise RecordError(f"{source.name}: ends at byte {start}, expected {end} bytes: did it change?")
            start += copied


def write_text(path: str | Path, text: str) -> None:
    """Writes the text to a partial file, then renames it into place."""
    path = writable(path)
    building = partial_path(path)
    try:
        building.write_text(text, encoding="utf-8")
        building.replace(path)
    finally:
        building.unlink(missing_ok=True)


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


def read_json_object(path: Path) -> dict:
    """A JSON object from a file, or {} for a file that is missing, unreadable or holds something else."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
