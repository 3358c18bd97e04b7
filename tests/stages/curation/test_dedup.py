"""Near-duplicate removal: what must go and what must stay, against exact Jaccard computed with Python sets."""

import errno
import json
import os
import random

import numpy as np
import pytest

from tests.conftest import run
from yulan.runtime import records
from yulan.runtime.records import SetAside
from yulan.schema.curation import DedupConfig
from yulan.stages.curation import dedup
from yulan.stages.curation.dedup import duplicate_of, sample_text
from yulan.stages.curation.shingles import batch_shingles

CONFIG = DedupConfig()
rng = random.Random(7)
WORDS = [f"term{i}" for i in range(3000)]
HANZI = [chr(0x4E00 + i) for i in range(2000)]


def english(n=200):
    return [rng.choice(WORDS) for _ in range(n)]


def five_grams(tokens):
    return {tuple(tokens[i : i + 5]) for i in range(len(tokens) - 4)}


def exact_jaccard(a, b):
    x, y = five_grams(a), five_grams(b)
    return len(x & y) / len(x | y)


def edit(tokens, changes, vocab=WORDS):
    out = list(tokens)
    for position in rng.sample(range(len(out)), changes):
        out[position] = rng.choice(vocab)
    return out


def test_shingle_hashes_match_python_shingles():
    tokens = english(300)
    hashes, owners = batch_shingles([" ".join(tokens)], 5, 5)
    assert len(np.unique(hashes)) == len(five_grams(tokens)) and set(owners.tolist()) == {0}
    chinese = "".join(rng.choice(HANZI) for _ in range(200))
    hashes, _ = batch_shingles([chinese], 5, 5)
    assert len(np.unique(hashes)) == len({chinese[i : i + 5] for i in range(196)})


# Characters at every edge of the token rule: ASCII letters and digits (and capitals), separators, U+0080..U+00BF
# (not letters), U+00C0 on (letters), CJK ranges and their neighbours, a 4-byte character, long runs.
ALPHABET = list("abzAZ09_ .,-\n\t") + [
    *"\x7f\x80\xa0\xa9\xab\xbf\xc0\xe9\xc9\xff\u0416\u0436\u2014\u3001\u30a2\u33ff",
    *"\u3400\u4e00\u9fff\ua000\uf8ff\uf900\ufaff\ufb00\uff0c\U0001f600",
    "internationalisation",
    "internationalization",
    "x" * 17,
]


def python_shingles(text, word_ngram, char_ngram):
    """The token rule, written plainly: letters are a-z, 0-9 and every character from U+00C0 on; a token is a run
    of letters, or a single letter in a text where CJK characters are more than half of the letters."""
    text = text.lower()
    letter = [("a" <= c <= "z") or ("0" <= c <= "9") or ord(c) >= 0xC0 for c in text]
    cjk = sum(0x3400 <= ord(c) <= 0x9FFF or 0xF900 <= ord(c) <= 0xFAFF for c in text)
    chinese = cjk * 2 > sum(letter)
    if chinese:
        tokens = [c for c, is_letter in zip(text, letter) if is_letter]
    else:
        tokens = "".join(c if is_letter else " " for c, is_letter in zip(text, letter)).split()
    n = char_ngram if chinese else word_ngram
    return {tuple(tokens[i : i + n]) for i in range(max(len(tokens) - n + 1, 1))} if tokens else set()


