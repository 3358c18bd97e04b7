"""Synthetic-data jobs of the report (§3) that feed curation. Each asks its model through one OpenAI-compatible
client (`endpoint`, or vLLM started in the job), writes what it kept as chat samples, what it dropped with the
reason, and a report of counts.

math: the teacher answers each seed question several times; a response is kept only when its final answer
  matches the dataset's ground truth, the first match per question. Seeds: local JSONL or Parquet with
  `problem`/`question` and `expected_answer`/`answer` (OpenMathInstruct-2's names come first).
science: the generator extracts question-answer pairs from scientific texts; each pair is then classified into a
  field, and pairs outside `fields` are dropped.
chinese_commonsense: documents relevant to the commonsense keywords (character-bigram TF-IDF cosine and keyword
  matching) each give several question-answer pairs; each pair gets a CMMLU category, an LLM quality score
  (low scores dropped), a check of entity questions against the document's entry (contradictions dropped), and
  questions that are the same after normalisation share the first answer given.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from yulan.rewards.answers import is_correct, reference_of
from yulan.runtime.http import JsonClient, ServerError, chat, openai_client
from yulan.runtime.progress import Progress
from yulan.runtime.records import iter_records, write_jsonl, write_text
from yulan.schema.curation import ChineseCommonsenseSynthesis, MathSynthesis, ScienceSynthesis

log = logging.getLogger(__name__)

MATH_PROMPT = "{question}\nPlease reason step by step, and put your final answer within \\boxed{{}}."
SCIENCE_PROMPT = """Read the scientific text below and write up to {count} question-answer pairs that test \
understanding of its content. Each question must make sense without the text; each answer must be correct, \
complete and explain why. Reply with only a JSON list of objects with the keys "question" and "answer".

Text:
{text}"""
FIELD_PROMPT = """Which scientific field does this question belong to? Choose one of: {fields}, other. Reply \
with the field name only.

Question: {question}
Answer: {answer}"""
ZH_QA_PROMPT = """阅读下面的百科资料，写出 {count} 个考查常识的问答对。问题要能脱离资料独立理解，答案要准确、完整。\
只回复一个 JSON 列表，每个元素是包含 "question" 和 "answer" 两个键的对象。

资料（{title}）：
{text}"""
CMMLU_CATEGORIES = ("STEM", "Humanities", "Social Science", "Other", "China specific")
CATEGORY_PROMPT = """Classify this Chinese question into one CMMLU category: {categories}. Reply with the \
category name only.

问题：{question}"""
QUALITY_PROMPT = """请为下面回答的质量打分（1–5 分，5 分最好），考虑准确性、完整性和表达。只回复一个整数。

问题：{question}
回答：{answer}"""
ENTITY_PROMPT = """下面是关于「{title}」的百科条目，以及一个关于它的问答。回答与条目内容一致吗？只回复“是”或“否”。

条目：{text}

