"""PPO's losses with OpenRLHF 0.11.2's formulas: the KL estimators k1/k2/k3, the clipped policy loss with
clip-higher, the clipped value loss, and the two aggregations. Aggregation divides by the whole optimizer step's
token or sample count (`Totals`), so the micro-batch split never changes the gradient."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def kl_estimate(logps: torch.Tensor, ref_logps: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token KL(π ‖ π_ref) estimates (Schulman): k1 = log r, k2 = (log r)²/2, k3 = 1/r − 1 + log r, with
    r = π/π_ref; clamped to ±10 as OpenRLHF does."""
    log_ratio = logps.float() - ref_logps.float()
    if estimator == "k1":
        value = log_ratio
    elif estimator == "k2":
        value = log_ratio**2 / 2
    else:
        bounded = log_ratio.clamp(min=-10)
        value = (-bounded).exp() - 1 + bounded
    return value.clamp(-10, 10)


@dataclass(frozen=True)
class Totals:
    """The optimizer step's response tokens and samples: the denominators of both aggregations."""

    tokens: float
    samples: int


def aggregate(loss: torch.Tensor, mask: torch.Tensor, mode: str, totals: Totals) -> torch.Tensor:
    """token-mean: the sum over response tokens / the step's tokens; seq-mean-token-mean: the sum of each sample's
    token mean / the step's samples."""
    if mode == "token-mean":
        return (loss * mask).sum() / totals.tokens
    per_sample = (loss * mask).sum(-1) / (mask.sum(-1) + 1e-8)
    return per_sample.sum() / totals.samples


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def is_weights(old_logps: torch.Tensor, rollout_logps: torch.Tensor, mask: torch.Tensor, correction) -> tuple:
    """Per-token weights of the rollout/trainer mismatch correction (OpenRLHF 0.11.2's PolicyLoss), and the share
    of units (tokens, or sequences at level seq) the gate filtered."""
    low, high = correction.threshold
    seq_level = correction.level == "seq"
    log_ratio = (old_logps - rollout_logps).detach()  # log(π_train / π_rollout)
    token_weight = log_ratio.exp()
    if correction.gating == "ratio":
        statistic = (masked_mean(log_ratio, mask, dim=-1).unsqueeze(-1) if seq_level else log_ratio).exp()
    else:
        p = rollout_logps.exp().clamp(1e-6, 1 - 1e-6)  # the clamp keeps the binary KL's logs finite
        q = old_logps.exp().clamp(1e-6, 1 - 1e-6)
        if correction.gating == "binary_kl":
            statistic = p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()
        else:
            statistic = (p - q).abs()
        if seq_level:
            statistic = masked_mean(statistic, mask, dim=-1).unsqueeze(-1)
    if correction.mode == "clip":
        weights, filtered = statistic.clamp(min=low, max=high), (statistic < low) | (statistic > high)
    else:
        keep = (statistic >= low) & (statistic <= high)
        weights, filtered = torch.where(keep, token_weight, 0.0), ~keep
    share = filtered.float().mean() if seq_level else masked_mean(filtered.float(), mask)
    return weights, share


def policy_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: tuple[float, float],
    mode: str,
    totals: Totals,
    weights: torch.Tensor | None = None,
    kind: str = "ppo",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The clipped surrogate, ratio clipped to [1 − low, 1 + high], each token's term scaled by `weights` (the
    mismatch correction's); and the share of tokens where the clip bit. `kind` gspo (OpenRLHF 0.11.2's): one ratio
    per sample, exp of the mean of its tokens' log-ratios against `old_logps` (the caller passes the sampler's
    under the mismatch correction, and no weights), every token of the sample carrying it."""
    if kind == "gspo":
        ratio = masked_mean(logps - old_logps, mask, dim=-1).exp().unsqueeze(-1) * mask
    else:
        ratio = (logps - old_logps).clamp(-20, 20).exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip[0], 1 + clip[1]) * advantages
    per_token = -torch.min(unclipped, clipped)
    loss = aggregate(per_token if weights is None else weights * per_token, mask, mode, totals)
    clip_share = ((clipped < unclipped).float() * mask).sum() / mask.sum().clamp(min=1)
    return loss, clip_share


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
    totals: Totals,
) -> torch.Tensor:
    """0.5 · max((V − R)², (V_clipped − R)²) averaged over the step's tokens."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * aggregate(torch.max((values - returns) ** 2, (clipped - returns) ** 2), mask, "token-mean", totals)
