"""Record files: JSONL (what every stage reads and writes), Parquet (read in record batches, never whole) and
`datasets` folders (`save_to_disk`). One reader for all of them, with one policy for a record that cannot be used:
stop, naming FILE:LINE, what is wrong and what was expected; or set it aside with its line and reason.
Every write follows one rule (`output_target`): built under a temporary name and renamed into place, so a failed
write leaves no partial file; devices, FIFOs and symlinks are written through or refused, never replaced."""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

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
    if not path.is_dir():
        regular_file(path)

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


def regular_file(path: Path) -> Path:
    """`path` when it is a regular file (through symlinks); RecordError otherwise: a FIFO or a device would be read
    once, or never end, and what is missing is named."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise RecordError(f"{path}: cannot be read ({error.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = {**STREAM_KINDS, **OTHER_KINDS}.get(stat.S_IFMT(mode), "not a regular file")
        raise RecordError(f"{path}: is {kind}; expected a regular file (save a stream to a file first)")
    return path


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


STREAM_KINDS = {stat.S_IFCHR: "a character device", stat.S_IFIFO: "a FIFO"}  # written in place when asked for
OTHER_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFSOCK: "a socket", stat.S_IFBLK: "a block device"}
WRITE_CAUSES = {  # errno -> what the user reads
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file is too large (a file size limit: ulimit -f)",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.EIO: "an I/O error",
    errno.EPIPE: "the reader went away",
}


@dataclass(frozen=True)
class Target:
    """Where an output's bytes go: `path` with symlinks followed; `direct` when it is a stream written in place."""

    named: Path
    path: Path
    direct: bool = False


def output_target(path: str | Path, inputs: Iterable[str | Path] = (), stream: bool = False) -> Target:
    """The one rule for every file the product writes. A regular file (or a new one) is built beside itself and
    renamed into place; a symlink is followed, never replaced; a character device or FIFO (`/dev/stdout`, or `-`)
    is written in place when the user named it (`stream`), else refused, as is a directory, socket or block
    device; no output may be a file the step reads. RecordError names the path, the rule and the fix."""
    if str(path) == "-":
        if not stream:
            raise RecordError("-: standard output cannot hold this output and its side files; name a file")
        return Target(Path("-"), Path("-"), direct=True)
    named = Path(path)
    try:
        kind = stat.S_IFMT(named.stat().st_mode)  # through every symlink, /dev/stdout's magic one included
    except (FileNotFoundError, NotADirectoryError):  # a new file (writable() names a parent that is a file)
        kind = None
    except OSError as error:  # a symlink loop, a name too long, a directory we may not search
        raise RecordError(f"{named}: cannot be written ({error.strerror}); choose another output path") from None
    for source in inputs:
        if same_file(source, named):
            raise RecordError(
                f"{named} is {source}, a file this step reads; an input is never overwritten: choose another output"
            )
    if kind in STREAM_KINDS:
        if not stream:
            raise RecordError(
                f"{named}: is {STREAM_KINDS[kind]}, and this output is written only to a regular file; name a file"
            )
        return Target(named, named, direct=True)
    if kind in OTHER_KINDS:
        raise RecordError(f"{named}: is {OTHER_KINDS[kind]}; name a file to write (it is never replaced)")
    return Target(named, writable(os.path.realpath(named)))  # a symlink's target is replaced, never the link


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


def write_failed(path: Path, error: OSError) -> RecordError:
    cause = WRITE_CAUSES.get(error.errno or 0, error.strerror or str(error))
    return RecordError(
        f"{path}: could not be written: {cause}; nothing was replaced (free space or choose another path)"
    )


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths are one file: the same inode (hard links, symbolic links) or the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one is missing (or a symlink loop): where each would be
        return os.path.realpath(a) == os.path.realpath(b)


@contextmanager
def writing(
    path: str | Path, inputs: Iterable[str | Path] = (), stream: bool = False, binary: bool = False
) -> Iterator[IO]:
    """An open file for an output under `output_target`'s rule: the target changes only when the block succeeds;
    a write that fails (disk full, file size limit, permission) leaves no partial file and raises RecordError
    naming the path and the cause."""
    target = output_target(path, inputs, stream)
    mode, encoding = ("wb", None) if binary else ("w", "utf-8")
    building = None if target.direct else partial_path(target.path)  # a stream is written in place
    try:
        opened = (
            open_stream(target.path, mode, encoding) if building is None else building.open(mode, encoding=encoding)
        )
        with opened as sink:
            yield sink
        if building is not None:
            building.replace(target.path)
    except OSError as error:
        if error.errno not in WRITE_CAUSES:
            raise
        raise write_failed(target.named, error) from None
    finally:
        if building is not None:
            building.unlink(missing_ok=True)


def open_stream(path: Path, mode: str, encoding: str | None) -> IO:
    """A character device or FIFO opened for writing; a FIFO nobody reads is refused instead of waiting forever."""
    if str(path) == "-":  # standard output as the process has it: its position and mode (>> appends) kept
        return os.fdopen(os.dup(1), mode, encoding=encoding)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ENXIO:
            raise RecordError(f"{path}: a FIFO that no process reads; start its reader first") from None
        raise
    os.set_blocking(descriptor, True)
    return os.fdopen(descriptor, mode, encoding=encoding)


def write_jsonl(
    path: str | Path, records: Iterable[dict], inputs: Iterable[str | Path] = (), stream: bool = False
) -> int:
    """Writes the records under the output rule (`writing`); returns how many."""
    count = 0
    with writing(path, inputs, stream) as sink:
        for record in records:
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
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


def write_text(path: str | Path, text: str, inputs: Iterable[str | Path] = (), stream: bool = False) -> None:
    """Writes the text under the output rule (`writing`)."""
    with writing(path, inputs, stream) as sink:
        sink.write(text)


def read_log(
    path: str | Path, usable: Callable[[dict], bool] | None = None, skipped: Counter[str] | None = None
) -> list[dict]:
    """A JSONL log another process appends to (metrics, alerts), read leniently: a missing or unreadable file is
    empty, a line still being written (no newline yet) is left for the next read, and a whole line that is not a
    JSON object (or not `usable`) is left out and counted in `skipped[path]`."""
    path = Path(path)
    try:
        data = path.read_bytes() if path.is_file() else b""
    except OSError:
        data = b""
    rows, bad = [], 0
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n") or not raw.strip():
            continue
        row = parse_line(raw)
        if isinstance(row, dict) and (usable is None or usable(row)):
            rows.append(row)
        else:
            bad += 1
    if bad and skipped is not None:
        skipped[str(path)] += bad
    return rows


def skipped_lines(skipped: Counter[str]) -> str:
    """What a lenient reader left out, for the user: how many lines, of which files."""
    files = ", ".join(f"{path} ({count})" for path, count in sorted(skipped.items()))
    return f"skipped {sum(skipped.values())} line(s) that could not be used: {files}"


def number(value: object) -> float | None:
    """A value read from a record as a finite number, or None (null, text, a boolean, NaN)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return value
    return None


def read_json_object(path: Path) -> dict:
    """A JSON object from a file, or {} for a file that is missing, unreadable, not a regular file (a FIFO would
    never answer) or holds something else."""
    try:
        data = json.loads(path.read_bytes()) if path.is_file() else None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