@pytest.mark.parametrize("ngrams", [(5, 5), (3, 2)])
def test_tokens_follow_the_letter_rule_on_any_text(ngrams):
    """Shingle sets (their sizes and every pair's Jaccard) equal those of Python's tokens, whatever the text holds."""
    text_rng = random.Random(11)
    texts = ["".join(text_rng.choices(ALPHABET, k=text_rng.randint(0, 60))) for _ in range(60)]
    texts += [t[: len(t) // 2] + "Q" + t[len(t) // 2 :] for t in texts[:20]]  # near copies
    texts += ["\u4e2d\u6587" * 10 + "abc def", "ab" * 30, "\ud83d lone surrogate"]
    hashes, owners = batch_shingles(texts, *ngrams)
    sets = dedup.shingle_sets(hashes, owners, len(texts))
    expected = [python_shingles(text, *ngrams) for text in texts]
    for i in range(len(texts)):
        assert len(sets[i]) == max(len(expected[i]), 1), texts[i]
        for j in range(i):
            if expected[i] and expected[j]:
                union = len(expected[i] | expected[j])
                assert dedup.jaccard(sets[i], sets[j]) == pytest.approx(len(expected[i] & expected[j]) / union)


def test_empty_bins_take_the_nearest_full_bin_after_them():
    """One-permutation signatures against a plain loop: per bin the minimum; an empty bin the value of the next full
    bin (cyclically) at distance d, XOR d * 0x9E3779B1; a text without shingles the empty-text value."""
    texts = [" ".join(english(n)) for n in (1, 2, 5, 7, 40, 300)] + ["", "..."]
    hashes, owners = batch_shingles(texts, 5, 5)
    hashing = dedup.Hashing.make(16, 3)
    signature = dedup.one_permutation(hashes, owners, len(texts), hashing)
    with np.errstate(over="ignore"):
        bins = ((hashes * hashing.bin_multiplier >> np.uint64(32)) * np.uint64(16)) >> np.uint64(32)
        values = (hashes * hashing.multiplier + hashing.offset) >> np.uint64(32)
    for text in range(len(texts)):
        minimum = {}
        for b, v in zip(bins[owners == text].tolist(), values[owners == text].tolist()):
            minimum[b] = min(v, minimum.get(b, v))
        expected = []
        for b in range(16):
            distance = next((d for d in range(16) if (b + d) % 16 in minimum), None)
            if distance is None:
                expected.append(int(dedup.EMPTY_TEXT))
            else:
                expected.append(minimum[(b + distance) % 16] ^ ((distance * 0x9E3779B1) & 0xFFFFFFFF))
        assert signature[text].tolist() == expected, texts[text]


def test_decisions_follow_exact_jaccard():
    originals = [english() for _ in range(40)]
    texts, expected = [], []
    for original in originals:
        texts.append(" ".join(original))
        expected.append(False)
        for changes in (1, 3, 6, 20, 40):
            variant = edit(original, changes)
            similarity = exact_jaccard(original, variant)
            if 0.75 < similarity < 0.85:
                continue  # too close to the threshold for a crisp expectation
            texts.append(" ".join(variant))
            expected.append(similarity >= CONFIG.threshold)
    roots = duplicate_of(texts, CONFIG)
    removed = [root != index for index, root in enumerate(roots)]
    assert removed == expected


def test_exact_duplicates_keep_the_earliest():
    base = " ".join(english())
    texts = ["unrelated " + " ".join(english()), base, base.upper(), "  " + base.replace(" ", "   ") + " "]
    assert duplicate_of(texts, CONFIG).tolist() == [0, 1, 1, 1]


def test_hard_negative_with_shared_prefix_is_kept():
    original = english(200)
    negative = original[:100] + english(100)
    assert exact_jaccard(original, negative) < 0.6
    assert duplicate_of([" ".join(original), " ".join(negative)], CONFIG).tolist() == [0, 1]


def test_chinese_uses_character_ngrams():
    original = [rng.choice(HANZI) for _ in range(300)]
    near = edit(original, 2, HANZI)
    different = [rng.choice(HANZI) for _ in range(300)]
    texts = ["".join(original), "".join(near), "".join(different)]
    assert duplicate_of(texts, CONFIG).tolist() == [0, 0, 2]


def test_results_do_not_depend_on_batch_boundaries(monkeypatch):
    originals = [english(rng.randint(3, 300)) for _ in range(30)]
    texts = [" ".join(t) for t in originals] + [" ".join(edit(t, 1)) for t in originals if len(t) > 100] + ["", "a b"]
    whole = duplicate_of(texts, CONFIG)
    monkeypatch.setattr(dedup, "BATCH_DOCS", 7)
    assert duplicate_of(texts, CONFIG).tolist() == whole.tolist()


def test_candidate_pairs_follow_the_bucket_rule():
    """Per band bucket: every two of its first MAX_GROUP_PAIRS members, and each later member with the first."""
    rule_rng = np.random.default_rng(3)
    for count, buckets in ((1, 1), (50, 3), (400, 4), (900, 300)):
        bands = [rule_rng.integers(0, buckets, count).astype(np.uint64) for _ in range(3)]
        expected = set()
        for keys in bands:
            for key in set(keys.tolist()):
                members = np.flatnonzero(keys == key).tolist()
                head = members[: dedup.MAX_GROUP_PAIRS]
                expected |= {(a, b) for n, a in enumerate(head) for b in head[n + 1 :]}
                expected |= {(members[0], later) for later in members[dedup.MAX_GROUP_PAIRS :]}
        found = dedup.candidate_pairs(iter(bands))
        assert [tuple(p) for p in found.tolist()] == sorted(expected)


def test_clusters_map_each_document_to_the_earliest_of_its_component():
    graph_rng = np.random.default_rng(5)
    for count, edges in ((1, 0), (6, 0), (40, 25), (300, 280), (2000, 1500)):
        pairs = np.sort(graph_rng.integers(0, count, (edges, 2)), axis=1)
        chain = np.stack([np.arange(count - 1, 0, -1) - 1, np.arange(count - 1, 0, -1)], axis=1)  # deep paths too
        pairs = np.concatenate([pairs, chain[: count // 3]]).astype(np.int64)
        neighbours = {i: set() for i in range(count)}
        for i, j in pairs.tolist():
            neighbours[i].add(j), neighbours[j].add(i)
        expected = np.arange(count)
        for start in range(count):
            if expected[start] == start:  # the earliest document of a component not yet seen
                pending = [start]
                while pending:
                    for other in neighbours[pending.pop()]:
                        if expected[other] == other and other != start:
                            expected[other] = start
                            pending.append(other)
        assert dedup.clusters(count, pairs).tolist() == expected.tolist()


def test_shingle_sets_and_jaccard_equal_python_sets():
    texts = [" ".join(english(rng.randint(1, 60))) for _ in range(40)] + ["", "中文" * 9, "a"]
    hashes, owners = batch_shingles(texts, 5, 5)
    sets = dedup.shingle_sets(hashes, owners, len(texts))
    python_sets = [set((hashes[owners == i] & dedup.VALUE_MASK).tolist()) or {"empty"} for i in range(len(texts))]
    for i in range(len(texts)):
        assert sets[i].tolist() == sorted(python_sets[i]) or python_sets[i] == {"empty"}
        for j in range(len(texts)):
            x, y = python_sets[i], python_sets[j]
            assert dedup.jaccard(sets[i], sets[j]) == pytest.approx(len(x & y) / len(x | y))


def test_short_and_empty_texts():
    roots = duplicate_of(["", "", "hi there", "hi there", "x"], CONFIG)
    assert roots.tolist() == [0, 0, 2, 2, 4]


def test_shared_system_prompt_is_ignored():
    system = {"role": "system", "content": "You are the assistant of a support desk. " + " ".join(english(300))}
    first = {
        "messages": [system, {"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "Apple."}]
    }
    second = {
        "messages": [system, {"role": "user", "content": "Name a river."}, {"role": "assistant", "content": "Nile."}]
    }
    texts = [sample_text(s, strip_system=True) for s in (first, second)]
    assert duplicate_of(texts, CONFIG).tolist() == [0, 1]
    with_prompt = [sample_text(s, strip_system=False) for s in (first, second)]
    assert duplicate_of(with_prompt, CONFIG).tolist() == [0, 0]  # why the prompt must be stripped


def write_samples(path, samples):
    path.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))


def curate_dedup(source, target, *settings):
    return run("-m", "yulan.cli", "curate", "dedup", "--input", str(source), "--output", str(target), *settings)


def test_curate_dedup_step_writes_kept_dropped_and_report(tmp_path):
    body = " ".join(english())
    samples = [
        {
            "id": "a",
            "category": "general_en",
            "messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": body}],
        },
        {
            "id": "b",
            "category": "general_en",
            "messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": body}],
        },
        {
            "id": "c",
            "category": "math",
            "messages": [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}],
        },
    ]
    source = tmp_path / "in.jsonl"
    write_samples(source, samples)
    result = curate_dedup(source, tmp_path / "out.jsonl", "threshold=0.9")
    assert result.returncode == 0, result.stderr
    kept = [json.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    dropped = [json.loads(line) for line in (tmp_path / "out.dropped.jsonl").read_text().splitlines()]
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert kept == ["a", "c"]
    assert dropped[0]["id"] == "b" and dropped[0]["dropped"] == {
        "step": "dedup",
        "reason": "exact_duplicate",
        "duplicate_of": "a",
    }
    assert report["by_category"]["general_en"] == {"in": 2, "out": 1} and report["dropped"] == {"exact_duplicate": 1}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["threshold=1.5"], "threshold = 1.5"),
        (["bands=40"], "exceeds num_permutations"),
        (["treshold=0.9"], "did you mean 'threshold'"),
        (["threshold"], "settings are key=value"),
    ],
)
def test_curate_rejects_bad_settings_and_writes_nothing(tmp_path, args, message):
    source = tmp_path / "in.jsonl"
    write_samples(source, [{"id": "a", "messages": [{"role": "user", "content": "hi"}]}])
    result = curate_dedup(source, tmp_path / "o.jsonl", *args)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_curate_never_overwrites_its_input(tmp_path):
    source = tmp_path / "in.jsonl"
    write_samples(source, [{"id": "a", "messages": []}])
    result = curate_dedup(source, source)
    assert result.returncode == 1 and "never overwritten" in result.stderr
    assert json.loads(source.read_text())["id"] == "a"