问题：{question}
回答：{answer}"""


def ask(client: JsonClient, model: str, prompt: str, config, n: int = 1) -> list[str]:
    """Replies to one prompt (the client retries failed requests); raises ServerError."""
    return chat(client, model, prompt, config.temperature, config.max_new_tokens, n=n)


def parse_pairs(reply: str) -> list[dict]:
    """Question-answer pairs from a reply that should be a JSON list (code fences and chatter around it are
    tolerated); pairs missing either text are skipped."""
    start, end = reply.find("["), reply.rfind("]")
    if start < 0 or end <= start:
        return []
    try:
        items = json.loads(reply[start : end + 1])
    except ValueError:
        return []
    pairs = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and str(item.get("question", "")).strip() and str(item.get("answer", "")).strip():
            pairs.append({"question": str(item["question"]).strip(), "answer": str(item["answer"]).strip()})
    return pairs


def first_label(reply: str, labels: tuple[str, ...]) -> str | None:
    """The label a classifier reply names first (case-insensitive), or None."""
    text = reply.lower()
    found = [(text.find(label.lower()), label) for label in labels if label.lower() in text]
    return min(found)[1] if found else None


def documents(paths: tuple[str, ...], limit: int | None, job: str) -> list[dict]:
    if not paths:
        raise ValueError(
            f"curation.sources.{job}.documents is empty: list local JSONL or Parquet files with a `text` field"
        )
    out = []
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"curation.sources.{job}.documents: {path!r} is not a local file")
        for record in iter_records(path):
            if str(record.get("text", "")).strip():
                out.append(record)
            if limit and len(out) >= limit:
                return out
    return out


def chat_sample(job: str, index: int, category: str, question: str, reply: str, **metadata) -> dict:
    return {
        "id": f"synthesis-{job}-{index}",
        "category": category,
        "source": f"synthesis/{job}",
        **metadata,
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": reply}],
    }


def write_outputs(job: str, output_path: Path, kept: list[dict], dropped: list[dict], counts: dict) -> dict:
    """kept samples, dropped records (each with its `dropped` reason) and the report, beside each other."""
    write_jsonl(output_path, kept)
    write_jsonl(output_path.with_name(output_path.stem + ".dropped.jsonl"), dropped)
    counts = {**counts, "kept": len(kept), "dropped": dict(Counter(d["dropped"]["reason"] for d in dropped))}
    write_text(
        output_path.with_name(output_path.stem + ".report.json"), json.dumps(counts, indent=2, ensure_ascii=False)
    )
    log.info(f"[curation] synthesis/{job}: {json.dumps(counts, ensure_ascii=False)}")
    return counts


def drop(record: dict, job: str, reason: str, detail: str = "") -> dict:
    return {**record, "dropped": {"step": f"synthesis/{job}", "reason": reason, "detail": detail}}


def parallel(function: Callable, items: list, workers: int, job: str) -> list:
    results = []
    with ThreadPoolExecutor(workers) as pool, Progress(f"synthesis/{job}", total=len(items), unit="seeds") as progress:
        for result in pool.map(function, items):
            results.append(result)
            progress.advance()
    return results


# -- math -------------------------------------------------------------------------------------------------------
def seed_questions(path: str, limit: int | None) -> list[dict]:
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"seed dataset {path!r} is not a local file: download it (JSONL or Parquet) and set "
            "curation.sources.math.seed_dataset to its path"
        )
    records = []
    for record in iter_records(path):
        question = record.get("problem") or record.get("question")
        answer = record.get("expected_answer") or record.get("answer")
        if question and answer is not None:
            records.append({"question": question, "answer": str(answer), "source": record.get("problem_source")})
        if limit and len(records) >= limit:
            break
    return records


def distil(record: dict, config: MathSynthesis, client: JsonClient) -> tuple[str | None, str]:
    """(the first teacher response matching the ground truth or None, why not)."""
    try:
        replies = ask(
            client,
            config.teacher,
            MATH_PROMPT.format(question=record["question"]),
            config,
            n=config.samples_per_question,
        )
    except ServerError as error:
        return None, f"teacher_failed: {error}"
    reference = reference_of(record["answer"])
    for reply in replies:
        if not config.match_ground_truth or is_correct(reply, reference):
            return reply, ""
    return None, "no_response_matches_ground_truth"


def run_math(config: MathSynthesis, output_path: Path, endpoint: str) -> dict:
    records = seed_questions(config.seed_dataset, config.max_seeds)
    with openai_client(endpoint, config, "curation.sources.math") as client:
        results = parallel(lambda r: distil(r, config, client), records, config.concurrency, "math")
    kept, dropped = [], []
    for index, (record, (response, why)) in enumerate(zip(records, results)):
        if response is None:
            dropped.append(drop(record, "math", why.split(":")[0], why))
        else:
            kept.append(
                chat_sample(
                    "math", index, "math", record["question"], response, teacher=config.teacher, answer=record["answer"]
                )
            )
    return write_outputs("math", output_path, kept, dropped, {"questions": len(records)})


# -- science ----------------------------------------------------------------------------------------------------
def science_pairs(document: dict, config: ScienceSynthesis, client: JsonClient) -> tuple[list[dict], str]:
    """(pairs with their field, or [] and why)."""
    try:
        [reply] = ask(
            client,
            config.generator,
            SCIENCE_PROMPT.format(count=config.pairs_per_document, text=document["text"]),
            config,
        )
    except ServerError as error:
        return [], f"generator_failed: {error}"
    pairs = parse_pairs(reply)[: config.pairs_per_document]
    if not pairs:
        return [], "no_pairs_in_reply"
    for pair in pairs:
        pair["field"] = None
        if config.reclassify_with_topic_classifier:
            try:
                [label] = ask(
                    client,
                    config.topic_classifier,
                    FIELD_PROMPT.format(fields=", ".join(config.fields), **pair),
                    config.model_copy(update={"temperature": 0.0, "max_new_tokens": 16}),
                )
                pair["field"] = first_label(label, config.fields)
            except ServerError:
                pair["field"] = None
    return pairs, ""


def run_science(config: ScienceSynthesis, output_path: Path, endpoint: str) -> dict:
    docs = documents(config.documents, config.max_seeds, "science")
    with openai_client(endpoint, config, "curation.sources.science") as client:
        results = parallel(lambda d: science_pairs(d, config, client), docs, config.concurrency, "science")
    kept, dropped = [], []
    for doc_index, (document, (pairs, why)) in enumerate(zip(docs, results)):
        if why:
            dropped.append(drop({"source_text": document["text"][:200]}, "science", why.split(":")[0], why))
        for pair in pairs:
            if config.reclassify_with_topic_classifier and pair["field"] not in config.fields:
                dropped.append(drop(pair, "science", "outside_fields", str(pair["field"])))
                continue
            kept.append(
                chat_sample(
                    "science",
                    len(kept),
                    "general_en",
                    pair["question"],
                    pair["answer"],
                    field=pair["field"],
                    corpus=document.get("source"),
                    document=doc_index,
                )
            )
    return write_outputs("science", output_path, kept, dropped, {"documents": len(docs)})


# -- Chinese commonsense ----------------------------------------------------------------------------------------
def bigrams(text: str) -> list[str]:
    """Character bigrams of the CJK and alphanumeric runs (Chinese has no spaces to split words on)."""
    return [
        run[i : i + 2] for run in re.findall(r"[\w\u4e00-\u9fff]+", text.lower()) for i in range(max(1, len(run) - 1))
    ]


def tfidf_relevance(texts: list[str], keywords: tuple[str, ...]) -> list[float]:
    """Cosine between each document's TF-IDF vector (sublinear tf, smoothed idf over these documents) and the
    keywords' vector in the same space."""
    counts = [Counter(bigrams(text)) for text in texts]
    frequency = Counter(term for count in counts for term in count)
    idf = {term: math.log((1 + len(texts)) / (1 + df)) + 1 for term, df in frequency.items()}

    def vector(count: Counter) -> dict[str, float]:
        weights = {t: (1 + math.log(c)) * idf.get(t, math.log(1 + len(texts)) + 1) for t, c in count.items()}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        return {t: w / norm for t, w in weights.items()}

    query = vector(Counter(term for keyword in keywords for term in bigrams(keyword)))
    return [sum(w * query.get(t, 0.0) for t, w in vector(count).items()) for count in counts]


