"""Multiple-choice scoring by log-likelihood, computed the way lm-evaluation-harness computes it for Hugging Face
models, so the native arc / mmlu / truthfulqa_mc2 numbers agree with the harness on the same data.

A request is (context, " " + choice). Trailing spaces of the context move to the continuation; the continuation's
tokens are those of tokenize(context + continuation) after the tokens of tokenize(context), without special
tokens; the window keeps the last `max_length` tokens.
"""

from __future__ import annotations

import math

import torch

from yulan.runtime.batches import IGNORE, Tokenized, layout, one_per_row, token_logprobs
from yulan.runtime.models import device


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    return context_ids, whole[len(context_ids) :]


@torch.no_grad()
def loglikelihoods(
    model, tokenizer, requests: list[tuple[str, str]], max_length: int, batch_size: int = 16
) -> list[float]:
    """Sum of log p(continuation | context) per request, `batch_size` requests per forward pass."""
    model.eval()
    samples = []
    for context, continuation in requests:
        context_ids, continuation_ids = encode_pair(tokenizer, context, continuation)
        window = (context_ids + continuation_ids)[-(max_length + 1) :]
        labels = [IGNORE] * (len(window) - len(continuation_ids)) + continuation_ids
        samples.append(Tokenized(window, labels))
    out = []
    for start in range(0, len(samples), batch_size):
        flat = layout(one_per_row(samples[start : start + batch_size]), model).to(device())
        out += [row.sum().item() for row in flat.per_sample(token_logprobs(model, flat))]
    return out


def requests_of(items: list[dict]) -> list[tuple[str, str]]:
    return [(item["context"], f" {choice}") for item in items for choice in item["choices"]]


def score(items: list[dict], lls: list[float]) -> dict:
    """acc and acc_norm (log-likelihood per character of the choice), or for items with `labels` (TruthfulQA mc2)
    the normalised probability mass on the true answers, reported as acc as lm-eval does."""
    lls = iter(lls)
    acc, acc_norm = [], []
    for item in items:
        scores = [next(lls) for _ in item["choices"]]
        if "labels" in item:
            top = max(scores)
            probs = [math.exp(s - top) for s in scores]
            acc.append(sum(p for p, label in zip(probs, item["labels"]) if label) / sum(probs))
            continue
        best = max(range(len(scores)), key=scores.__getitem__)
        best_norm = max(range(len(scores)), key=lambda j: scores[j] / len(item["choices"][j]))
        acc.append(float(best == item["target"]))
        acc_norm.append(float(best_norm == item["target"]))
    metrics = {"problems": len(items), "acc": sum(acc) / len(acc) if acc else 0.0}
    if acc_norm:
        metrics["acc_norm"] = sum(acc_norm) / len(acc_norm)
    return metrics
