"""Sampling completions with transformers: left-padded micro-batches, stopping at every end-of-turn token."""

from __future__ import annotations

import torch

from yulan.runtime.models import device, stop_token_ids
from yulan.runtime.progress import Progress


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[list[int]],
    samples_per_prompt: int,
    temperature: float,
    max_new_tokens: int,
    batch_size: int = 16,
    progress: str | None = None,
) -> list[list[int]]:
    """Completions as token ids, prompt-major (the samples of prompt 0, then 1, ...). A completion that stopped ends
    with its stop token (kept: it is the policy's last action and where a sequence reward lands); one that did not
    stop has max_new_tokens tokens and no stop token. `progress`: a description to report progress under."""
    model.eval()
    stops = stop_token_ids(tokenizer, model.generation_config)
    pad = tokenizer.pad_token_id
    jobs = [ids for ids in prompts for _ in range(samples_per_prompt)]
    out = []
    shown = Progress(progress, total=len(jobs), unit="completions") if progress else None
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        width = max(map(len, chunk))
        ids = torch.tensor([[pad] * (width - len(x)) + x for x in chunk], device=device())
        attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in chunk], device=device())
        sampled = model.generate(
            input_ids=ids,
            attention_mask=attention,
            max_new_tokens=max_new_tokens,
            do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None,
            top_k=0,
            top_p=1.0,
            pad_token_id=pad,
            eos_token_id=stops,
        )
        for row in sampled[:, width:].tolist():
            # after the first stop token there is only padding (pad may equal a stop token: cut, never filter)
            end = next((i + 1 for i, token in enumerate(row) if token in stops), len(row))
            out.append(row[:end])
        if shown:
            shown.advance(len(chunk))
    if shown:
        shown.close()
    return out


def stopped(completion: list[int], stops: list[int]) -> bool:
    return bool(completion) and completion[-1] in stops


def decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True).strip()