def question_key(question: str) -> str:
    """Questions that differ only in punctuation, spacing or polite/question particles share a key."""
    text = re.sub(r"[\s\W_]+", "", question.lower())
    return re.sub(r"^(请问|请|你知道)|(吗|呢|呀|吧)$", "", text)


def zh_pairs(document: dict, config: ChineseCommonsenseSynthesis, client: JsonClient) -> tuple[list[dict], str]:
    title = str(document.get("title") or "")
    try:
        [reply] = ask(
            client,
            config.generator,
            ZH_QA_PROMPT.format(count=config.qa_pairs_per_document, title=title or "无标题", text=document["text"]),
            config,
        )
    except ServerError as error:
        return [], f"generator_failed: {error}"
    pairs = parse_pairs(reply)[: config.qa_pairs_per_document]
    if not pairs:
        return [], "no_pairs_in_reply"
    short = config.model_copy(update={"temperature": 0.0, "max_new_tokens": 16})
    for pair in pairs:
        try:
            [label] = ask(
                client, config.generator, CATEGORY_PROMPT.format(categories=", ".join(CMMLU_CATEGORIES), **pair), short
            )
            pair["cmmlu_category"] = first_label(label, CMMLU_CATEGORIES)
            if config.llm_quality_check:
                [score] = ask(client, config.generator, QUALITY_PROMPT.format(**pair), short)
                digits = re.findall(r"[1-5]", score)
                pair["quality"] = int(digits[0]) if digits else None
            if config.entity_cross_reference and title and title in pair["question"]:
                [verdict] = ask(
                    client, config.generator, ENTITY_PROMPT.format(title=title, text=document["text"], **pair), short
                )
                pair["entry_consistent"] = not verdict.strip().startswith(("否", "不", "no", "No"))
        except ServerError as error:
            pair["check_failed"] = str(error)
    return pairs, ""


