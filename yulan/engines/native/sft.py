"""Native SFT: assistant-only loss, packed rows without cross-sample attention, the configured global batch."""

from __future__ import annotations

from yulan.engines.native import loop
from yulan.runtime.batches import Tokenized, layout, pack, token_logprobs, tokenize_chat
from yulan.runtime.models import device
from yulan.runtime.token_cache import tokenized
from yulan.schema.experiment import Experiment


def micro_batches(samples: list[Tokenized], config) -> list[list[list[Tokenized]]]:
    """The rows of each forward pass: `micro_batch_size` packed rows (or samples, without packing)."""
    rows = pack(samples, config.max_length) if config.packing else [[s] for s in samples]
    return [rows[i : i + config.micro_batch_size] for i in range(0, len(rows), config.micro_batch_size)]


def step_loss(model, micro: list[list[list[Tokenized]]], trained) -> tuple[float, int]:
    """One optimizer step's gradients: the mean NLL over every loss token of the step (not a mean of means)."""
    loss_tokens = sum(s.loss_tokens for rows in micro for row in rows for s in row)
    total = 0.0
    for rows in micro:
        flat = layout(rows, model).to(device())
        with trained.autocast():
            loss = -token_logprobs(model, flat).sum() / max(loss_tokens, 1)
        trained.backward(loss)
        total += loss.item()
    return total, loss_tokens


def train(experiment: Experiment, job_dir: str) -> int:
    config = experiment.sft
    _, tokenizer, model = loop.starting_point(experiment, config)
    settings = {"max_length": config.max_length, "loss_on": config.loss_on}
    data = tokenized(
        experiment.resolve(config.data),
        tokenizer,
        settings,
        f"{job_dir}/tokens",
        lambda r: [tokenize_chat(tokenizer, r["messages"], config.max_length, config.loss_on)],
        per_record=1,
    )

    def step_gradients(indices: list[int], trained) -> tuple[dict, int]:
        chosen = [data[i] for i in indices]
        loss, loss_tokens = step_loss(model, micro_batches(chosen, config), trained)
        return {"loss": loss, "loss_tokens": loss_tokens}, sum(len(s.input_ids) for s in chosen)

    return loop.optimize(experiment, "sft", job_dir, model, tokenizer, len(data), step_gradients)