@pytest.mark.parametrize("in_kernel", [True, False], ids=["copy_file_range", "through_memory"])
def test_kept_lines_are_copied_byte_for_byte(tmp_path, monkeypatch, in_kernel):
    """Kept lines come out as they went in (key order, spacing, escapes, CRLF); the blank line, the bad record set
    aside and the duplicate between them stay out; the last line, without a newline, gets one."""
    if not in_kernel:  # as on another OS, or between file systems the kernel does not copy across

        def refuse(*args):
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        monkeypatch.setattr(os, "copy_file_range", refuse)
        monkeypatch.setattr(records, "COPY_PIECE", 7)
    first, second, third = (" ".join(english()).encode() for _ in range(3))
    lines = [
        b'{"messages": [{"role": "user", "content": "' + first + b'"}], "id": "a"}\n',
        b"\n",
        b'{ "id" : "b", "messages":[{"role":"user","content":"caf\\u00e9 ' + second + b'"}]}\r\n',
        b'{"id": "c", "messages": [{"role": "user", "content": "' + first + b'"}]}\n',
        b'{"id": "d", "messages": [{"role": "user", "content": "' + third + b'"}]}\n',
        b"not json\n",
        b'{"id": "e", "messages": [{"role": "user", "content": "' + second[::-1] + b'"}]}',
    ]
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(b"".join(lines))
    report = dedup.run(source, target, DedupConfig(on_bad_record="skip"))
    assert target.read_bytes() == lines[0] + lines[2] + lines[4] + lines[6] + b"\n"
    assert report["kept"] == 4 and report["bad_records"] == 1 and report["dropped"] == {"exact_duplicate": 1}
    assert json.loads((tmp_path / "out.dropped.jsonl").read_text())["id"] == "c"


