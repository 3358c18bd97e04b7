"""LLM-as-a-judge scoring (report §3): each sample is scored 1–5 on instruction following, informativeness and
truthfulness by a judge model behind an OpenAI-compatible server (backend=openai) or vLLM started in the job
(backend=vllm, only when something is not cached yet); samples below the
configured percentile of the average score are dropped.

Judge replies are parsed leniently (a JSON object anywhere in the reply, or "dimension: N" lines) and checked
(every dimension, an integer in range); a failed call or an unusable reply is retried, and a sample the judge
never scores is kept, marked and counted rather than silently dropped. Judgements are cached by a hash of the
judge settings and the sample's content (`<output>.cache.jsonl`), so a rerun costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from schema.curation import JudgeConfig
from yulan.curation.client import ServerError, chat
from yulan.curation.server import endpoint_for, visible_gpus

PROMPT = """You are grading one response of an AI assistant. Score it on each dimension from {low} to {high} \
({high} is best):
{dimensions}

Conversation:
{conversation}

Reply with only a JSON object mapping each dimension to an integer score, for example {example}."""


class JudgeError(Exception):
    pass


def judge_prompt(sample: dict, config: JudgeConfig) -> str:
    conversation = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in sample["messages"] if m["role"] != "system")
    example = json.dumps({d: config.score_max for d in config.dimensions})
    dimensions = "\n".join(f"- {d}" for d in config.dimensions)
    return PROMPT.format(low=config.score_min, high=config.score_max, dimensions=dimensions,
                         conversation=conversation, example=example)


def parse(reply: str, config: JudgeConfig) -> dict[str, int]:
    """Scores per dimension from a judge reply; raises JudgeError when any is missing or out of range."""
    scores: dict[str, object] = {}
    for candidate in re.findall(r"\{[^{}]*\}", reply):
        try:
            scores = {str(k).strip().lower().replace(" ", "_"): v for k, v in json.loads(candidate).items()}
            break
        except (ValueError, AttributeError):
            continue
    if not scores:
        for dimension in config.dimensions:
            pattern = re.escape(dimension).replace("_", "[ _-]?")
            match = re.search(rf"{pattern}\W{{0,5}}(\d+(?:\.\d+)?)", reply, re.IGNORECASE)
            if match:
                scores[dimension] = match.group(1)
    out = {}
    for dimension in config.dimensions:
        value = scores.get(dimension)
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise JudgeError(f"no score for '{dimension}' in {reply[:200]!r}") from None
        if not number.is_integer() or not config.score_min <= number <= config.score_max:
            raise JudgeError(f"'{dimension}' = {value!r} is not an integer in [{config.score_min}, {config.score_max}]")
        out[dimension] = int(number)
    return out


def judge_one(sample: dict, config: JudgeConfig) -> dict:
    """{'scores': {...}, 'mean': x} or {'error': '...'} after the configured retries."""
    prompt = judge_prompt(sample, config)
    error = None
    for attempt in range(config.max_retries + 1):
        if attempt:
            time.sleep(min(0.2 * 2 ** (attempt - 1), 5.0))
        try:
            [reply] = chat(config.endpoint or "", config.model, prompt, config.temperature, config.max_new_tokens)
            scores = parse(reply, config)
            return {"scores": scores, "mean": sum(scores.values()) / len(scores)}
        except (JudgeError, ServerError, ValueError) as failure:
            error = str(failure)
    return {"error": error}


def content_key(sample: dict, config: JudgeConfig) -> str:
    settings = config.model_dump(include={"model", "dimensions", "score_min", "score_max", "temperature", "max_new_tokens"})
    return hashlib.sha256(json.dumps([settings, judge_prompt(sample, config)], sort_keys=True).encode()).hexdigest()


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def run(input_path: Path, output_path: Path, config: JudgeConfig, seed: int = 0, workers: int = 16, ask: bool = True) -> dict:
    """`ask=False`: judge nothing new (merging shards already judged); what the cache lacks counts as unjudged."""
    samples = [json.loads(line) for line in input_path.open() if line.strip()]
    cache_path = output_path.with_name(output_path.stem + ".cache.jsonl")
    cache = {}
    if config.cache and cache_path.exists():
        cache = {r["key"]: r["judgement"] for r in map(json.loads, cache_path.read_text().splitlines()) if r}
    keys = [content_key(s, config) for s in samples]
    todo = sorted({k: s for k, s in zip(keys, samples) if k not in cache}.items())
    output_path.parent.mkdir(parents=True, exist_ok=True)
    judged = []
    if todo and not ask:
        judged = [{"error": "not judged by its shard's task"} for _ in todo]
    elif todo:  # a fully cached rerun starts no server
        endpoint = config.endpoint if config.backend == "openai" else None
        with endpoint_for(config.model, endpoint, visible_gpus(), output_path.parent) as url, ThreadPoolExecutor(workers) as pool:
            served = config.model_copy(update={"endpoint": url})
            judged = list(pool.map(lambda item: judge_one(item[1], served), todo))
    if config.cache:
        with cache_path.open("a") as sink:
            for (key, _), judgement in zip(todo, judged):
                if "error" not in judgement:  # failures are asked again next time
                    sink.write(json.dumps({"key": key, "judgement": judgement}) + "\n")
    cache |= {key: judgement for (key, _), judgement in zip(todo, judged)}
    means = [cache[k]["mean"] for k in keys if "mean" in cache[k]]
    threshold = percentile(means, config.discard_lower_percentile) if means else None
    report = {"input": len(samples), "kept": 0, "dropped": {}, "judge_calls": len(todo), "cached": len(samples) - len(todo),
              "unjudged": 0, "threshold": threshold}
    dropped_path = output_path.with_name(output_path.stem + ".dropped.jsonl")
    with output_path.open("w") as kept, dropped_path.open("w") as dropped:
        for key, sample in zip(keys, samples):
            judgement = cache[key]
            record = {**sample, "judge": judgement}
            if "mean" in judgement and judgement["mean"] < threshold:
                record["dropped"] = {"step": "judge", "reason": "below_percentile", "detail": f"{judgement['mean']:.2f} < {threshold:.2f}"}
                dropped.write(json.dumps(record, ensure_ascii=False) + "\n")
                report["dropped"]["below_percentile"] = report["dropped"].get("below_percentile", 0) + 1
                continue
            report["unjudged"] += "error" in judgement
            kept.write(json.dumps(record, ensure_ascii=False) + "\n")
            report["kept"] += 1
    output_path.with_name(output_path.stem + ".report.json").write_text(json.dumps(report, indent=2))
    return report
