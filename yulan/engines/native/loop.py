"""What the native trainers share: the starting point, mixed precision, the optimizer and schedule, and the
optimizer loop of SFT and DPO (batch order, logging, checkpoints, resume, stop requests, the final save)."""

from __future__ import annotations

import math
import random
import time
from contextlib import AbstractContextManager

import torch
import transformers

from yulan.runtime import models
from yulan.runtime.checkpoints import Checkpoints, save_final, save_or_stop
from yulan.runtime.lifecycle import REQUEUE_STATUS
from yulan.runtime.tracking import Progress, Tracker
from yulan.schema.experiment import Experiment, stage_output
from yulan.schema.training import steps_per_epoch, total_steps


def load_trained(path: str, attention: str, gradient_checkpointing: bool, scorer: bool = False, pad_token_id=None):
    """A model to train: fp32 master weights (the compute dtype comes from Precision.autocast)."""
    if scorer:
        model = models.load_scorer(path, torch.float32, pad_token_id, attention)
    else:
        model = models.load_causal_lm(path, torch.float32, attention)
    model.config.use_cache = False
    if gradient_checkpointing:  # transformers 5.24 renamed it; older releases have only the first name
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def frozen_copy(path: str, attention: str):
    """A frozen reference of a trained model, loaded and computed exactly as the trained one starts, so that the
    DPO loss starts at ln 2 and the PPO KL at 0."""
    return models.load_causal_lm(path, torch.float32, attention).eval().requires_grad_(False)


def policy_tokenizer(experiment: Experiment, path: str):
    tokenizer = models.load_tokenizer(path, experiment.model.chat_template)
    models.require_chat_template(tokenizer, path)
    return tokenizer


def starting_point(experiment: Experiment, config) -> tuple[str, object, object]:
    """(path, tokenizer, model) a trainer starts from (`config.init_from`), after seeding every RNG and checking the
    checkpoint against `model.*`."""
    models.seed_everything(experiment.seed, config.engine_options.full_determinism)
    path = models.model_path(experiment, experiment.resolve(config.init_from))
    models.check_checkpoint(path, experiment.model, "model")
    tokenizer = policy_tokenizer(experiment, path)
    return path, tokenizer, load_trained(path, config.attention, config.gradient_checkpointing)


class Trained:
    """One trained model with its optimizer: AdamW on fp32 master weights, the compute dtype by autocast (bf16 or
    fp16 matmuls, as DeepSpeed's bf16 mode computes), dynamic loss scaling for fp16, gradient clipping, and the
    learning-rate schedule of transformers.get_scheduler (what OpenRLHF uses)."""

    def __init__(
        self,
        model,
        learning_rate: float,
        param_dtype: str,
        max_grad_norm: float,
        scheduler: str,
        total: int,
        warmup_ratio: float,
        min_lr_ratio: float,
        betas=(0.9, 0.95),
        weight_decay: float = 0.0,
    ):
        self.model, self.max_grad_norm = model, max_grad_norm
        self.dtype = models.compute_dtype(param_dtype)
        self.device_type = models.device().type
        self.optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=learning_rate,
            betas=tuple(betas),
            weight_decay=weight_decay,
        )
        self.scheduler = transformers.get_scheduler(
            scheduler,
            self.optimizer,
            num_warmup_steps=math.ceil(total * warmup_ratio),
            num_training_steps=total,
            scheduler_specific_kwargs={"min_lr_rate": min_lr_ratio} if scheduler == "cosine_with_min_lr" else None,
        )
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=self.dtype == torch.float16)

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self) -> dict[str, float]:
        """Clip, step, schedule; returns the gradient norm (before clipping) and the LR the step used."""
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm).item()
        lr = self.scheduler.get_last_lr()[0]
        self.scaler.step(self.optimizer)  # skipped (and the scale lowered) when fp16 gradients overflowed
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"grad_norm": norm, "lr": lr}

    def states(self, name: str) -> dict:
        """What a checkpoint keeps besides the weights."""
        return {f"{name}.optimizer": self.optimizer, f"{name}.scheduler": self.scheduler, f"{name}.scaler": self.scaler}


def batches_of_epoch(count: int, global_batch: int, seed: int, epoch: int) -> list[list[int]]:
    """Sample indices per optimizer step; the order depends only on (seed, epoch), so a resumed run finds its place."""
    order = list(range(count))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return [order[i : i + global_batch] for i in range(0, count, global_batch)]


def optimize(
    experiment: Experiment,
    stage: str,
    job_dir: str,
    model,
    tokenizer,
    count: int,
    step_gradients,
    shown: tuple[str, ...] = ("loss",),
) -> int:
    """The optimizer loop SFT and DPO share, over `count` samples for the stage's epochs (or max_steps) and global
    batch: `step_gradients(indices, trained)` accumulates one optimizer step's gradients through
    `trained.autocast()` / `trained.backward()` and returns (metrics without the stage prefix, tokens processed).
    Logging (with step time and token throughput), the progress bar, checkpoints, resume, stop requests and the
    final save are done here. Returns 0, or REQUEUE_STATUS when it stopped at a checkpoint because it was asked to."""
    config = getattr(experiment, stage)
    per_epoch = steps_per_epoch(count, config.global_batch_size)
    total = total_steps(count, config)
    trained = Trained(
        model,
        config.learning_rate,
        config.param_dtype,
        config.max_grad_norm,
        config.lr_scheduler,
        total,
        config.warmup_ratio,
        config.min_lr_ratio,
        config.adam_betas,
        config.weight_decay,
    )
    weights, states = {"model": model}, trained.states("model")
    checkpoints = Checkpoints(job_dir)
    step, _ = checkpoints.restore(weights, states)
    tracker = Tracker(experiment, stage, job_dir)
    progress = Progress(total, step, stage)
    model.train()
    while step < total:
        started = time.perf_counter()
        epoch, index = divmod(step, per_epoch)
        metrics, tokens = step_gradients(
            batches_of_epoch(count, config.global_batch_size, experiment.seed, epoch)[index], trained
        )
        metrics |= trained.step() | {"epoch": epoch}
        step += 1
        elapsed = time.perf_counter() - started
        metrics |= {"step_time_s": elapsed, "tokens": tokens, "tokens_per_s": tokens / elapsed}
        if step % config.log_every_steps == 0 or step == total:
            tracker.log(step, {f"{stage}/{key}": value for key, value in metrics.items()})
        progress.step(tokens, **{key: metrics[key] for key in shown})
        if save_or_stop(checkpoints, step, total, config.save_every_steps, weights, states):
            tracker.finish()
            return REQUEUE_STATUS
    progress.close()
    tracker.finish()
    save_final(model, tokenizer, stage_output(experiment.output_dir, stage))
    return 0
