"""Exact and near-duplicate removal: MinHash signatures, LSH banding, candidate verification.

Fast because no Python object is made per token: shingles come from yulan.stages.curation.shingles, MinHash hashes
each shingle once (one-permutation hashing over a whole batch of documents), and LSH buckets are found by sorting
band keys.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yulan.runtime.progress import Progress
from yulan.runtime.records import RecordError, SetAside, parse_line
from yulan.schema.curation import DedupConfig
from yulan.stages.curation.io import StepFiles, join_inputs, sample_problem
from yulan.stages.curation.shingles import EMPTY, P, batch_shingles

EMPTY_BIN = np.uint32(0xFFFFFFFF)
EMPTY_TEXT = np.uint32(0x9E3779B9)
BATCH_DOCS = 2048
MAX_GROUP_PAIRS = 64  # larger LSH buckets pair each member with the first 64 only (they are verified anyway)


@dataclass(frozen=True)
class Hashing:
    """One-permutation MinHash: each shingle is hashed once, into one of `bins` bins by one multiply-shift and to
    a 32-bit value by another; a signature is the minimum per bin, empty bins filled from the next full one."""

    bin_multiplier: np.uint64
    multiplier: np.uint64
    offset: np.uint64
    bins: int

    @classmethod
    def make(cls, bins: int, seed: int) -> Hashing:
        rng = np.random.default_rng(seed)
        odd = rng.integers(1, 2**63, size=2, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        return cls(bin_multiplier=odd[0], multiplier=odd[1], offset=rng.integers(0, 2**63, dtype=np.uint64), bins=bins)


def signatures(texts: list[str], config: DedupConfig, hashing: Hashing) -> np.ndarray:
    """MinHash signatures (texts x bins), a batch of texts at a time."""
    out = np.empty((len(texts), hashing.bins), dtype=np.uint32)
    for start in range(0, len(texts), BATCH_DOCS):
        batch = texts[start : start + BATCH_DOCS]
        hashes, owners = batch_shingles(batch, config.word_ngram, config.char_ngram)
        out[start : start + len(batch)] = one_permutation(hashes, owners, len(batch), hashing)
    return out


def one_permutation(hashes: np.ndarray, owners: np.ndarray, count: int, hashing: Hashing) -> np.ndarray:
    with np.errstate(over="ignore"):
        mixed = hashes * hashing.bin_multiplier
        values = ((hashes * hashing.multiplier + hashing.offset) >> np.uint64(32)).astype(np.uint32)
    bins = ((mixed >> np.uint64(32)) * np.uint64(hashing.bins)) >> np.uint64(32)  # uniform over 0 .. bins-1
    sig = np.full(count * hashing.bins, EMPTY_BIN, dtype=np.uint32)
    np.minimum.at(sig, owners.astype(np.int64) * hashing.bins + bins.astype(np.int64), values)
    sig = sig.reshape(count, hashing.bins)
    empty = sig == EMPTY_BIN
    # Densification by rotation: an empty bin takes the value of the nearest full bin after it (cyclically), shifted
    # by the distance. Step by step, each step on the rows still with holes: a text of few shingles costs only itself.
    rows = np.flatnonzero(empty.any(axis=1) & ~empty.all(axis=1))
    holes = empty[rows]
    for step in range(1, hashing.bins):
        if not len(rows):
            break
        fill = holes & ~np.roll(empty[rows], -step, axis=1)
        part = sig[rows]
        part[fill] = np.roll(part, -step, axis=1)[fill] ^ np.uint32((step * 0x9E3779B1) & 0xFFFFFFFF)
        sig[rows] = part
        holes &= ~fill
        left = holes.any(axis=1)
        rows, holes = rows[left], holes[left]
    sig[empty.all(axis=1)] = EMPTY_TEXT  # a text without shingles matches only other empty texts
    return sig


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Of two sorted sets."""
    at = np.searchsorted(b, a)
    shared = int(np.count_nonzero(b[np.minimum(at, len(b) - 1)] == a))
    return shared / (len(a) + len(b) - shared)


OWNER_BITS = (BATCH_DOCS - 1).bit_length()
VALUE_MASK = np.uint64((1 << (64 - OWNER_BITS)) - 1)


