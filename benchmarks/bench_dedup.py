"""Benchmark: near-duplicate removal next to datasketch and rensa, on one core, in the same run.

    taskset -c 0 python benchmarks/bench_dedup.py [--docs 20000] [--seed 0] [--rounds 3] [--no-datasketch]

The corpus (English word texts and Chinese character texts, ~1.8 KB per sample as JSON) has planted variants
at exactly known Jaccard similarity of their shingle sets (0.5 .. 0.98), exact copies, hard negatives sharing a
long prefix, and a long system prompt shared by a fifth of the samples. Truth: a variant is a duplicate iff its
Jaccard with its original is >= 0.8. Prints docs/s, precision and recall of the removals for each method: in
memory (texts given), where datasketch and rensa get the same exact-Jaccard verification of their candidates as
ours; and end to end on a JSONL file (reading, JSON, writing), `yulan curate dedup` next to rensa's own pipeline,
A/B interleaved, with the median over rounds of the time ratio (this machine's noise is large).
Needs `pip install datasketch rensa` for the comparison rows (skipped when missing).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np

from yulan.schema.curation import DedupConfig
from yulan.stages.curation import dedup
from yulan.stages.curation.dedup import duplicate_of

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
            length = rng.randint(300, 500) if is_chinese else rng.randint(220, 380)
            docs.append([rng.choice(vocab) for _ in range(length)]), chinese.append(is_chinese)
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


def verified_duplicate(shingles: list[str], candidates, kept: dict[int, set[str]], threshold: float) -> bool:
    """The same check ours makes: an LSH candidate counts only when the exact Jaccard of shingle sets reaches it."""
    mine = set(shingles)
    return any(len(mine & kept[c]) / len(mine | kept[c]) >= threshold for c in candidates)


def run_datasketch(texts: list[str], config: DedupConfig, verify: bool = True) -> set[int]:
    from datasketch import MinHash, MinHashLSH

    lsh, removed, kept = MinHashLSH(threshold=config.threshold, num_perm=config.num_permutations), set(), {}
    template = MinHash(num_perm=config.num_permutations, seed=1)
    for index, text in enumerate(texts):
        shingles = shingle_strings(text)
        sig = MinHash(
            num_perm=config.num_permutations, seed=1, permutations=template.permutations, scheme=template.scheme
        )
        sig.update_batch([s.encode() for s in shingles])
        found = [int(c) for c in lsh.query(sig)]
        if found and (not verify or verified_duplicate(shingles, found, kept, config.threshold)):
            removed.add(index)
        else:
            lsh.insert(str(index), sig)
            kept[index] = set(shingles)
    return removed


def run_rensa(texts: list[str], config: DedupConfig, verify: bool = True) -> set[int]:
    from rensa import RMinHash, RMinHashLSH

    lsh, removed, kept = (
        RMinHashLSH(threshold=config.threshold, num_perm=config.num_permutations, num_bands=16),
        set(),
        {},
    )
    for index, text in enumerate(texts):
        shingles = shingle_strings(text)
        sig = RMinHash(num_perm=config.num_permutations, seed=1)
        sig.update(shingles)
        found = lsh.query(sig)
        if found and (not verify or verified_duplicate(shingles, found, kept, config.threshold)):
            removed.add(index)
        else:
            lsh.insert(index, sig)
            kept[index] = set(shingles)
    return removed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="end-to-end rounds, interleaved")
    parser.add_argument("--no-datasketch", action="store_true", help="leave out datasketch (slow at 80k docs)")
    args = parser.parse_args()
    texts, with_system, truth = corpus(args.docs, args.seed)
    config = DedupConfig()
    print(f"{len(texts)} docs, {len(truth)} true duplicates (Jaccard >= {config.threshold} or exact); one core")
    print(f"{'method':<34}{'docs/s':>10}{'precision':>11}{'recall':>9}")
    methods = [("yulan (numpy, verified)", run_ours), ("rensa, verified", run_rensa)]
    if not args.no_datasketch:
        methods.insert(1, ("datasketch 2 (update_batch), verified", run_datasketch))
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
    file_step(texts, truth, args.rounds)
    print(np.__name__, np.__version__, "usable CPUs:", dedup.usable_cpus())


RENSA_RUN = """
import json, sys
from rensa import RMinHash, RMinHashLSH
sys.path.insert(0, sys.argv[3])
from benchmarks.bench_dedup import shingle_strings
lsh = RMinHashLSH(threshold=0.8, num_perm=128, num_bands=16)
with open(sys.argv[1]) as source, open(sys.argv[2], "w") as sink:
    for index, line in enumerate(source):
        sample = json.loads(line)
        sig = RMinHash(num_perm=128, seed=1)
        sig.update(shingle_strings("\\n".join(m["content"] for m in sample["messages"])))
        if not lsh.query(sig):
            lsh.insert(index, sig)
            sink.write(line)
"""


def file_step(texts: list[str], truth: set[int], rounds: int) -> None:
    """End to end on a JSONL file, each run a fresh process timed from start to exit: `yulan curate dedup`
    (workers=1 and workers=0, i.e. one per usable CPU) next to rensa's own pipeline (Python shingles, no
    verification), interleaved; then the median ratio of rensa's time to ours."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    print(f"\nend to end on a JSONL file (process start to exit; A/B interleaved, {rounds} rounds)")
    print(f"{'method':<34}{'docs/s':>10}{'precision':>11}{'recall':>9}{'peak RSS MB':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.jsonl"
        source.write_text(
            "".join(
                json.dumps({"id": str(i), "messages": [{"role": "user", "content": t}]}, ensure_ascii=False) + "\n"
                for i, t in enumerate(texts)
            )
        )
        print(f"{len(texts)} samples, {source.stat().st_size / len(texts) / 1024:.2f} KB per sample")
        ours = {
            f"yulan curate dedup, workers={workers}": [
                *(sys.executable, "-m", "yulan.cli", "curate", "dedup", "--input", str(source)),
                *("--output", f"{tmp}/ours{workers}.jsonl", f"workers={workers}"),
            ]
            for workers in (1, 0)
        }
        rensa = [sys.executable, "-c", RENSA_RUN, str(source), f"{tmp}/rensa.jsonl", root]
        commands = {**ours, "rensa pipeline (no verification)": rensa}
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(rounds):
            for name, command in commands.items():
                output = Path(f"{tmp}/rensa.jsonl") if "rensa" in name else Path(command[command.index("--output") + 1])
                start = time.perf_counter()
                done = subprocess.run(["/usr/bin/time", "-f", "%M", *command], capture_output=True, text=True, cwd=root)
                elapsed = time.perf_counter() - start
                if done.returncode:
                    print(f"{name:<34}  failed: {done.stderr[-300:]}")
                    continue
                times[name].append(elapsed)
                peak_mb = int(done.stderr.strip().splitlines()[-1]) / 1024
                kept = {int(json.loads(line)["id"]) for line in output.read_text().splitlines()}
                precision, recall = score(set(range(len(texts))) - kept, truth)
                print(f"{name:<34}{len(texts) / elapsed:>10,.0f}{precision:>11.3f}{recall:>9.3f}{peak_mb:>13.0f}")
    for name in ours:
        ratios = [theirs / mine for mine, theirs in zip(times[name], times["rensa pipeline (no verification)"])]
        if ratios:
            spread = f"rounds {min(ratios):.2f}-{max(ratios):.2f}"
            print(f"{name}: {statistics.median(ratios):.2f}x the speed of rensa's pipeline (median; {spread})")


if __name__ == "__main__":
    main()
