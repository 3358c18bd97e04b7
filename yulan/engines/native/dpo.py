"""Native DPO: a frozen reference, the loss `dpo.loss` names (LOSSES) with β, and an optional NLL term."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from yulan.engines.native import loop
from yulan.runtime.batches import Tokenized, layout, one_per_row, token_logprobs, tokenize_chat
from yulan.runtime.models import device
from yulan.runtime.token_cache import tokenized
from yulan.schema.experiment import Experiment
from yulan.schema.training import DPOConfig


def tokenize_pair(tokenizer, pair: dict, max_length: int) -> list[Tokenized]:
    """The same format as OpenRLHF's: `prompt` messages, `chosen` and `rejected` assistant messages."""
    return [tokenize_chat(tokenizer, pair["prompt"] + pair[side], max_length) for side in ("chosen", "rejected")]


def sequence_logps(model, samples: list[Tokenized]) -> torch.Tensor:
    """Summed log-probability of each sample's loss tokens, the samples in one forward pass."""
    flat = layout(one_per_row(samples), model).to(device())
    return torch.stack([row.sum() for row in flat.per_sample(token_logprobs(model, flat))])


def sigmoid_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, config: DPOConfig) -> torch.Tensor:
    """DPO: -log σ(β·margin), the margin being how much more the policy than the reference prefers the chosen
    response; smoothed toward the flipped label when label_smoothing > 0 (conservative DPO)."""
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    smoothing = config.label_smoothing
    return -F.logsigmoid(config.beta * margin) * (1 - smoothing) - F.logsigmoid(-config.beta * margin) * smoothing


# dpo.loss -> its loss per pair, from the summed log-probabilities of the chosen and rejected responses under the
# policy and the reference
LOSSES: dict[str, Callable[..., torch.Tensor]] = {"sigmoid": sigmoid_loss}


def nll_sum(chosen_logps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The NLL term of the pairs, summed: each chosen response's mean token NLL, so that divided by the batch it is
    OpenRLHF's mean over responses of per-response means (not a token mean, which weighs long responses more)."""
    return -(chosen_logps / lengths.clamp(min=1)).sum()


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, config: DPOConfig):
    """The configured loss of each pair, and the implicit rewards β·(policy - reference) of both responses."""
    loss = LOSSES[config.loss](policy_chosen, policy_rejected, ref_chosen, ref_rejected, config)
    beta = config.beta
    return loss, beta * (policy_chosen - ref_chosen).detach(), beta * (policy_rejected - ref_rejected).detach()


def train(experiment: Experiment, job_dir: str) -> int:
    config = experiment.dpo
    start_path, tokenizer, policy = loop.starting_point(experiment, config)
    reference = loop.frozen_copy(start_path, config.attention)
    source = experiment.resolve(config.data)
    pairs = tokenized(
        source,
        tokenizer,
        {"max_length": config.max_length},
        f"{job_dir}/tokens",
        lambda r: tokenize_pair(tokenizer, r, config.max_length),
        per_record=2,
    )
    if not pairs.records:
        raise SystemExit(f"error: no preference pairs in {source}")

    def step_gradients(indices: list[int], trained) -> tuple[dict, int]:
        sums = {"loss": 0.0, "chosen_reward": 0.0, "rejected_reward": 0.0, "accuracy": 0.0}
        tokens = 0
        for start in range(0, len(indices), config.micro_batch_size):
            micro = indices[start : start + config.micro_batch_size]
            samples = [pairs[2 * i + side] for i in micro for side in (0, 1)]  # chosen, rejected, chosen, ...
            tokens += sum(len(s.input_ids) for s in samples)
            with trained.autocast():
                with torch.no_grad():
                    ref = sequence_logps(reference, samples)
                logps = sequence_logps(policy, samples)
            loss, reward_c, reward_r = dpo_loss(logps[0::2], logps[1::2], ref[0::2], ref[1::2], config)
            loss = loss.sum()
            if config.nll_loss_coef:
                lengths = torch.tensor([s.loss_tokens for s in samples[0::2]], device=logps.device)
                loss = loss + config.nll_loss_coef * nll_sum(logps[0::2], lengths)
            trained.backward(loss / len(indices))
            sums["loss"] += loss.item()
            sums["chosen_reward"] += reward_c.sum().item()
            sums["rejected_reward"] += reward_r.sum().item()
            sums["accuracy"] += (reward_c > reward_r).float().sum().item()
        means = {key: value / len(indices) for key, value in sums.items()}
        means["reward_margin"] = means["chosen_reward"] - means["rejected_reward"]
        return means, tokens

    return loop.optimize(
        experiment, "dpo", job_dir, policy, tokenizer, pairs.records, step_gradients, shown=("loss", "reward_margin")
    )