def shingle_sets(hashes: np.ndarray, owners: np.ndarray, count: int) -> list[np.ndarray]:
    """Per text of a batch, the sorted set of its shingle hashes, from one sort of the whole batch: each hash keeps
    its low 64 - OWNER_BITS bits (a false match of two texts' shingles stays below 1e-10) under its text's index."""
    with np.errstate(over="ignore"):
        keyed = (owners.astype(np.uint64) << np.uint64(64 - OWNER_BITS)) | (hashes & VALUE_MASK)
    keyed = np.sort(keyed, kind="stable")  # timsort: the owners come in a few ascending runs, twice as fast here
    keyed = keyed[np.concatenate(([True], keyed[1:] != keyed[:-1]))]
    bounds = np.searchsorted(keyed >> np.uint64(64 - OWNER_BITS), np.arange(count + 1, dtype=np.uint64))
    values = keyed & VALUE_MASK
    return [values[a:b] if b > a else EMPTY & VALUE_MASK for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One key per LSH band (bands x documents): documents share a key when that band of their signatures agrees."""
    with np.errstate(over="ignore"):
        return np.stack([_window_hash_rows(sigs[:, band * rows : (band + 1) * rows]) for band in range(bands)])


def candidate_pairs(band_columns: Iterable[np.ndarray]) -> np.ndarray:
    """Pairs (i < j) of positions that share at least one band key; one band's keys in memory at a time."""
    found, count = [np.zeros(0, dtype=np.int64)], 0  # pair (i, j) as i * count + j
    for keys in band_columns:
        count = len(keys)
        found.append(np.unique(_bucket_pairs(keys) @ np.array([count, 1], dtype=np.int64)))
    codes = np.unique(np.concatenate(found))
    return np.stack([codes // count, codes % count], axis=1) if len(codes) else np.zeros((0, 2), dtype=np.int64)


def _bucket_pairs(keys: np.ndarray) -> np.ndarray:
    """The pairs of one band: in a bucket, every two of its first MAX_GROUP_PAIRS members, and each later member
    with the first."""
    order = np.argsort(keys, kind="stable")  # stable: a bucket's positions stay ascending, so pairs come as i < j
    ordered = keys[order]
    bounds = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1], [True])))
    sizes = np.diff(bounds)
    start = np.repeat(bounds[:-1], sizes)
    rank = np.arange(len(keys)) - start
    head = np.minimum(np.repeat(sizes, sizes), MAX_GROUP_PAIRS)
    shared = np.flatnonzero(head > 1)
    start, rank, head = start[shared], rank[shared], head[shared]
    pairs = [np.stack([order[start], order[shared]], axis=1)[rank >= MAX_GROUP_PAIRS]]
    for step in range(1, int(head.max(initial=1))):
        first = shared[rank + step < head]
        pairs.append(np.stack([order[first], order[first + step]], axis=1))
    return np.concatenate(pairs)


def _window_hash_rows(block: np.ndarray) -> np.ndarray:
    key = np.zeros(len(block), dtype=np.uint64)
    for column in block.T:
        key = key * P + column.astype(np.uint64)
    return key


