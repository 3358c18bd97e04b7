"""Exact and near-duplicate removal: MinHash signatures, LSH banding, candidate verification.

Fast because no Python object is made per token: text becomes an array of code points, shingles are rolling
polynomial hashes computed with numpy (uint64 arithmetic wraps mod 2^64), MinHash is one multiply-shift per
permutation over a whole batch of documents, and LSH buckets are found by sorting band keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from schema.curation import DedupConfig

P = np.uint64(1_099_511_628_211)  # odd, so invertible mod 2^64
P_INV = np.uint64(pow(int(P), -1, 2**64))
EMPTY = np.array([np.uint64(0x9E3779B97F4A7C15)], dtype=np.uint64)  # stands for a document with no text
BATCH_DOCS = 512
PERM_CHUNK = 16
MAX_GROUP_PAIRS = 64  # larger LSH buckets pair each member with the first 64 only (they are verified anyway)


def _cjk(codes: np.ndarray) -> np.ndarray:
    return ((codes >= 0x3400) & (codes <= 0x9FFF)) | ((codes >= 0xF900) & (codes <= 0xFAFF))


def _window_hash(values: np.ndarray, n: int) -> np.ndarray:
    """Polynomial hash of every window of n consecutive values (one hash of all of them when shorter)."""
    n = min(n, len(values))
    out = np.zeros(len(values) - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            out = out * P + values[k : len(values) - n + 1 + k]
    return out


def _powers(base: np.uint64, count: int) -> np.ndarray:
    """base^0 .. base^(count-1) mod 2^64."""
    with np.errstate(over="ignore"):
        return np.concatenate(([np.uint64(1)], np.cumprod(np.full(max(count - 1, 0), base, dtype=np.uint64))))[:count]


def _stream_windows(tokens: np.ndarray, docs: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n-gram hashes of a token stream ordered by document; windows crossing documents are dropped, and a
    document shorter than n tokens gets one hash of all its tokens."""
    hashes, owners = np.zeros(0, np.uint64), np.zeros(0, np.int64)
    if len(tokens) >= n:
        hashes = _window_hash(tokens, n)
        inside = docs[: len(hashes)] == docs[n - 1 :]
        hashes, owners = hashes[inside], docs[: len(hashes)][inside]
    counts = np.bincount(docs) if len(docs) else np.zeros(0, np.int64)
    short = np.flatnonzero((counts > 0) & (counts < n))
    if len(short):  # rare: a document with fewer than n tokens
        hashes = np.concatenate([hashes, *(_window_hash(tokens[docs == d], n) for d in short)])
        owners = np.concatenate([owners, short])
    return hashes, owners


