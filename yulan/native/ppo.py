"""Native PPO with the report's recipe (§5), in OpenRLHF's conventions: samples per prompt; reward = reward-model
score + rule penalties clipped to the range (the same YulanReward as the OpenRLHF engine); a per-token KL penalty
against the frozen reference whose adaptive controller reads the per-token mean KL and rests while the actor is
frozen; GAE(γ, λ); clipped policy and value losses; the critic initialised from the reward model (or the policy);
the actor frozen for the first rollouts while the critic learns. Every pass over a rollout's samples (scoring,
reference, critic, training) runs `micro_*_batch_size` samples at a time."""

from __future__ import annotations

import random
import sys
import time

import torch

from schema.experiment import Experiment, stage_output
from schema.ppo import KLController
from yulan.curation.ppo_prompts import select
from yulan.native import loop
from yulan.reward import YulanReward
from yulan.runtime import models
from yulan.runtime.batches import IGNORE, Flat, Tokenized, hidden_states, layout, one_per_row, prompt_ids, token_logprobs
from yulan.runtime.checkpoints import Checkpoints, save_final, save_or_stop
from yulan.runtime.generation import generate, stopped
from yulan.runtime.lifecycle import REQUEUE_STATUS
from yulan.runtime.records import read_jsonl
from yulan.runtime.tracking import Progress, Tracker


class AdaptiveKL:
    """OpenRLHF's (and Ziegler et al.'s) controller: β ← β·(1 + clip(KL/target − 1, ±0.2)·n/horizon), where KL is
    the per-token mean KL of each sequence averaged over the rollout's samples (`mean_kl`)."""

    def __init__(self, config: KLController):
        self.config, self.value = config, config.init_coef

    def update(self, kl: float, samples: int) -> None:
        if self.config.adaptive:
            error = min(max(kl / self.config.target - 1, -0.2), 0.2)
            self.value *= 1 + error * samples / self.config.horizon


def mean_kl(logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor) -> float:
    """The rollout's KL in OpenRLHF's units: per sequence the mean of log π − log π_ref over its response tokens,
    then the mean over sequences."""
    per_sequence = ((logps - ref_logps) * mask).sum(1) / mask.sum(1).clamp(min=1)
    return per_sequence.mean().item()


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Advantages and returns over response tokens (mask = 1 on them), right to left."""
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] * mask[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        advantages[:, t] = last
    return advantages, advantages + values


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def critic_values(critic, flat: Flat) -> torch.Tensor:
    """Per-token values (rows, width) from a sequence-classification model: its scalar head at every position."""
    return critic.score(hidden_states(critic, flat)).squeeze(-1).float()


def response_rows(flat: Flat, per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token values at the positions that predict response tokens (the labelled ones), as rows shaped like
    `mask` (one sample per row, 1 on its response tokens)."""
    return torch.zeros_like(mask).masked_scatter(mask.bool(), per_token[flat.loss_mask])


class Rollout:
    """One rollout's samples: prompt + response sequences, and per response token (rows padded to the longest
    response, `mask` = 1 on real tokens) the old and reference log-probabilities, values and rewards."""

    def __init__(self, sequences: list[Tokenized], old_logps, ref_logps, values, rewards, mask):
        self.sequences, self.old_logps, self.ref_logps, self.values, self.mask = sequences, old_logps, ref_logps, values, mask
        self.rewards = rewards


@torch.no_grad()
def score_sequences(sequences: list[Tokenized], actor, reference, critic, micro: int, autocast) -> tuple[torch.Tensor, ...]:
    """Old log-probabilities, reference log-probabilities and values of every response token, `micro` sequences
    per forward pass, written into rollout-sized tensors allocated once; peak memory follows `micro`."""
    lengths = torch.tensor([s.loss_tokens for s in sequences], device=models.device())
    mask = (torch.arange(int(lengths.max()), device=lengths.device)[None] < lengths[:, None]).float()
    old, ref, values = (torch.zeros_like(mask) for _ in range(3))
    for start in range(0, len(sequences), micro):
        flat = layout(one_per_row(sequences[start:start + micro]), actor).to(models.device())
        rows = mask[start:start + micro]
        with autocast():
            old[start:start + micro] = response_rows(flat, token_logprobs(actor, flat), rows)
            ref[start:start + micro] = response_rows(flat, token_logprobs(reference, flat), rows)
            values[start:start + micro] = response_rows(flat, critic_values(critic, flat), rows)
    return old, ref, values, mask