def clusters(count: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components; each document maps to the earliest document of its cluster. Vectorised union-find:
    every pair hooks the later of its two roots under the earlier, then paths are halved until each document
    points at a root; repeated until no pair joins two roots."""
    parent = np.arange(count)
    first, second = pairs[:, 0], pairs[:, 1]
    while True:
        roots_first, roots_second = parent[first], parent[second]
        apart = roots_first != roots_second
        if not apart.any():
            return parent
        low, high = np.minimum(roots_first, roots_second)[apart], np.maximum(roots_first, roots_second)[apart]
        np.minimum.at(parent, high, low)  # a root only ever moves under an earlier document of its cluster
        while True:
            grandparent = parent[parent]
            if np.array_equal(grandparent, parent):
                break
            parent = grandparent


def normalised(text: str) -> bytes:
    return hashlib.blake2b(" ".join(text.lower().split()).encode(), digest_size=16).digest()


def verified(
    pairs: np.ndarray, read: Callable[[np.ndarray], list[str]], config: DedupConfig, chunk_pairs: int = 50_000
) -> np.ndarray:
    """Candidate pairs whose exact Jaccard of shingle sets reaches the threshold (LSH only proposes). Texts are
    read (`read(positions)`) a chunk of pairs at a time."""
    keep = np.zeros(len(pairs), dtype=bool)
    for start in range(0, len(pairs), chunk_pairs):
        chunk = pairs[start : start + chunk_pairs]
        involved = np.unique(chunk)
        sets: dict[int, np.ndarray] = {}
        for batch_start in range(0, len(involved), BATCH_DOCS):
            batch = involved[batch_start : batch_start + BATCH_DOCS]
            hashes, owners = batch_shingles(read(batch), config.word_ngram, config.char_ngram)
            sets.update(zip(batch.tolist(), shingle_sets(hashes, owners, len(batch))))
        keep[start : start + len(chunk)] = [jaccard(sets[i], sets[j]) >= config.threshold for i, j in chunk.tolist()]
    return pairs[keep]


def fingerprints(texts: list[str], config: DedupConfig, hashing: Hashing) -> np.ndarray:
    """Per text, its LSH band keys (bands x texts)."""
    return band_keys(signatures(texts, config, hashing), config.bands, config.rows_per_band)


def exact_copies(keys: np.ndarray, read: Callable[[np.ndarray], list[str]]) -> np.ndarray:
    """For each document, the earliest document whose text equals it up to case and whitespace. Equal texts have
    equal band keys, so only the documents whose keys all equal another's are read back and compared."""
    combined = np.zeros(keys.shape[1], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(keys.shape[0]):  # one band of a memory map at a time
            combined = combined * P + np.asarray(keys[band])
    _, inverse, counts = np.unique(combined, return_inverse=True, return_counts=True)
    suspects = np.flatnonzero(counts[inverse.reshape(-1)] > 1)
    copy_of = np.arange(keys.shape[1])
    if len(suspects):
        digests = np.frombuffer(
            b"".join(
                normalised(text)
                for start in range(0, len(suspects), BATCH_DOCS)
                for text in read(suspects[start : start + BATCH_DOCS])
            ),
            dtype="V16",
        )
        _, first, inverse = np.unique(digests, return_index=True, return_inverse=True)
        copy_of[suspects] = suspects[first[inverse.reshape(-1)]]
    return copy_of


@dataclass
class Duplicates:
    roots: np.ndarray  # per document, the earliest document it duplicates (its own index when it is kept)
    copy_of: np.ndarray  # per document, the earliest exact copy of it (its own index when there is none before)


def resolve(keys: np.ndarray, read: Callable[[np.ndarray], list[str]], config: DedupConfig) -> Duplicates:
    """Which document duplicates which. `keys` may be a memory map: only one band's keys of the exact-unique
    documents are loaded at a time; `read(indices)` gives texts back."""
    count = keys.shape[1]
    exact = exact_copies(keys, read) if config.exact and count else np.arange(count)
    unique = np.flatnonzero(exact == np.arange(count))
    pairs = candidate_pairs(np.asarray(keys[band])[unique] for band in range(config.bands))
    if config.verify_candidates and len(pairs):
        pairs = verified(pairs, lambda positions: read(unique[positions]), config)
    result = exact.copy()
    result[unique] = unique[clusters(len(unique), pairs)]
    return Duplicates(result[result], exact)  # an exact copy of a near-duplicate points at the cluster's earliest


def duplicate_of(texts: Iterable[str], config: DedupConfig, seed: int = 0) -> np.ndarray:
    """In memory: for each text, the index of the earliest text it duplicates (its own index when kept)."""
    texts = list(texts)
    keys = fingerprints(texts, config, Hashing.make(config.num_permutations, seed))
    return resolve(keys, lambda indices: [texts[i] for i in indices], config).roots


def sample_text(sample: dict, strip_system: bool) -> str:
    """What is compared: every turn's text; system prompts (often shared by thousands of samples) left out."""
    return "\n".join(
        str(message.get("content", ""))
        for message in sample.get("messages", [])
        if not (strip_system and message.get("role") == "system")
    )


# -- a file: parallel fingerprints, memory that does not grow with the text -----------------------------------
def line_index(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(byte offset, end offset, line number) of every non-blank line."""
    offsets, ends, numbers, position = [], [], [], 0
    with path.open("rb") as source:
        for number, line in enumerate(source, 1):
            if line.strip():
                offsets.append(position)
                ends.append(position + len(line))
                numbers.append(number)
            position += len(line)
    return np.array(offsets, dtype=np.int64), np.array(ends, dtype=np.int64), np.array(numbers, dtype=np.int64)


def contiguous_ranges(starts: np.ndarray, ends: np.ndarray) -> list[tuple[int, int]]:
    """Lines [start, end) merged into the fewest ranges of the file: a range goes on while each line ends where
    the next begins."""
    if not len(starts):
        return []
    first = np.flatnonzero(np.concatenate(([True], starts[1:] != ends[:-1])))
    last = np.append(first[1:] - 1, len(starts) - 1)
    return list(zip(starts[first].tolist(), ends[last].tolist()))


def read_lines(path: Path, starts: np.ndarray, ends: np.ndarray) -> list[bytes]:
    """The bytes [start, end) of the file, for each pair: one read each, nothing buffered around it."""
    source = os.open(path, os.O_RDONLY)
    try:
        return [os.pread(source, end - start, start) for start, end in zip(starts.tolist(), ends.tolist())]
    finally:
        os.close(source)


CHUNK_BYTES = 32 << 20  # a fingerprint job's part of the file


def byte_ranges(path: Path, piece: int) -> list[tuple[int, int]]:
    """The file cut into consecutive ranges of about `piece` bytes, each ending where a line ends."""
    size, cuts = path.stat().st_size, [0]
    with path.open("rb") as source:
        while cuts[-1] + piece < size:
            source.seek(cuts[-1] + piece - 1)
            source.readline()
            cuts.append(source.tell())
    if cuts[-1] < size:
        cuts.append(size)
    return list(zip(cuts[:-1], cuts[1:]))


@dataclass
class Chunk:
    """What the fingerprint pass learns about a range of the file's lines."""

    offsets: np.ndarray  # where its non-blank lines begin and end in the file
    ends: np.ndarray
    numbers: np.ndarray  # their line numbers, 1 at the range's first line
    lines: int  # lines in the range, blank ones too
    keys: np.ndarray
    categories: list[str]
    bad: list[tuple[int, str, str]]  # (position among the non-blank lines, reason, line text)


def _fingerprint_chunk(job: tuple[str, int, int, DedupConfig, int]) -> Chunk:
    path, begin, end, config, seed = job
    with open(path, "rb") as source:
        source.seek(begin)
        block = source.read(end - begin)
    whole = block.endswith(b"\n")  # else the file ends without a newline
    lines = block.split(b"\n")  # without their newlines
    if whole:
        lines.pop()  # the nothing after the last newline
    sizes = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines)) + 1
    starts = begin + np.cumsum(sizes) - sizes
    ends = starts + sizes
    if not whole:
        ends[-1] -= 1
    numbers = np.array([number for number, line in enumerate(lines, 1) if line.strip()], dtype=np.int64)
    texts, categories, bad = [], [], []
    for position, number in enumerate(numbers.tolist()):
        raw = lines[number - 1]
        sample = parse_line(raw)
        problem = sample if isinstance(sample, str) else sample_problem(sample)
        if problem:
            if isinstance(sample, str) and (whole or number < len(lines)):  # said of the line as it is in the file
                problem = parse_line(raw + b"\n")
            bad.append((position, problem, raw.decode("utf-8", "replace")))
            texts.append(""), categories.append("")
            continue
        texts.append(sample_text(sample, config.strip_shared_prompts))
        categories.append(sample.get("category", "unknown"))
    keys = fingerprints(texts, config, Hashing.make(config.num_permutations, seed))
    return Chunk(starts[numbers - 1], ends[numbers - 1], numbers, len(lines), keys, categories, bad)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity, which SLURM and taskset set), not the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def shard_fingerprints(path: Path, config: DedupConfig, seed: int, target: Path) -> int:
    """Fingerprints of every sample of one shard file (an array task's part), saved for `file_duplicates`."""
    with tempfile.TemporaryDirectory(prefix=".dedup-", dir=target.parent) as work:
        found = compute_fingerprints(path, config, seed, Path(work) / "band_keys")
        if found.bad:
            position, reason, _ = found.bad[0]
            raise RecordError(f"{path}:{found.numbers[position]}: {reason}")
        np.savez(target, keys=found.keys, categories=np.array(found.categories, dtype=str))
    return len(found.offsets)