@pytest.mark.parametrize("chunk_bytes", [1, 150, 1 << 20])  # a range per line, a few lines, the whole file
def test_line_numbers_places_and_reasons_do_not_depend_on_the_ranges(tmp_path, chunk_bytes):
    text = " ".join(english(30))
    lines = [
        b"\n",
        b'{"id": "a", "messages": [{"role": "user", "content": "' + text.encode() + b'"}]}\r\n',
        b"   \n",
        b'{"id": "b", "messages": [\n',  # malformed, not truncated: the line ends
        b'{"id": "c", "messages": [{"role": "user", "content": "' + text.encode() + b'"}]}\n',
        b"\n\n",
        b'["a list"]\n',
        b'{"id": "d", "messages": [{"role": "user", "content": "cut',  # the file ends inside it
    ]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(lines))
    set_aside = SetAside()
    scan = dedup.file_duplicates(source, DedupConfig(), 0, tmp_path / "work", chunk_bytes, set_aside=set_aside)
    found = {row["line"]: row["reason"] for row in set_aside.rows.values()}
    assert sorted(found) == [4, 8, 9]
    assert "not valid JSON" in found[4] and "truncated" not in found[4]
    assert "a JSON list" in found[8] and "truncated" in found[9]
    data = source.read_bytes()
    assert [data[a:b] for a, b in zip(scan.offsets.tolist(), scan.ends.tolist())] == [lines[1], lines[4]]
    assert scan.duplicates.roots.tolist() == [0, 0]