def batch_shingles(texts: list[str], word_ngram: int, char_ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of many texts at once, with the index of the text each belongs to (sorted by text).

    Character n-grams for mostly-Chinese texts, word n-grams otherwise. Duplicates are kept: MinHash does not
    need sets. Texts are joined with NUL, which is never part of a word.
    """
    joined = "\0".join(text.lower().replace("\0", " ") for text in texts)
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    doc = np.cumsum(codes == 0)
    cjk = _cjk(codes)
    letters = cjk | ((codes >= 48) & (codes <= 57)) | ((codes >= 97) & (codes <= 122)) | (codes >= 0xC0)
    chinese = np.bincount(doc, weights=cjk, minlength=len(texts)) * 2 > np.bincount(doc, weights=letters, minlength=len(texts))
    # Chinese texts: every letter is a token.
    zh_chars = letters & chinese[doc]
    zh_hashes, zh_docs = _stream_windows(codes[zh_chars], doc[zh_chars], char_ngram)
    # Other texts: a word is a run of letters, hashed as sum(code * P^(i - start)) by one segmented sum.
    en_letters = letters & ~chinese[doc]
    edges = np.flatnonzero(np.diff(np.concatenate(([0], en_letters.view(np.int8), [0]))))
    starts = edges[0::2]
    if len(starts):
        with np.errstate(over="ignore"):
            weighted = np.where(en_letters, codes, np.uint64(0)) * _powers(P, len(codes))
            words = np.add.reduceat(weighted, starts) * _powers(P_INV, len(codes))[starts]
        en_hashes, en_docs = _stream_windows(words, doc[starts], word_ngram)
    else:
        en_hashes, en_docs = np.zeros(0, np.uint64), np.zeros(0, np.int64)
    hashes, owners = np.concatenate([zh_hashes, en_hashes]), np.concatenate([zh_docs, en_docs])
    order = np.argsort(owners, kind="stable")
    return hashes[order], owners[order]


@dataclass(frozen=True)
class Permutations:
    a: np.ndarray
    b: np.ndarray

    @classmethod
    def make(cls, count: int, seed: int) -> Permutations:
        rng = np.random.default_rng(seed)
        a = rng.integers(1, 2**63, size=count, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd multipliers
        return cls(a=a, b=rng.integers(0, 2**63, size=count, dtype=np.uint64))


def signatures(texts: list[str], config: DedupConfig, perms: Permutations) -> np.ndarray:
    """MinHash signatures (texts x permutations): multiply-shift hashing of every shingle, a batch at a time."""
    out = np.empty((len(texts), len(perms.a)), dtype=np.uint32)
    for start in range(0, len(texts), BATCH_DOCS):
        batch = texts[start : start + BATCH_DOCS]
        hashes, owners = batch_shingles(batch, config.word_ngram, config.char_ngram)
        # A text without shingles gets one fixed stand-in, so it matches only other empty texts.
        missing = np.setdiff1d(np.arange(len(batch)), owners)
        if len(missing):
            hashes = np.concatenate([hashes, np.repeat(EMPTY, len(missing))])
            owners = np.concatenate([owners, missing])
            order = np.argsort(owners, kind="stable")
            hashes, owners = hashes[order], owners[order]
        offsets = np.searchsorted(owners, np.arange(len(batch)))
        buffer = np.empty((PERM_CHUNK, len(hashes)), dtype=np.uint64)
        for p in range(0, len(perms.a), PERM_CHUNK):
            a, b = perms.a[p : p + PERM_CHUNK, None], perms.b[p : p + PERM_CHUNK, None]
            rows = buffer[: len(a)]
            with np.errstate(over="ignore"):
                np.multiply(hashes[None, :], a, out=rows)
                rows += b
            rows >>= np.uint64(32)
            out[start : start + len(batch), p : p + len(a)] = np.minimum.reduceat(rows, offsets, axis=1).T
    return out


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    shared = len(np.intersect1d(a, b, assume_unique=True))
    return shared / (len(a) + len(b) - shared)


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One key per LSH band (bands x documents): documents share a key when that band of their signatures agrees."""
    with np.errstate(over="ignore"):
        return np.stack([_window_hash_rows(sigs[:, band * rows : (band + 1) * rows]) for band in range(bands)])


def candidate_pairs(band_columns: Iterable[np.ndarray]) -> np.ndarray:
    """Pairs (i < j) of positions that share at least one band key; one band's keys in memory at a time."""
    found = []
    for keys in band_columns:
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        bounds = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1], [True])))
        sizes = np.diff(bounds)
        pair_starts = bounds[:-1][sizes == 2]  # most buckets with a collision hold exactly one pair
        found.append(np.sort(np.stack([order[pair_starts], order[pair_starts + 1]], axis=1), axis=1))
        for lo, hi in zip(bounds[:-1][sizes > 2], bounds[1:][sizes > 2]):
            members = np.sort(order[lo:hi])
            head = members[:MAX_GROUP_PAIRS]
            i, j = np.triu_indices(len(head), k=1)
            found.append(np.stack([head[i], head[j]], axis=1))
            if len(members) > MAX_GROUP_PAIRS:
                rest = members[MAX_GROUP_PAIRS:]
                found.append(np.stack([np.full(len(rest), members[0]), rest], axis=1))
        found = [np.unique(np.concatenate(found), axis=0)] if found else []  # keep the pair list deduplicated
    return found[0] if found else np.zeros((0, 2), dtype=np.int64)


def _window_hash_rows(block: np.ndarray) -> np.ndarray:
    key = np.zeros(len(block), dtype=np.uint64)
    for column in block.T:
        key = key * P + column.astype(np.uint64)
    return key