def file_duplicates(
    path: Path,
    config: DedupConfig,
    seed: int,
    work_dir: Path,
    chunk_bytes: int = CHUNK_BYTES,
    computed: list[Path] = (),
    set_aside: SetAside | None = None,
) -> Scan:
    """Which sample of a JSONL file duplicates which. Fingerprints are computed by `config.workers` processes
    (0 = one per usable CPU) over ranges of lines and kept in a memory map in `work_dir` (8 x bands bytes per
    sample); texts are read back only to compare possible copies and verify candidate pairs. `computed`: the
    fingerprints of the file's consecutive shards, already computed by array tasks (`shard_fingerprints`). A bad
    record raises RecordError naming its line, or with `set_aside` is recorded there and left out."""
    work_dir.mkdir(parents=True, exist_ok=True)
    if computed:
        found = shards_fingerprints(path, config, computed, work_dir / "band_keys.npy")
    else:
        found = compute_fingerprints(path, config, seed, work_dir / "band_keys", chunk_bytes)
    offsets, ends, numbers, keys, categories = found.offsets, found.ends, found.numbers, found.keys, found.categories
    valid = np.ones(len(offsets), dtype=bool)
    for position, reason, text in found.bad:
        if set_aside is None:
            raise RecordError(f"{path}:{numbers[position]}: {reason}")
        set_aside.add(path, int(numbers[position]), reason, text)
        valid[position] = False
    if found.bad:  # only the usable samples take part
        offsets, ends, numbers = offsets[valid], ends[valid], numbers[valid]
        categories = [c for c, ok in zip(categories, valid) if ok]
        keys = np.asarray(keys)[:, valid]

    def read(indices: np.ndarray) -> list[str]:
        return [
            sample_text(parse_line(line), config.strip_shared_prompts)
            for line in read_lines(path, offsets[indices], ends[indices])
        ]

    return Scan(offsets, ends, categories, resolve(keys, read, config))


