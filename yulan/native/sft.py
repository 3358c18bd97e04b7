"""Native SFT: assistant-only loss, packed rows without cross-sample attention, the configured global batch."""

from __future__ import annotations

import math
import random

import torch

from schema.experiment import Experiment, stage_output
from yulan.native import common
from yulan.stages import REQUEUE_STATUS, stop_requested


def batches_of_epoch(count: int, global_batch: int, seed: int, epoch: int) -> list[list[int]]:
    """Sample indices per optimizer step; the order depends only on (seed, epoch), so a resumed run finds its place."""
    order = list(range(count))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return [order[i:i + global_batch] for i in range(0, count, global_batch)]


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
    common.seed_everything(experiment.seed)
    start_path = common.model_path(experiment, experiment.resolve(config.init_from))
    tokenizer = common.load_tokenizer(start_path)
    model = common.load_causal_lm(start_path, config.param_dtype, config.attention)
    if config.gradient_checkpointing and common.device().type == "cuda":
        model.gradient_checkpointing_enable()
    records = common.read_jsonl(experiment.resolve(config.data))
    samples = [common.tokenize_chat(tokenizer, r["messages"], config.max_length, config.loss_on) for r in records]
    steps_per_epoch = math.ceil(len(samples) / config.global_batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = common.adamw(model.parameters(), config.learning_rate, config.adam_betas, config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, common.lr_lambda(config.lr_scheduler, total_steps, config.warmup_ratio, config.min_lr_ratio))
    checkpoints = common.Checkpoints(job_dir)
    step, _ = checkpoints.restore({"model": model}, {"model": optimizer}, {"model": scheduler})
    tracker = common.Tracker(experiment, "sft", job_dir)
    progress = common.Progress(total_steps, step, "sft")
    model.train()
    while step < total_steps:
        epoch, index = divmod(step, steps_per_epoch)
        chosen = [samples[i] for i in batches_of_epoch(len(samples), config.global_batch_size, experiment.seed, epoch)[index]]
        loss, loss_tokens = step_loss(model, micro_batches(chosen, config), tokenizer.pad_token_id)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm).item()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if step % config.log_every_steps == 0 or step == total_steps:
            tracker.log(step, {"sft/loss": loss, "sft/grad_norm": grad_norm, "sft/lr": scheduler.get_last_lr()[0],
                               "sft/loss_tokens": loss_tokens, "sft/epoch": epoch})
        progress.step(sum(len(s.input_ids) for s in chosen), loss=loss)
        if step % config.save_every_steps == 0 and step < total_steps or stop_requested():
            checkpoints.save(step, {"model": model}, {"model": optimizer}, {"model": scheduler})
        if stop_requested() and step < total_steps:
            tracker.finish()
            return REQUEUE_STATUS
    progress.close()
    tracker.finish()
    common.save_final(model, tokenizer, stage_output(experiment.output_dir, "sft"))
    return 0
