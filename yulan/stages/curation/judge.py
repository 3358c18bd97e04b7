"""LLM-as-a-judge scoring (report §3): each sample is scored 1–5 on instruction following, informativeness and
truthfulness by a judge model behind an OpenAI-compatible server (backend=openai) or vLLM started in the job
(backend=vllm, only when something is not cached yet); samples below the
configured percentile of the average score are dropped.

The server is asked for a JSON object of integer scores (`structured_output`); replies are parsed leniently all
the same (a JSON object anywhere in the reply, or "dimension: N" lines) and checked (every dimension, an integer in
range). A failed request is retried by the client (Retry-After, backoff), an unusable reply is asked again, and a
sample the judge
never scores is kept, marked and counted rather than silently dropped. Judgements are cached by a hash of the
judge settings and the sample's content (`<output>.cache.sqlite`), so a rerun costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tempfile
from array import array
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from yulan.runtime.http import JsonClient, ServerError, chat, openai_client
from yulan.runtime.progress import Progress
from yulan.schema.curation import JudgeConfig
from yulan.schema.generation import VllmEngine
from yulan.stages.curation.cache import ResultCache, cache_path
from yulan.stages.curation.io import StepFiles, chunks
from yulan.stages.curation.server import endpoint_for, visible_gpus
from yulan.stages.curation.sharding import rerun_from_caches, run_on_shard

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
    return PROMPT.format(
        low=config.score_min, high=config.score_max, dimensions=dimensions, conversation=conversation, example=example
    )


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


def response_format(config: JudgeConfig) -> dict | None:
    """A JSON schema of the judgement: each dimension an integer in the score range."""
    if not config.structured_output:
        return None
    score = {"type": "integer", "minimum": config.score_min, "maximum": config.score_max}
    schema = {
        "type": "object",
        "properties": {d: score for d in config.dimensions},
        "required": list(config.dimensions),
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": "judgement", "schema": schema, "strict": True}}


def judge_one(sample: dict, config: JudgeConfig, client: JsonClient) -> dict:
    """{'scores': {...}, 'mean': x} or {'error': '...'}: a request that fails for good (the client retried it) is an
    error at once; an unusable reply is asked again, `max_retries` times, each time sampled (retry_temperature, a
    seed of its own): a greedy request asked again would get the same unusable reply."""
    prompt = judge_prompt(sample, config)
    error = None
    for attempt in range(config.max_retries + 1):
        try:
            [reply] = chat(
                client,
                config.model,
                prompt,
                config.temperature if attempt == 0 else max(config.temperature, config.retry_temperature),
                config.max_new_tokens,
                response_format=response_format(config),
                seed=attempt,
            )
            scores = parse(reply, config)
            return {"scores": scores, "mean": sum(scores.values()) / len(scores)}
        except ServerError as failure:
            return {"error": str(failure)}
        except (JudgeError, ValueError) as failure:
            error = str(failure)
    return {"error": error}


def content_key(sample: dict, config: JudgeConfig) -> str:
    settings = config.model_dump(
        include={"model", "dimensions", "score_min", "score_max", "temperature", "max_new_tokens"}
    )
    return hashlib.sha256(json.dumps([settings, judge_prompt(sample, config)], sort_keys=True).encode()).hexdigest()


def percentile(values, q: float) -> float:
    """Linear-interpolation percentile."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def run(
    input_path: Path,
    output_path: Path,
    config: JudgeConfig,
    seed: int = 0,
    ask: bool = True,
    chunk_records: int = 10_000,
    engine: VllmEngine | None = None,
) -> dict:
    """`ask=False`: judge nothing new (merging shards already judged); what the cache lacks counts as unjudged.

    Two passes over the file, a chunk of samples at a time: judge what the cache lacks and set each sample's
    judgement aside with it; then keep or drop against the percentile of all the means."""
    means = array("d")  # 8 bytes per sample
    calls = 0
    engine = engine or VllmEngine()
    with (
        StepFiles(input_path, output_path, config.on_bad_record) as files,
        ResultCache(cache_path(output_path) if config.cache else None) as cache,
        ExitStack() as server,
        tempfile.TemporaryFile("w+", encoding="utf-8", dir=output_path.parent) as judged_sink,
    ):
        client: JsonClient | None = None
        progress = server.enter_context(Progress("judge", unit="samples"))
        for chunk in chunks((sample for _, sample in files.samples()), chunk_records):
            keys = [content_key(s, config) for s in chunk]
            known = cache.get(keys)
            todo = sorted({k: s for k, s in zip(keys, chunk) if k not in known}.items())
            if todo and ask:
                if client is None:  # started on the first sample the cache lacks: a cached rerun starts nothing
                    endpoint = config.endpoint if config.backend == "openai" else None
                    url = server.enter_context(
                        endpoint_for(config.model, endpoint, visible_gpus(), output_path.parent, engine)
                    )
                    client = server.enter_context(openai_client(url, config, "curation.judge"))
                    pool = server.enter_context(ThreadPoolExecutor(config.concurrency))
                answers = []
                for answer in pool.map(lambda item, client=client: judge_one(item[1], config, client), todo):
                    answers.append(answer)
                    progress.advance()
                calls += len(todo)
            else:
                answers = [{"error": "not judged by its shard's task"} for _ in todo]
            new = {key: answer for (key, _), answer in zip(todo, answers)}
            cache.put({key: answer for key, answer in new.items() if "error" not in answer})  # failures: asked again
            known |= new
            for key, sample in zip(keys, chunk):
                means.append(known[key].get("mean", math.nan))
                judged_sink.write(json.dumps({**sample, "judge": known[key]}, ensure_ascii=False) + "\n")
        scored = np.frombuffer(means, dtype=np.float64)
        scored = scored[~np.isnan(scored)]
        threshold = percentile(scored, config.discard_lower_percentile) if len(scored) else None
        counts = {
            "input": len(means),
            "kept": 0,
            "dropped": {},
            "judge_calls": calls,
            "cached": len(means) - calls,
            "unjudged": 0,
            "threshold": threshold,
        }
        judged_sink.seek(0)
        for line in judged_sink:
            record = json.loads(line)
            judgement = record["judge"]
            if "mean" in judgement and judgement["mean"] < threshold:
                files.drop(record, "judge", "below_percentile", detail=f"{judgement['mean']:.2f} < {threshold:.2f}")
                counts["dropped"]["below_percentile"] = counts["dropped"].get("below_percentile", 0) + 1
                continue
            counts["unjudged"] += "error" in judgement
            files.keep(record)
            counts["kept"] += 1
        return files.finish(counts)


map_shard = run_on_shard(run)
merge_shards = rerun_from_caches(run, ask=False)  # the shards asked the model