@dataclass
class Scan:
    offsets: np.ndarray  # of the usable samples' lines
    ends: np.ndarray
    categories: list[str]
    duplicates: Duplicates


@dataclass
class Fingerprints:
    """Of a file's non-blank lines: where they are, their band keys (bands x lines) and categories, and the bad
    lines (position among them, reason, text)."""

    offsets: np.ndarray
    ends: np.ndarray
    numbers: np.ndarray
    keys: np.ndarray
    categories: list[str]
    bad: list[tuple[int, str, str]]


def compute_fingerprints(
    path: Path, config: DedupConfig, seed: int, keys_file: Path, chunk_bytes: int = CHUNK_BYTES
) -> Fingerprints:
    """One pass over the file, a range of its lines per job; the band keys are appended to `keys_file` (a sample's
    keys together) and mapped back as bands x samples."""
    ranges = byte_ranges(path, chunk_bytes)
    jobs = [(str(path), begin, end, config, seed) for begin, end in ranges]
    workers = min(config.workers or usable_cpus(), usable_cpus(), len(jobs)) or 1  # more than the CPUs only slows
    offsets, ends, numbers = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    categories: list[str] = []
    bad: list[tuple[int, str, str]] = []
    lines_before = count = 0
    megabytes = round(path.stat().st_size / 1e6)
    with keys_file.open("wb") as keys_out, Progress("dedup fingerprints", total=megabytes, unit="MB") as progress:

        def store(chunk: Chunk, begin: int, end: int) -> None:
            nonlocal lines_before, count
            offsets.append(chunk.offsets), ends.append(chunk.ends), numbers.append(lines_before + chunk.numbers)
            keys_out.write(np.ascontiguousarray(chunk.keys.T).tobytes())
            categories.extend(chunk.categories)
            bad.extend((count + position, reason, text) for position, reason, text in chunk.bad)
            lines_before, count = lines_before + chunk.lines, count + len(chunk.offsets)
            progress.advance(round(end / 1e6) - round(begin / 1e6), samples=f"{count:,}")

        if workers > 1:
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for chunk, (begin, end) in zip(pool.imap(_fingerprint_chunk, jobs), ranges):
                    store(chunk, begin, end)
        else:
            for job, (begin, end) in zip(jobs, ranges):
                store(_fingerprint_chunk(job), begin, end)
    keys = np.zeros((config.bands, 0), np.uint64)
    if count:  # a file of no samples cannot be mapped
        keys = np.memmap(keys_file, dtype=np.uint64, mode="r", shape=(count, config.bands)).T
    return Fingerprints(np.concatenate(offsets), np.concatenate(ends), np.concatenate(numbers), keys, categories, bad)


