"""Native DPO: a frozen reference, the sigmoid loss with β (and optional label smoothing / NLL term)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from schema.experiment import Experiment, stage_output
from yulan.native import common
from yulan.stages import REQUEUE_STATUS, stop_requested
from yulan.native.sft import batches_of_epoch


def tokenize_pair(tokenizer, pair: dict, max_length: int) -> tuple[common.Tokenized, common.Tokenized]:
    """The same format as OpenRLHF's: `prompt` messages, `chosen` and `rejected` assistant messages."""
    return tuple(common.tokenize_chat(tokenizer, pair["prompt"] + pair[side], max_length) for side in ("chosen", "rejected"))


def sequence_logps(model, samples: list[common.Tokenized], pad_id: int) -> torch.Tensor:
    batch = common.to_device(common.collate([[s] for s in samples], pad_id))
    return common.token_logprobs(model, batch).sum(-1)


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float, label_smoothing: float):
    """-log σ(β·margin) (smoothed toward the flipped label when label_smoothing > 0); the implicit rewards too."""
    logits = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(beta * logits) * (1 - label_smoothing) - F.logsigmoid(-beta * logits) * label_smoothing
    return loss, beta * (policy_chosen - ref_chosen).detach(), beta * (policy_rejected - ref_rejected).detach()


def train(experiment: Experiment, job_dir: str) -> int:
    config = experiment.dpo
    common.seed_everything(experiment.seed)
    start_path = common.model_path(experiment, experiment.resolve(config.init_from))
    tokenizer = common.load_tokenizer(start_path)
    policy = common.load_causal_lm(start_path, config.param_dtype, config.attention)
    reference = common.load_causal_lm(start_path, config.param_dtype, config.attention).eval().requires_grad_(False)
    pairs = [tokenize_pair(tokenizer, p, config.max_length) for p in common.read_jsonl(experiment.resolve(config.data))]
    if not pairs:
        raise SystemExit(f"error: no preference pairs in {experiment.resolve(config.data)}")
    steps_per_epoch = math.ceil(len(pairs) / config.global_batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = common.adamw(policy.parameters(), config.learning_rate, config.adam_betas, config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, common.lr_lambda(config.lr_scheduler, total_steps, config.warmup_ratio, config.min_lr_ratio))
    checkpoints = common.Checkpoints(job_dir)
    step, _ = checkpoints.restore({"model": policy}, {"model": optimizer}, {"model": scheduler})
    tracker = common.Tracker(experiment, "dpo", job_dir)
    progress = common.Progress(total_steps, step, "dpo")
    policy.train()
    pad = tokenizer.pad_token_id
    while step < total_steps:
        epoch, index = divmod(step, steps_per_epoch)
        chosen_ids = batches_of_epoch(len(pairs), config.global_batch_size, experiment.seed, epoch)[index]
        sums = {"loss": 0.0, "chosen_reward": 0.0, "rejected_reward": 0.0, "accuracy": 0.0}
        for start in range(0, len(chosen_ids), config.micro_batch_size):
            micro = [pairs[i] for i in chosen_ids[start:start + config.micro_batch_size]]
            chosen, rejected = [p[0] for p in micro], [p[1] for p in micro]
            with torch.no_grad():
                ref_c, ref_r = sequence_logps(reference, chosen, pad), sequence_logps(reference, rejected, pad)
            pol_c, pol_r = sequence_logps(policy, chosen, pad), sequence_logps(policy, rejected, pad)
            loss, reward_c, reward_r = dpo_loss(pol_c, pol_r, ref_c, ref_r, config.beta, config.label_smoothing)
            loss = loss.sum()
            if config.nll_loss_coef:
                tokens = sum(sum(label != common.IGNORE for label in s.labels[1:]) for s in chosen)
                loss = loss - config.nll_loss_coef * pol_c.sum() / max(tokens, 1) * len(micro)
            (loss / len(chosen_ids)).backward()
            sums["loss"] += loss.item()
            sums["chosen_reward"] += reward_c.sum().item()
            sums["rejected_reward"] += reward_r.sum().item()
            sums["accuracy"] += (reward_c > reward_r).float().sum().item()
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm).item()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        means = {key: value / len(chosen_ids) for key, value in sums.items()}
        metrics = {f"dpo/{key}": value for key, value in means.items()} | {
            "dpo/reward_margin": means["chosen_reward"] - means["rejected_reward"],
            "dpo/grad_norm": grad_norm, "dpo/lr": scheduler.get_last_lr()[0]}
        if step % config.log_every_steps == 0 or step == total_steps:
            tracker.log(step, metrics)
        progress.step(sum(len(p[0].input_ids) + len(p[1].input_ids) for p in (pairs[i] for i in chosen_ids)),
                      loss=means["loss"], margin=metrics["dpo/reward_margin"])
        if step % config.save_every_steps == 0 and step < total_steps or stop_requested():
            checkpoints.save(step, {"model": policy}, {"model": optimizer}, {"model": scheduler})
        if stop_requested() and step < total_steps:
            tracker.finish()
            return REQUEUE_STATUS
    progress.close()
    tracker.finish()
    common.save_final(policy, tokenizer, stage_output(experiment.output_dir, "dpo"))
    return 0
