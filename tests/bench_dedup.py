"""Benchmark: near-duplicate removal next to datasketch and rensa, on one core, in the same run.

    python tests/bench_dedup.py [--docs 20000] [--seed 0]

The corpus (English word texts and Chinese character texts) has planted variants at exactly known Jaccard
similarity of their shingle sets (0.5 .. 0.98), exact copies, hard negatives sharing a long prefix, and a long
system prompt shared by a fifth of the samples. Truth: a variant is a duplicate iff its Jaccard with its
original is >= 0.8. Prints docs/s, precision and recall of the removals for each method.
Needs `pip install datasketch rensa` for the comparison columns (skipped when missing).
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np

from schema.curation import DedupConfig
from yulan.curation.dedup import duplicate_of

WORDS = [f"w{i:04d}" for i in range(5000)]
HANZI = [chr(0x4E00 + i) for i in range(3000)]
SYSTEM = "You are a helpful, careful assistant. Always explain your reasoning step by step. " * 12


def shingle_set(tokens: list[str], n: int = 5) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(max(len(tokens) - n + 1, 1))}


def jaccard(a: list[str], b: list[str]) -> float:
    x, y = shingle_set(a), shingle_set(b)
    return len(x & y) / len(x | y)


def render(tokens: list[str], chinese: bool) -> str:
    return "".join(tokens) if chinese else " ".join(tokens) + "."


def corpus(count: int, seed: int) -> tuple[list[str], list[str], set[int]]:
    """Texts (as dedup sees them), the same with the system prompt kept, and the indices that truly duplicate."""
    rng = random.Random(seed)
    docs: list[list[str]] = []
    chinese: list[bool] = []
    family: list[int] = []  # the original every document derives from; only relatives can be similar
    while len(docs) < count:
        roll = rng.random()
        if docs and roll < 0.12:  # a variant of an earlier document, edited to a measured Jaccard
            source = rng.randrange(len(docs))
            tokens = list(docs[source])
            vocab = HANZI if chinese[source] else WORDS
            for _ in range(rng.randint(1, 12)):
                tokens[rng.randrange(len(tokens))] = rng.choice(vocab)
            docs.append(tokens), chinese.append(chinese[source]), family.append(family[source])
        elif docs and roll < 0.14:  # an exact copy
            source = rng.randrange(len(docs))
            docs.append(list(docs[source])), chinese.append(chinese[source]), family.append(family[source])
        elif docs and roll < 0.18:  # hard negative: a long shared prefix, then different text (Jaccard ~0.4)
            source = rng.randrange(len(docs))
            vocab = HANZI if chinese[source] else WORDS
            keep = int(len(docs[source]) * 0.55)
            docs.append(docs[source][:keep] + [rng.choice(vocab) for _ in range(len(docs[source]) - keep)])
            chinese.append(chinese[source]), family.append(family[source])
        else:
            is_chinese = rng.random() < 0.4
            vocab = HANZI if is_chinese else WORDS
            docs.append([rng.choice(vocab) for _ in range(rng.randint(150, 300))]), chinese.append(is_chinese)
            family.append(len(docs) - 1)
    # Truth: a document duplicates when any earlier relative reaches the threshold (exact Jaccard).
    relatives: dict[int, list[int]] = {}
    truth: set[int] = set()
    for index, root in enumerate(family):
        if any(jaccard(docs[index], docs[earlier]) >= 0.8 for earlier in relatives.get(root, [])):
            truth.add(index)
        relatives.setdefault(root, []).append(index)
    texts = [render(tokens, zh) for tokens, zh in zip(docs, chinese)]
    with_system = [SYSTEM + text if i % 5 == 0 else text for i, text in enumerate(texts)]
    return texts, with_system, truth


def score(removed: set[int], truth: set[int]) -> tuple[float, float]:
    hits = len(removed & truth)
    return (hits / len(removed) if removed else 1.0), hits / len(truth)


def tokens_of(text: str) -> list[str]:
    return list(text) if "\u4e00" <= text[0] <= "\u9fff" else text.rstrip(".").split()


def shingle_strings(text: str) -> list[str]:
    tokens = tokens_of(text)
    return [" ".join(tokens[i : i + 5]) for i in range(max(len(tokens) - 4, 1))]


def run_ours(texts: list[str], config: DedupConfig) -> set[int]:
    roots = duplicate_of(texts, config)
    return {i for i, root in enumerate(roots) if root != i}


def run_datasketch(texts: list[str], config: DedupConfig) -> set[int]:
    from datasketch import MinHash, MinHashLSH

    lsh, removed = MinHashLSH(threshold=config.threshold, num_perm=config.num_permutations), set()
    template = MinHash(num_perm=config.num_permutations, seed=1)
    for index, text in enumerate(texts):
        sig = MinHash(num_perm=config.num_permutations, seed=1, permutations=template.permutations, scheme=template.scheme)
        sig.update_batch([s.encode() for s in shingle_strings(text)])
        if lsh.query(sig):
            removed.add(index)
        else:
            lsh.insert(str(index), sig)
    return removed


def run_rensa(texts: list[str], config: DedupConfig) -> set[int]:
    from rensa import RMinHash, RMinHashLSH

    lsh, removed = RMinHashLSH(threshold=config.threshold, num_perm=config.num_permutations, num_bands=16), set()
    for index, text in enumerate(texts):
        sig = RMinHash(num_perm=config.num_permutations, seed=1)
        sig.update(shingle_strings(text))
        if lsh.query(sig):
            removed.add(index)
        else:
            lsh.insert(index, sig)
    return removed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    texts, with_system, truth = corpus(args.docs, args.seed)
    config = DedupConfig()
    print(f"{len(texts)} docs, {len(truth)} true duplicates (Jaccard >= {config.threshold} or exact); one core")
    print(f"{'method':<34}{'docs/s':>10}{'precision':>11}{'recall':>9}")
    methods = [("yulan (numpy, verified)", run_ours), ("datasketch 2 (update_batch)", run_datasketch),
               ("rensa (RMinHash + RMinHashLSH)", run_rensa)]
    for name, method in methods:
        try:
            start = time.perf_counter()
            removed = method(texts, config)
            elapsed = time.perf_counter() - start
        except ImportError as error:
            print(f"{name:<34}  skipped: {error}")
            continue
        precision, recall = score(removed, truth)
        print(f"{name:<34}{len(texts) / elapsed:>10,.0f}{precision:>11.3f}{recall:>9.3f}")
    # What stripping the shared system prompt is worth (same method, prompt left in).
    removed = run_ours(with_system, config)
    precision, recall = score(removed, truth)
    print(f"{'yulan, system prompt NOT stripped':<34}{'':>10}{precision:>11.3f}{recall:>9.3f}")
    file_step(texts, truth, args.seed)
    print(np.__name__, np.__version__)


FILE_RUN = """
import json, resource, sys, time
from pathlib import Path
from schema.curation import DedupConfig
from yulan.curation import dedup
start = time.perf_counter()
report = dedup.run(Path(sys.argv[1]), Path(sys.argv[2]), DedupConfig(workers=int(sys.argv[3])))
elapsed = time.perf_counter() - start
# VmHWM, not ru_maxrss: ru_maxrss survives exec and would count the benchmark's own memory at fork
own = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
peak = max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)  # the worker processes (KiB)
print(json.dumps({"seconds": elapsed, "peak_mb": peak / 1024, "kept": report["kept"]}))
"""


def file_step(texts: list[str], truth: set[int], seed: int) -> None:
    """`yulan curate dedup` on JSONL files: 1 and 2 processes, and peak memory as the corpus grows 4x."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    print("\nthe dedup step on a JSONL file (fingerprints in memory maps, texts re-read only to verify)")
    print(f"{'docs':>8}{'file MB':>9}{'processes':>11}{'docs/s':>10}{'peak RSS MB':>13}{'precision':>11}{'recall':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for scale in (1, 4):
            many, many_truth = (texts, truth) if scale == 1 else corpus(len(texts) * scale, seed)[::2]
            source = Path(tmp) / f"in{scale}.jsonl"
            source.write_text("".join(json.dumps({"id": str(i), "messages": [{"role": "user", "content": t}]},
                                                 ensure_ascii=False) + "\n" for i, t in enumerate(many)))
            for workers in (1, 2):
                out = Path(tmp) / f"out{scale}-{workers}.jsonl"
                done = subprocess.run([sys.executable, "-c", FILE_RUN, str(source), str(out), str(workers)],
                                      capture_output=True, text=True, check=True)
                result = json.loads(done.stdout)
                kept = {int(json.loads(line)["id"]) for line in out.read_text().splitlines()}
                precision, recall = score(set(range(len(many))) - kept, many_truth)
                print(f"{len(many):>8}{source.stat().st_size / 2**20:>9.1f}{workers:>11}"
                      f"{len(many) / result['seconds']:>10,.0f}{result['peak_mb']:>13.0f}{precision:>11.3f}{recall:>8.3f}")


if __name__ == "__main__":
    main()