def _root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def clusters(count: int, pairs: np.ndarray) -> np.ndarray:
    """Union-find; each document maps to the earliest document of its cluster."""
    parent = np.arange(count)
    for i, j in pairs:
        ri, rj = _root(parent, int(i)), _root(parent, int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([_root(parent, i) for i in range(count)])


def normalised(text: str) -> bytes:
    return hashlib.blake2b(" ".join(text.lower().split()).encode(), digest_size=16).digest()


def verified(pairs: np.ndarray, read: Callable[[np.ndarray], list[str]], config: DedupConfig,
             chunk_pairs: int = 50_000) -> np.ndarray:
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
            for position, part in enumerate(np.split(hashes, np.searchsorted(owners, np.arange(1, len(batch))))):
                sets[int(batch[position])] = np.unique(part) if len(part) else EMPTY
        keep[start : start + len(chunk)] = [jaccard(sets[int(i)], sets[int(j)]) >= config.threshold for i, j in chunk]
    return pairs[keep]


def fingerprints(texts: list[str], config: DedupConfig, perms: Permutations) -> tuple[np.ndarray, np.ndarray]:
    """Per text: a digest of its normalised form (exact duplicates) and its LSH band keys (bands x texts)."""
    digests = np.frombuffer(b"".join(normalised(t) for t in texts), dtype="V16") if texts else np.zeros(0, "V16")
    return digests, band_keys(signatures(texts, config, perms), config.bands, config.rows_per_band)


def resolve(digests: np.ndarray, keys: np.ndarray, read: Callable[[np.ndarray], list[str]],
            config: DedupConfig) -> np.ndarray:
    """For each document, the index of the earliest document it duplicates (its own index when it is kept).
    `keys` may be a memory map: only one band's keys of the exact-unique documents are loaded at a time."""
    count = len(digests)
    exact = np.arange(count)
    if config.exact and count:
        _, first, inverse = np.unique(digests, return_index=True, return_inverse=True)
        exact = first[inverse.reshape(-1)]
    unique = np.flatnonzero(exact == np.arange(count))
    pairs = candidate_pairs(np.asarray(keys[band])[unique] for band in range(config.bands))
    if config.verify_candidates and len(pairs):
        pairs = verified(pairs, lambda positions: read(unique[positions]), config)
    result = exact.copy()
    result[unique] = unique[clusters(len(unique), pairs)]
    return result[result]  # an exact copy of a near-duplicate points at the cluster's earliest text


def duplicate_of(texts: Iterable[str], config: DedupConfig, seed: int = 0) -> np.ndarray:
    """In memory: for each text, the index of the earliest text it duplicates (its own index when kept)."""
    texts = list(texts)
    digests, keys = fingerprints(texts, config, Permutations.make(config.num_permutations, seed))
    return resolve(digests, keys, lambda indices: [texts[i] for i in indices], config)


def sample_text(sample: dict, strip_system: bool) -> str:
    """What is compared: every turn's text; system prompts (often shared by thousands of samples) left out."""
    return "\n".join(
        str(message.get("content", "")) for message in sample.get("messages", [])
        if not (strip_system and message.get("role") == "system")
    )


# -- a file: parallel fingerprints, memory that does not grow with the text -----------------------------------
def line_offsets(path: Path) -> np.ndarray:
    """Byte offset of every non-empty line."""
    offsets, position = [], 0
    with path.open("rb") as source:
        for line in source:
            if line.strip():
                offsets.append(position)
            position += len(line)
    return np.array(offsets, dtype=np.int64)


def read_samples(path: Path, offsets: np.ndarray) -> list[dict]:
    with path.open("rb") as source:
        out = []
        for offset in offsets:
            source.seek(int(offset))
            out.append(json.loads(source.readline()))
        return out


def _fingerprint_chunk(job: tuple[str, np.ndarray, DedupConfig, int]) -> tuple[np.ndarray, np.ndarray]:
    path, offsets, config, seed = job
    texts = [sample_text(s, config.strip_shared_prompts) for s in read_samples(Path(path), offsets)]
    return fingerprints(texts, config, Permutations.make(config.num_permutations, seed))


def shard_fingerprints(path: Path, config: DedupConfig, seed: int, target: Path, chunk_docs: int = 20_000) -> int:
    """Fingerprints of every sample of one shard file (an array task's part), saved for `file_duplicates`."""
    offsets = line_offsets(path)
    digests, keys = np.empty(len(offsets), dtype="V16"), np.empty((config.bands, len(offsets)), dtype=np.uint64)
    compute_fingerprints(path, offsets, config, seed, digests, keys, chunk_docs)
    np.savez(target, digests=digests, keys=keys)
    return len(offsets)


def file_duplicates(path: Path, config: DedupConfig, seed: int, work_dir: Path,
                    chunk_docs: int = 20_000, computed: list[Path] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(line offsets, duplicate-of index per sample) for a JSONL file. Fingerprints are computed by
    `config.workers` processes (0 = one per core) over chunks of lines and kept in memory maps in `work_dir`
    (16 + 8 x bands bytes per sample); texts are read back only to verify candidate pairs. `computed`: the
    fingerprints of the file's consecutive shards, already computed by array tasks (`shard_fingerprints`)."""
    offsets = line_offsets(path)
    count = len(offsets)
    work_dir.mkdir(parents=True, exist_ok=True)
    digests = np.lib.format.open_memmap(work_dir / "digests.npy", mode="w+", dtype="V16", shape=(count,))
    keys = np.lib.format.open_memmap(work_dir / "band_keys.npy", mode="w+", dtype=np.uint64,
                                     shape=(config.bands, count))
    if computed:
        start = 0
        for part in computed:
            with np.load(part) as saved:
                end = start + len(saved["digests"])
                digests[start:end], keys[:, start:end] = saved["digests"], saved["keys"]
            start = end
        if start != count:
            raise ValueError(f"the shards' fingerprints cover {start} samples, {path} has {count}")
    else:
        compute_fingerprints(path, offsets, config, seed, digests, keys, chunk_docs)

    def read(indices: np.ndarray) -> list[str]:
        return [sample_text(s, config.strip_shared_prompts) for s in read_samples(path, offsets[indices])]

    return offsets, resolve(digests, keys, read, config)


def compute_fingerprints(path: Path, offsets: np.ndarray, config: DedupConfig, seed: int, digests: np.ndarray,
                         keys: np.ndarray, chunk_docs: int) -> None:
    count = len(offsets)
    starts = range(0, count, chunk_docs)
    jobs = [(str(path), offsets[i : i + chunk_docs], config, seed) for i in starts]
    workers = min(config.workers or os.cpu_count() or 1, len(jobs)) or 1
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.imap(_fingerprint_chunk, jobs)
            for start, (chunk_digests, chunk_keys) in zip(starts, results):
                digests[start : start + len(chunk_digests)] = chunk_digests
                keys[:, start : start + len(chunk_digests)] = chunk_keys
    else:
        for start, job in zip(starts, jobs):
            chunk_digests, chunk_keys = _fingerprint_chunk(job)
            digests[start : start + len(chunk_digests)] = chunk_digests
            keys[:, start : start + len(chunk_digests)] = chunk_keys


def run(input_path: Path, output_path: Path, config: DedupConfig, seed: int = 0, computed: list[Path] = ()) -> dict:
    """The dedup step on a JSONL file: kept samples, dropped ones with their reason, and a report."""
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".dedup-", dir=output_path.parent) as work:
        offsets, roots = file_duplicates(input_path, config, seed, Path(work), computed=computed)
        digests = np.load(Path(work) / "digests.npy", mmap_mode="r")
        report: dict = {"input": len(offsets), "kept": 0, "dropped": {}, "by_category": {}}
        dropped_path = output_path.with_name(output_path.stem + ".dropped.jsonl")
        with input_path.open() as source, output_path.open("w") as kept, dropped_path.open("w") as dropped:
            index = 0
            for line in source:
                if not line.strip():
                    continue
                sample, root = json.loads(line), int(roots[index])
                category = report["by_category"].setdefault(sample.get("category", "unknown"), {"in": 0, "out": 0})
                category["in"] += 1
                if root == index:
                    kept.write(json.dumps(sample, ensure_ascii=False) + "\n")
                    report["kept"] += 1
                    category["out"] += 1
                else:
                    reason = "exact_duplicate" if config.exact and digests[index] == digests[root] else "near_duplicate"
                    report["dropped"][reason] = report["dropped"].get(reason, 0) + 1
                    original = read_samples(input_path, offsets[[root]])[0]
                    record = {**sample, "dropped": {"step": "dedup", "reason": reason,
                                                    "duplicate_of": original.get("id", root)}}
                    dropped.write(json.dumps(record, ensure_ascii=False) + "\n")
                index += 1
    output_path.with_name(output_path.stem + ".report.json").write_text(json.dumps(report, indent=2))
    return report
