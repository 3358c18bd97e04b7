"""Native SFT: assistant-only loss, packed rows without cross-sample attention, the configured global batch."""

from __future__ import annotations

from schema.experiment import Experiment
from yulan.native import common


def micro_batches(samples: list[common.Tokenized], config) -> list[list[list[common.Tokenized]]]:
    rows = common.pack(samples, config.max_length) if config.packing else [[s] for s in samples]
    return [rows[i:i + config.micro_batch_size] for i in range(0, len(rows), config.micro_batch_size)]


def step_loss(model, rows_per_micro: list, pad_id: int) -> tuple[float, int]:
    """One optimizer step's gradients: the mean NLL over every loss token of the step (not a mean of means)."""
    loss_tokens = sum(sum(label != common.IGNORE for s in row for label in s.labels[1:]) for micro in rows_per_micro for row in micro)
    total = 0.0
    for micro in rows_per_micro:
        batch = common.to_device(common.collate(micro, pad_id))
        loss = -common.token_logprobs(model, batch).sum() / max(loss_tokens, 1)
        loss.backward()
        total += loss.item()
    return total, loss_tokens


def train(experiment: Experiment, job_dir: str) -> int:
    config = experiment.sft
    _, tokenizer, model = common.starting_point(experiment, config)
    if config.gradient_checkpointing and common.device().type == "cuda":
        model.gradient_checkpointing_enable()
    records = common.read_jsonl(experiment.resolve(config.data))
    samples = [common.tokenize_chat(tokenizer, r["messages"], config.max_length, config.loss_on) for r in records]

    def step_gradients(indices: list[int]) -> tuple[dict, int]:
        chosen = [samples[i] for i in indices]
        loss, loss_tokens = step_loss(model, micro_batches(chosen, config), tokenizer.pad_token_id)
        return {"loss": loss, "loss_tokens": loss_tokens}, sum(len(s.input_ids) for s in chosen)

    return common.optimize(experiment, "sft", job_dir, model, tokenizer, len(samples), step_gradients)