def run_chinese_commonsense(config: ChineseCommonsenseSynthesis, output_path: Path, endpoint: str) -> dict:
    docs = documents(config.documents, config.max_seeds, "chinese_commonsense")
    relevance = tfidf_relevance([d["text"] for d in docs], config.keywords)
    relevant, dropped = [], []
    for document, score in zip(docs, relevance):
        text = f"{document.get('title', '')}{document['text']}"
        if "tfidf" in config.relevance_filters and score < config.min_tfidf_score:
            dropped.append(
                drop({"title": document.get("title"), "tfidf": round(score, 4)}, "chinese_commonsense", "low_tfidf")
            )
        elif "keywords" in config.relevance_filters and not any(k in text for k in config.keywords):
            dropped.append(drop({"title": document.get("title")}, "chinese_commonsense", "no_keyword"))
        else:
            relevant.append(document)
    with openai_client(endpoint, config, "curation.sources.chinese_commonsense") as client:
        results = parallel(lambda d: zh_pairs(d, config, client), relevant, config.concurrency, "chinese_commonsense")
    kept, answers = [], {}
    for document, (pairs, why) in zip(relevant, results):
        if why:
            dropped.append(drop({"title": document.get("title")}, "chinese_commonsense", why.split(":")[0], why))
        for pair in pairs:
            if "check_failed" in pair:
                dropped.append(drop(pair, "chinese_commonsense", "check_failed", pair["check_failed"]))
            elif config.llm_quality_check and (pair.get("quality") or 0) < config.min_quality:
                dropped.append(drop(pair, "chinese_commonsense", "low_quality", str(pair.get("quality"))))
            elif pair.get("entry_consistent") is False:
                dropped.append(drop(pair, "chinese_commonsense", "contradicts_entry", str(document.get("title"))))
            else:
                key = question_key(pair["question"])
                mapped = config.consistent_answer_mapping and key in answers
                answer = answers[key] if mapped else pair["answer"]
                answers.setdefault(key, pair["answer"])
                kept.append(
                    chat_sample(
                        "chinese_commonsense",
                        len(kept),
                        "general_zh",
                        pair["question"],
                        answer,
                        entity=document.get("title"),
                        cmmlu_category=pair["cmmlu_category"],
                        quality=pair.get("quality"),
                        answer_mapped=mapped,
                    )
                )
    return write_outputs(
        "chinese_commonsense", output_path, kept, dropped, {"documents": len(docs), "relevant": len(relevant)}
    )


RUNNERS = {
    "math": (run_math, "teacher"),
    "science": (run_science, "generator"),
    "chinese_commonsense": (run_chinese_commonsense, "generator"),
}
