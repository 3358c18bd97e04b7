"""Advantage estimators: OpenRLHF 0.11.2's menu (`--algo.advantage.estimator`) with its formulas, so that a native
run and a cluster run of one experiment mean the same thing.

Every estimator takes one reward per sample (samples of a prompt are adjacent, `group` per prompt), then:
1. a baseline over samples (none; the prompt group's mean, its leave-one-out mean, its mean and std; the batch mean),
2. the clip range, and the reward on each sample's last response token plus −β·KL on every token (KL in the reward),
3. returns: GAE(γ, λ) against the critic's values, or the plain return-to-go,
4. whitening over the rollout's tokens for gae, reinforce and reinforce_baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


def no_baseline(rewards: torch.Tensor) -> torch.Tensor:
    return rewards


def group_mean(rewards: torch.Tensor) -> torch.Tensor:
    return rewards - rewards.mean(-1, keepdim=True)


def leave_one_out(rewards: torch.Tensor) -> torch.Tensor:
    group = rewards.shape[-1]
    return rewards - (rewards.sum(-1, keepdim=True) - rewards) / (group - 1)


def group_normalised(rewards: torch.Tensor) -> torch.Tensor:
    """GRPO: (r − mean) / (std + 1e-9) within the prompt's group (the unbiased std, as torch and OpenRLHF take it)."""
    return (rewards - rewards.mean(-1, keepdim=True)) / (rewards.std(-1, keepdim=True) + 1e-9)


def batch_mean(rewards: torch.Tensor) -> torch.Tensor:
    return rewards - rewards.mean()


@dataclass(frozen=True)
class Estimator:
    baseline: Callable[[torch.Tensor], torch.Tensor]  # (prompts, group) -> (prompts, group)
    uses_values: bool  # GAE against a critic, else the return-to-go
    whiten: bool


ESTIMATORS = {
    "gae": Estimator(no_baseline, uses_values=True, whiten=True),
    "reinforce": Estimator(no_baseline, uses_values=False, whiten=True),  # REINFORCE++
    "reinforce_baseline": Estimator(group_mean, uses_values=False, whiten=True),
    "rloo": Estimator(leave_one_out, uses_values=False, whiten=False),
    "group_norm": Estimator(group_normalised, uses_values=False, whiten=False),  # GRPO
    "dr_grpo": Estimator(group_mean, uses_values=False, whiten=False),  # Dr. GRPO: no std division
    "flash_reinforce": Estimator(batch_mean, uses_values=False, whiten=False),
}


def token_rewards(rewards: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per response token: −β·KL, plus the sample's reward on its last token (mask = 1 on response tokens)."""
    out = -kl_coef * kl * mask
    last = mask.sum(1).long() - 1
    out[torch.arange(len(rewards)), last] += rewards
    return out


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Advantages and returns over response tokens, right to left."""
    values, rewards = values * mask, rewards * mask
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        last = rewards[:, t] + gamma * next_value - values[:, t] + gamma * lam * last
        advantages[:, t] = last
    return advantages, advantages + values


def returns_to_go(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    rewards = rewards * mask
    returns = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        running = rewards[:, t] + gamma * running
        returns[:, t] = running
    return returns


def whiten(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    tokens = mask.sum()
    mean = (advantages * mask).sum() / tokens
    variance = ((advantages - mean) ** 2 * mask).sum() / tokens
    return (advantages - mean) * variance.clamp(min=1e-8).rsqrt()


def advantages_and_returns(
    name: str,
    rewards: torch.Tensor,
    group: int,
    kl: torch.Tensor,
    kl_coef: float,
    mask: torch.Tensor,
    values: torch.Tensor | None,
    clip_range: tuple[float, float],
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`rewards`: one per sample, prompt-major; `kl`, `mask`, `values`: (samples, response tokens)."""
    estimator = ESTIMATORS[name]
    shaped = estimator.baseline(rewards.reshape(-1, group)).reshape(-1).clamp(*clip_range)
    per_token = token_rewards(shaped, kl, mask, kl_coef)
    if estimator.uses_values:
        advantages, returns = gae(per_token, values, mask, gamma, lam)
    else:
        returns = returns_to_go(per_token, mask, gamma)
        advantages = returns.clone()
    if estimator.whiten:
        advantages = whiten(advantages, mask)
    return advantages * mask, returns