def train(experiment: Experiment, job_dir: str) -> int:
    config = experiment.ppo
    models.seed_everything(experiment.seed)
    prompt_file = select(experiment, job_dir)
    records = read_jsonl(prompt_file)
    total_rollouts = config.rollouts_for(len(records))
    if len(records) < config.rollout_batch_size:
        print(f"error: {len(records)} prompts selected, fewer than ppo.rollout_batch_size={config.rollout_batch_size}",
              file=sys.stderr)
        return 2
    actor_path = models.model_path(experiment, experiment.resolve(config.actor.init_from))
    models.check_checkpoint(actor_path, experiment.model, "model")
    tokenizer = loop.policy_tokenizer(experiment, actor_path)
    actor = loop.load_trained(actor_path, config.attention, config.gradient_checkpointing)
    reference = loop.frozen_copy(actor_path, config.attention)
    if config.critic.init_from == "reward_model":
        critic_path = models.model_path(experiment, experiment.reward_model.name_or_path, "reward_model")
        models.check_checkpoint(critic_path, experiment.reward_model, "reward_model")
    else:
        critic_path = actor_path
    critic = loop.load_trained(critic_path, config.attention, config.gradient_checkpointing, scorer=True,
                               pad_token_id=tokenizer.pad_token_id)
    scorer = None if config.reward.server_url else models.reward_model(experiment)
    reward = YulanReward(config.reward, config.reward.server_url or "", score_texts=scorer)

    steps = total_rollouts * config.optimizer_steps_per_rollout  # = ppo.total_optimizer_steps with every prompt selected
    trained = {name: loop.Trained(model, lr, config.param_dtype, config.max_grad_norm, config.lr_scheduler, steps,
                                  config.lr_warmup_ratio, config.min_lr_ratio)
               for name, model, lr in (("actor", actor, config.actor.learning_rate),
                                       ("critic", critic, config.critic.learning_rate))}
    kl = AdaptiveKL(config.kl)
    checkpoints = Checkpoints(job_dir)
    weights = {"actor": actor, "critic": critic}
    states = trained["actor"].states("actor") | trained["critic"].states("critic")
    rollout_index, extra = checkpoints.restore(weights, states)
    kl.value = extra.get("kl_coef", kl.value)
    tracker = Tracker(experiment, "ppo", job_dir)
    progress = Progress(total_rollouts, rollout_index, "ppo")
    per_episode = len(records) // config.rollout_batch_size

    while rollout_index < total_rollouts:
        started = time.perf_counter()
        episode, index = divmod(rollout_index, per_episode)
        order = list(range(len(records)))
        random.Random(f"{experiment.seed}:{episode}").shuffle(order)
        chosen = [records[i] for i in order[index * config.rollout_batch_size:(index + 1) * config.rollout_batch_size]]
        rollout, metrics = make_rollout(experiment, chosen, actor, reference, critic, reward, tokenizer, kl.value,
                                        trained["actor"].autocast)
        actor_trains = rollout_index >= config.actor.frozen_steps
        trained_at = time.perf_counter()
        metrics |= update(config, rollout, actor, critic, trained, actor_trains)
        if actor_trains:  # frozen rollouts leave the actor where the reference is: no KL to steer by
            kl.update(metrics["ppo/kl"], config.samples_per_rollout)
        rollout_index += 1
        elapsed = time.perf_counter() - started
        tokens = sum(len(s.input_ids) for s in rollout.sequences)
        metrics |= {"ppo/kl_coef": kl.value, "ppo/actor_frozen": float(not actor_trains), "ppo/step_time_s": elapsed,
                    "ppo/train_time_s": time.perf_counter() - trained_at, "ppo/tokens": tokens,
                    "ppo/tokens_per_s": tokens / elapsed}
        tracker.log(rollout_index, metrics)
        progress.step(tokens, reward=metrics["ppo/reward"], kl=metrics["ppo/kl"])
        if save_or_stop(checkpoints, rollout_index, total_rollouts, config.save_every_steps, weights, states,
                        {"kl_coef": kl.value}):
            tracker.finish()
            return REQUEUE_STATUS
    progress.close()
    tracker.finish()
    save_final(actor, tokenizer, stage_output(experiment.output_dir, "ppo"))
    return 0