def test_samples_with_integers_beyond_64_bits_are_verified_and_dropped_in_full(tmp_path):
    """JSON allows any integer; the near-duplicate check and the dropped list read such lines back too."""
    original = english(200)
    samples = [
        {"id": "a", "seed": 2**70, "messages": [{"role": "user", "content": " ".join(original)}]},
        {"id": "b", "seed": 2**70 + 1, "messages": [{"role": "user", "content": " ".join(edit(original, 1))}]},
    ]
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_samples(source, samples)
    result = curate_dedup(source, target)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [json.loads(line)["seed"] for line in target.read_text().splitlines()] == [2**70]
    dropped = json.loads((tmp_path / "out.dropped.jsonl").read_text())
    assert dropped["seed"] == 2**70 + 1 and dropped["dropped"]["duplicate_of"] == "a"


def test_parquet_input_is_read_in_batches(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    samples = [
        {
            "id": str(i),
            "category": "general_en",
            "messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": f"Answer number {i % 3}."}],
        }
        for i in range(7)
    ]
    pq.write_table(pa.Table.from_pylist(samples), tmp_path / "in.parquet", row_group_size=2)
    result = curate_dedup(tmp_path / "in.parquet", tmp_path / "out.jsonl")
    assert result.returncode == 0, result.stderr
    kept = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [k["id"] for k in kept] == ["0", "1", "2"] and kept[0]["messages"] == samples[0]["messages"]


def test_the_file_step_gives_the_same_result_with_several_processes(tmp_path):
    rng = random.Random(3)
    words = [f"word{i}" for i in range(400)]
    base = [" ".join(rng.choice(words) for _ in range(60)) for _ in range(40)]
    texts = base + [b.replace(b.split()[5], "changed", 1) for b in base[:15]] + base[:5]
    rng.shuffle(texts)
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(
            json.dumps({"id": str(i), "messages": [{"role": "user", "content": t}]}) + "\n" for i, t in enumerate(texts)
        )
    )
    outputs = {}
    for workers in (1, 2):
        config = DedupConfig(workers=workers)
        out = tmp_path / f"out{workers}.jsonl"
        report = dedup.run(source, out, config)
        outputs[workers] = (out.read_text(), (tmp_path / f"out{workers}.dropped.jsonl").read_text(), report)
        assert not list(tmp_path.glob(".dedup-*"))  # the memory maps are removed
    assert outputs[1] == outputs[2]
    assert sum(outputs[1][2]["dropped"].values()) == 20  # 5 exact copies and 15 one-word edits
    # ranges of a few lines give the same decisions as one range, and as the in-memory path
    chunked = dedup.file_duplicates(
        source, DedupConfig(workers=1), 0, tmp_path / "work", chunk_bytes=700
    ).duplicates.roots
    assert chunked.tolist() == duplicate_of(texts, DedupConfig()).tolist()
