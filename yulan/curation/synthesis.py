"""Synthetic-data jobs of the report (§3) that feed curation.

Math distillation: the teacher answers each seed question several times (any OpenAI-compatible server); a
response is kept only when its final answer matches the dataset's ground truth, the first match per question.
Seed files are local JSONL or Parquet with `problem`/`question` and `expected_answer`/`answer` fields
(OpenMathInstruct-2's names come first). The science and Chinese-commonsense jobs are not built.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from schema.curation import MathSynthesis
from yulan.answers import is_correct, reference_of
from yulan.curation.client import ServerError, chat
from yulan.curation.io import iter_records

MATH_PROMPT = "{question}\nPlease reason step by step, and put your final answer within \\boxed{{}}."


def seed_questions(path: str, limit: int | None) -> list[dict]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"seed dataset {path!r} is not a local file: download it (JSONL or Parquet) and set "
                                "curation.sources.math.seed_dataset to its path")
    records = []
    for record in iter_records(path):
        question = record.get("problem") or record.get("question")
        answer = record.get("expected_answer") or record.get("answer")
        if question and answer is not None:
            records.append({"question": question, "answer": str(answer), "source": record.get("problem_source")})
        if limit and len(records) >= limit:
            break
    return records


def distil(record: dict, config: MathSynthesis, retries: int = 3) -> tuple[str | None, str]:
    """(the first teacher response matching the ground truth or None, why not)."""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(0.2 * 2 ** (attempt - 1), 5.0))
        try:
            replies = chat(config.endpoint or "", config.teacher, MATH_PROMPT.format(question=record["question"]),
                           config.temperature, config.max_new_tokens, n=config.samples_per_question)
            break
        except ServerError as error:
            failure = str(error)
    else:
        return None, f"teacher_failed: {failure}"
    reference = reference_of(record["answer"])
    for reply in replies:
        if not config.match_ground_truth or is_correct(reply, reference):
            return reply, ""
    return None, "no_response_matches_ground_truth"


def run_math(config: MathSynthesis, output_path: Path, workers: int = 16) -> dict:
    records = seed_questions(config.seed_dataset, config.max_questions)
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda r: distil(r, config), records))
    output_path.parent.mkdir(parents=True, exist_ok=True)
    report = {"questions": len(records), "kept": 0, "dropped": {}}
    dropped_path = output_path.with_name(output_path.stem + ".dropped.jsonl")
    with output_path.open("w") as kept, dropped_path.open("w") as dropped:
        for index, (record, (response, why)) in enumerate(zip(records, results)):
            if response is None:
                reason = why.split(":")[0]
                report["dropped"][reason] = report["dropped"].get(reason, 0) + 1
                dropped.write(json.dumps({**record, "dropped": {"step": "synthesis/math", "reason": reason, "detail": why}},
                                         ensure_ascii=False) + "\n")
                continue
            sample = {"id": f"synthesis-math-{index}", "category": "math", "source": "synthesis/math",
                      "teacher": config.teacher, "answer": record["answer"],
                      "messages": [{"role": "user", "content": record["question"]},
                                   {"role": "assistant", "content": response}]}
            kept.write(json.dumps(sample, ensure_ascii=False) + "\n")
            report["kept"] += 1
    output_path.with_name(output_path.stem + ".report.json").write_text(json.dumps(report, indent=2))
    print(f"[curation] synthesis/math: {report['questions']} questions, {report['kept']} distilled", file=sys.stderr)
    return report
