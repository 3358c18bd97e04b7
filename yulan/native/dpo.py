"""Native DPO: a frozen reference, the sigmoid loss with β (and optional label smoothing / NLL term)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from schema.experiment import Experiment
from yulan.native import common


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
    start_path, tokenizer, policy = common.starting_point(experiment, config)
    reference = common.load_causal_lm(start_path, config.param_dtype, config.attention).eval().requires_grad_(False)
    pairs = [tokenize_pair(tokenizer, p, config.max_length) for p in common.read_jsonl(experiment.resolve(config.data))]
    if not pairs:
        raise SystemExit(f"error: no preference pairs in {experiment.resolve(config.data)}")
    pad = tokenizer.pad_token_id

    def step_gradients(indices: list[int]) -> tuple[dict, int]:
        sums = {"loss": 0.0, "chosen_reward": 0.0, "rejected_reward": 0.0, "accuracy": 0.0}
        for start in range(0, len(indices), config.micro_batch_size):
            micro = [pairs[i] for i in indices[start:start + config.micro_batch_size]]
            chosen, rejected = [p[0] for p in micro], [p[1] for p in micro]
            with torch.no_grad():
                ref_c, ref_r = sequence_logps(reference, chosen, pad), sequence_logps(reference, rejected, pad)
            pol_c, pol_r = sequence_logps(policy, chosen, pad), sequence_logps(policy, rejected, pad)
            loss, reward_c, reward_r = dpo_loss(pol_c, pol_r, ref_c, ref_r, config.beta, config.label_smoothing)
            loss = loss.sum()
            if config.nll_loss_coef:
                tokens = sum(sum(label != common.IGNORE for label in s.labels[1:]) for s in chosen)
                loss = loss - config.nll_loss_coef * pol_c.sum() / max(tokens, 1) * len(micro)
            (loss / len(indices)).backward()
            sums["loss"] += loss.item()
            sums["chosen_reward"] += reward_c.sum().item()
            sums["rejected_reward"] += reward_r.sum().item()
            sums["accuracy"] += (reward_c > reward_r).float().sum().item()
        means = {key: value / len(indices) for key, value in sums.items()}
        means["reward_margin"] = means["chosen_reward"] - means["rejected_reward"]
        return means, sum(len(pairs[i][0].input_ids) + len(pairs[i][1].input_ids) for i in indices)

    return common.optimize(experiment, "dpo", job_dir, policy, tokenizer, len(pairs), step_gradients,
                           shown=("loss", "reward_margin"))