def shards_fingerprints(path: Path, config: DedupConfig, computed: list[Path], keys_file: Path) -> Fingerprints:
    """The fingerprints the shards' array tasks saved, joined in the file's order."""
    offsets, ends, numbers = line_index(path)
    keys = np.lib.format.open_memmap(keys_file, mode="w+", dtype=np.uint64, shape=(config.bands, len(offsets)))
    start, categories = 0, []
    for part in computed:
        with np.load(part) as saved:
            end = start + saved["keys"].shape[1]
            keys[:, start:end] = saved["keys"]
            categories += saved["categories"].tolist()
        start = end
    if start != len(offsets):
        raise ValueError(f"the shards' fingerprints cover {start} samples, {path} has {len(offsets)}")
    return Fingerprints(offsets, ends, numbers, keys, categories, [])


def run(input_path: Path, output_path: Path, config: DedupConfig, seed: int = 0, computed: list[Path] = ()) -> dict:
    """The dedup step on a JSONL file: kept samples (their lines copied as they are), dropped ones with their
    reason and the sample they duplicate, and a report."""
    with (
        StepFiles(input_path, output_path, config.on_bad_record) as files,
        tempfile.TemporaryDirectory(prefix=".dedup-", dir=output_path.parent) as work,
    ):
        if input_path.suffix != ".jsonl":  # Parquet, a `datasets` folder: read as JSONL lines (bad rows named here)
            input_path = Path(work) / "input.jsonl"
            join_inputs([files.input], input_path, files.set_aside)
        scan = file_duplicates(input_path, config, seed, Path(work), computed=computed, set_aside=files.set_aside)
        counts: dict = {"input": len(scan.offsets), "kept": 0, "dropped": {}, "by_category": {}}
        for category in scan.categories:
            counts["by_category"].setdefault(category, {"in": 0, "out": 0})["in"] += 1
        roots, copy_of = scan.duplicates.roots, scan.duplicates.copy_of
        kept = roots == np.arange(len(roots))
        files.keep_ranges(input_path, contiguous_ranges(scan.offsets[kept], scan.ends[kept]))
        every_dropped = np.flatnonzero(~kept)
        for start in range(0, len(every_dropped), 20_000):
            dropped = every_dropped[start : start + 20_000]
            lines = read_lines(input_path, scan.offsets[dropped], scan.ends[dropped])
            originals = dict(
                zip(
                    roots[dropped].tolist(),
                    read_lines(input_path, scan.offsets[roots[dropped]], scan.ends[roots[dropped]]),
                )
            )
            for index, line in zip(dropped.tolist(), lines):
                root = int(roots[index])
                reason = "exact_duplicate" if copy_of[index] == copy_of[root] else "near_duplicate"
                counts["dropped"][reason] = counts["dropped"].get(reason, 0) + 1
                original_id = parse_line(originals[root]).get("id", root)
                files.drop(parse_line(line), "dedup", reason, duplicate_of=original_id)
        counts["kept"] = int(kept.sum())
        for category, count in Counter(c for c, keep in zip(scan.categories, kept.tolist()) if keep).items():
            counts["by_category"][category]["out"] = count
        return files.finish(counts)


def map_shard(shard_input: Path, shards_dir: Path, shard: int, config: DedupConfig, seed: int) -> None:
    shard_fingerprints(shard_input, config, seed, shards_dir / f"{shard}.fingerprints.npz")


def merge_shards(
    input_path: Path, output_path: Path, shards_dir: Path, shards: int, config: DedupConfig, seed: int
) -> dict:
    """Duplicates resolved across shards from their fingerprints."""
    return run(
        input_path, output_path, config, seed, computed=[shards_dir / f"{s}.fingerprints.npz" for s in range(shards)]
    )
