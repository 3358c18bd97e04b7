"""Complexity selection (report §3): Comp(x, y) = λ1·(instruction tokens) + λ2·(response NLL under the base model);
the configured hardest fraction is dropped. The input is read twice: a chunk of records at a time for scoring, in
token-budgeted batches (on GPU when there is one), keeping one float per sample; then again to write what is
kept and dropped. Memory follows the chunk and the sample count, not the file. Scores are cached by a hash of the
model, the settings and the sample (`<output>.cache.sqlite`): a rerun, or the merge of array tasks' shards, loads
no model."""

from __future__ import annotations

import hashlib
import json
from array import array
from pathlib import Path

import numpy as np

from yulan.runtime.progress import Progress
from yulan.schema.curation import ComplexityConfig
from yulan.stages.curation.cache import ResultCache, cache_path
from yulan.stages.curation.io import StepFiles, chunks
from yulan.stages.curation.sharding import rerun_from_caches, run_on_shard


def scores(records: list[dict], model, tokenizer, config: ComplexityConfig) -> list[float]:
    import torch

    from yulan.runtime.batches import layout, one_per_row, token_logprobs, tokenize_chat
    from yulan.runtime.models import device

    samples = [tokenize_chat(tokenizer, r["messages"], config.max_length) for r in records]
    out: list[float] = [0.0] * len(samples)
    batch: list[int] = []

    def flush() -> None:
        flat = layout(one_per_row([samples[i] for i in batch]), model).to(device())
        with torch.no_grad():
            per_sample = flat.per_sample(token_logprobs(model, flat))
        for logps, i in zip(per_sample, batch):
            response_tokens = samples[i].loss_tokens
            nll = -logps.sum().item()
            loss = nll if config.loss_reduction == "sum" else nll / max(response_tokens, 1)
            instruction_tokens = len(samples[i].input_ids) - response_tokens
            out[i] = config.length_weight * instruction_tokens + config.loss_weight * loss
        batch.clear()

    order = sorted(range(len(samples)), key=lambda i: len(samples[i].input_ids))  # similar lengths pad little
    with Progress("complexity", total=len(samples), unit="samples") as progress:
        for i in order:
            if batch and (len(batch) + 1) * len(samples[i].input_ids) > config.batch_tokens:
                progress.advance(len(batch))
                flush()
            batch.append(i)
        if batch:
            progress.advance(len(batch))
            flush()
    return out


def content_key(record: dict, model: str, config: ComplexityConfig) -> str:
    settings = config.model_dump(include={"length_weight", "loss_weight", "loss_reduction", "max_length"})
    return hashlib.sha256(json.dumps([model, settings, record["messages"]], sort_keys=True).encode()).hexdigest()


def run(
    input_path: Path,
    output_path: Path,
    config: ComplexityConfig,
    seed: int = 0,
    model: str = "",
    chunk_records: int = 20_000,
) -> dict:
    if not model:
        raise ValueError("complexity needs the base model (--model PATH, or model.name_or_path in a pipeline)")
    comp = array("d")  # 8 bytes per sample
    scored = 0  # distinct samples the model scored in this run
    loaded = None  # (model, tokenizer), loaded for the first sample the cache lacks
    with (
        StepFiles(input_path, output_path, config.on_bad_record) as files,
        ResultCache(cache_path(output_path)) as cache,
    ):
        for chunk in chunks((sample for _, sample in files.samples()), chunk_records):
            keys = [content_key(record, model, config) for record in chunk]
            known = cache.get(keys)
            todo = list({key: record for key, record in zip(keys, chunk) if key not in known}.items())
            scored += len(todo)
            if todo:
                if loaded is None:
                    from yulan.runtime.models import inference_dtype, load_causal_lm, load_tokenizer

                    loaded = load_causal_lm(model, inference_dtype()).eval(), load_tokenizer(model)
                new = dict(zip((key for key, _ in todo), scores([record for _, record in todo], *loaded, config)))
                cache.put(new)
                known |= new
            comp.extend(known[key] for key in keys)
        dropped_count = int(len(comp) * config.discard_hardest_fraction)
        hardest = set(np.argsort(-np.frombuffer(comp, dtype=np.float64), kind="stable")[:dropped_count].tolist())
        for i, (_, record) in enumerate(files.samples()):
            record = {**record, "complexity": round(comp[i], 4)}
            if i in hardest:
                files.drop(record, "complexity", "hardest_fraction")
            else:
                files.keep(record)
        counts = {
            "input": len(comp),
            "kept": len(comp) - dropped_count,
            "dropped": {"hardest_fraction": dropped_count},
            "threshold": round(min((comp[i] for i in hardest), default=float("nan")), 4),
            "scored": scored,
        }
        return files.finish(counts)


map_shard = run_on_shard(run)
merge_shards = rerun_from_caches(run)