def make_rollout(experiment: Experiment, records: list[dict], actor, reference, critic, reward: YulanReward,
                 tokenizer, kl_coef: float, autocast) -> tuple[Rollout, dict[str, float]]:
    config = experiment.ppo
    started = time.perf_counter()
    prompts = [prompt_ids(tokenizer, r["prompt"], config.prompt_max_length) for r in records]
    with autocast():
        responses = generate(actor, tokenizer, prompts, config.samples_per_prompt, config.temperature,
                             config.generate_max_length, batch_size=config.micro_rollout_batch_size)
    generated_at = time.perf_counter()
    prompts = [p for p in prompts for _ in range(config.samples_per_prompt)]
    labels = [r["label"] for r in records for _ in range(config.samples_per_prompt)]
    prompt_texts = [tokenizer.decode(p) for p in prompts]
    queries = [text + tokenizer.decode(r) for text, r in zip(prompt_texts, responses)]
    scored = reward(queries, prompt_texts, labels)  # score + penalties, clipped
    sequences = [Tokenized(p + r, [IGNORE] * len(p) + r) for p, r in zip(prompts, responses)]
    old_logps, ref_logps, values, mask = score_sequences(sequences, actor, reference, critic,
                                                         config.micro_rollout_batch_size, autocast)
    # per-token reward: −β·(log π − log π_ref) on every response token, the clipped sequence reward on the last one
    # (the end-of-turn token when the response stopped: stopping is an action that earns the reward)
    rewards = -kl_coef * (old_logps - ref_logps) * mask
    last = mask.sum(1).long() - 1
    rewards[torch.arange(len(sequences)), last] += torch.tensor(scored["rewards"], device=mask.device)
    stops = models.stop_token_ids(tokenizer, actor.generation_config)
    metrics = {
        "ppo/reward": sum(scored["rewards"]) / len(scored["rewards"]),
        "ppo/score": sum(scored["scores"]) / len(scored["scores"]),
        "ppo/kl": mean_kl(old_logps, ref_logps, mask),
        "ppo/response_length": mask.sum(1).mean().item(),
        "ppo/truncated": sum(not stopped(r, stops) for r in responses) / len(responses),
        "ppo/generation_time_s": generated_at - started,
        "ppo/generated_tokens_per_s": mask.sum().item() / max(generated_at - started, 1e-9),
        **{f"ppo/{key}": sum(values_) / len(values_) for key, values_ in scored["extra_logs"].items()},
    }
    return Rollout(sequences, old_logps, ref_logps, values, rewards, mask), metrics


def update(config, rollout: Rollout, actor, critic, trained: dict, actor_trains: bool) -> dict:
    advantages, returns = gae(rollout.rewards, rollout.values, rollout.mask, config.gamma, config.gae_lambda)
    mean = masked_mean(advantages, rollout.mask)
    std = masked_mean((advantages - mean) ** 2, rollout.mask).sqrt()
    advantages = (advantages - mean) / (std + 1e-8) * rollout.mask  # whitened over the rollout, as OpenRLHF does
    count = rollout.mask.shape[0]
    sums = {"ppo/policy_loss": 0.0, "ppo/value_loss": 0.0, "ppo/clip_fraction": 0.0}
    steps = 0
    updated = {"critic": critic} | ({"actor": actor} if actor_trains else {})
    for model in updated.values():
        model.train()  # generation left them in eval mode; gradient checkpointing acts only in training mode
    for _ in range(config.ppo_epochs):
        order = torch.randperm(count).tolist()
        for start in range(0, count, config.train_batch_size):
            indices = order[start:start + config.train_batch_size]
            for micro_start in range(0, len(indices), config.micro_train_batch_size):
                rows = indices[micro_start:micro_start + config.micro_train_batch_size]
                flat = layout(one_per_row([rollout.sequences[i] for i in rows]), actor).to(models.device())
                mask, share = rollout.mask[rows], len(rows) / len(indices)
                with trained["critic"].autocast():
                    values = response_rows(flat, critic_values(critic, flat), mask)
                old_values = rollout.values[rows]
                clipped = old_values + (values - old_values).clamp(-config.value_clip, config.value_clip)
                value_loss = 0.5 * masked_mean(torch.max((values - returns[rows]) ** 2, (clipped - returns[rows]) ** 2), mask)
                trained["critic"].backward(value_loss * share)
                sums["ppo/value_loss"] += value_loss.item() * share
                if actor_trains:
                    with trained["actor"].autocast():
                        logps = response_rows(flat, token_logprobs(actor, flat), mask)
                    ratio = (logps - rollout.old_logps[rows]).exp()
                    adv = advantages[rows]
                    surrogate = torch.min(ratio * adv, ratio.clamp(1 - config.policy_clip, 1 + config.policy_clip) * adv)
                    policy_loss = -masked_mean(surrogate, mask)
                    trained["actor"].backward(policy_loss * share)
                    sums["ppo/policy_loss"] += policy_loss.item() * share
                    sums["ppo/clip_fraction"] += masked_mean(((ratio - 1).abs() > config.policy_clip).float(), mask).item() * share
            for name in updated:
                step = trained[name].step()
                sums[f"ppo/{name}_grad_norm"] = sums.get(f"ppo/{name}_grad_norm", 0.0) + step["grad_norm"]
                sums[f"ppo/{name}_lr"] = step["lr"]
            steps += 1
    means = {key: value / max(steps, 1) if not key.endswith("_lr") else value for key, value in sums.items()}
    return means | {"ppo/return": masked_mean(returns, rollout.mask).item()}
