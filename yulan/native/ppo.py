"""Native PPO with the report's recipe (§5): samples per prompt, reward = reward-model score + rule penalties
clipped to the range (the same YulanReward as the OpenRLHF engine), per-token KL penalty against the frozen
reference with the adaptive controller, GAE(γ, λ), clipped policy and value losses, the critic initialised from
the reward model (or the policy), the actor frozen for the first rollouts while the critic learns, constant LR."""

from __future__ import annotations

import math
import random
import sys

import torch

from schema.experiment import Experiment, stage_output
from schema.ppo import KLController
from yulan.curation.ppo_prompts import select
from yulan.native import common
from yulan.reward import YulanReward
from yulan.stages import REQUEUE_STATUS


class AdaptiveKL:
    """OpenRLHF's (and Ziegler et al.'s) controller: β ← β·(1 + clip(KL/target − 1, ±0.2)·n/horizon)."""

    def __init__(self, config: KLController):
        self.config, self.value = config, config.init_coef

    def update(self, kl: float, samples: int) -> None:
        if self.config.adaptive:
            error = min(max(kl / self.config.target - 1, -0.2), 0.2)
            self.value *= 1 + error * samples / self.config.horizon


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


def critic_values(critic, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-token values from a sequence-classification model: its scalar head applied at every position."""
    hidden = critic.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          position_ids=batch["position_ids"]).last_hidden_state
    return critic.score(hidden).squeeze(-1).float()


def sequences(prompts: list[list[int]], responses: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Prompt + response rows; labels mark the response tokens (position t predicts token t+1)."""
    samples = [common.Tokenized(p + r, [common.IGNORE] * len(p) + r) for p, r in zip(prompts, responses)]
    return common.collate([[s] for s in samples], pad_id)


class Rollout:
    def __init__(self, batch, old_logps, ref_logps, values, rewards, mask):
        self.batch, self.old_logps, self.ref_logps, self.values, self.mask = batch, old_logps, ref_logps, values, mask
        self.rewards = rewards


def train(experiment: Experiment, job_dir: str) -> int:
    config = experiment.ppo
    common.seed_everything(experiment.seed)
    prompt_file = select(experiment, job_dir)
    records = common.read_jsonl(prompt_file)
    if len(records) < config.rollout_batch_size:
        print(f"error: {len(records)} prompts selected, fewer than ppo.rollout_batch_size={config.rollout_batch_size}",
              file=sys.stderr)
        return 2
    actor_path = common.model_path(experiment, experiment.resolve(config.actor.init_from))
    tokenizer = common.load_tokenizer(actor_path)
    actor = common.load_causal_lm(actor_path, config.param_dtype)
    reference = common.load_causal_lm(actor_path, config.param_dtype).eval().requires_grad_(False)
    critic_path = (common.model_path(experiment, experiment.reward_model.name_or_path, "reward_model")
                   if config.critic.init_from == "reward_model" else actor_path)
    critic = common.load_scorer(critic_path, config.param_dtype)
    scorer = (None if config.reward.server_url else common.reward_model(experiment, config.param_dtype))
    reward = YulanReward(config.reward, config.reward.server_url or "", score_texts=scorer)
    pad = tokenizer.pad_token_id

    rollouts_per_episode = len(records) // config.rollout_batch_size
    total_rollouts = rollouts_per_episode * config.num_episodes
    steps_per_rollout = config.samples_per_rollout // config.train_batch_size * config.ppo_epochs
    optimizers = {"actor": common.adamw(actor.parameters(), config.actor.learning_rate),
                  "critic": common.adamw(critic.parameters(), config.critic.learning_rate)}
    schedule = common.lr_lambda(config.lr_scheduler, total_rollouts * steps_per_rollout, config.lr_warmup_ratio, 0.1)
    schedulers = {name: torch.optim.lr_scheduler.LambdaLR(opt, schedule) for name, opt in optimizers.items()}
    kl = AdaptiveKL(config.kl)
    checkpoints = common.Checkpoints(job_dir)
    models = {"actor": actor, "critic": critic}
    rollout_index, extra = checkpoints.restore(models, optimizers, schedulers)
    kl.value = extra.get("kl_coef", kl.value)
    tracker = common.Tracker(experiment, "ppo", job_dir)
    progress = common.Progress(total_rollouts, rollout_index, "ppo")

    while rollout_index < total_rollouts:
        episode, index = divmod(rollout_index, rollouts_per_episode)
        order = list(range(len(records)))
        random.Random(f"{experiment.seed}:{episode}").shuffle(order)
        chosen = [records[i] for i in order[index * config.rollout_batch_size:(index + 1) * config.rollout_batch_size]]
        rollout, metrics = make_rollout(experiment, chosen, actor, reference, critic, reward, tokenizer, kl.value)
        actor_trains = rollout_index >= config.actor.frozen_steps
        metrics |= update(config, rollout, actor, critic, optimizers, schedulers, actor_trains, pad)
        kl.update(metrics["ppo/kl"], config.samples_per_rollout)
        rollout_index += 1
        metrics |= {"ppo/kl_coef": kl.value, "ppo/actor_frozen": float(not actor_trains)}
        tracker.log(rollout_index, metrics)
        progress.step(int(rollout.mask.sum().item()), reward=metrics["ppo/reward"], kl=metrics["ppo/kl"])
        if common.save_or_stop(checkpoints, rollout_index, total_rollouts, config.save_every_steps, models, optimizers,
                               schedulers, {"kl_coef": kl.value}):
            tracker.finish()
            return REQUEUE_STATUS
    progress.close()
    tracker.finish()
    common.save_final(actor, tokenizer, stage_output(experiment.output_dir, "ppo"))
    return 0


@torch.no_grad()
def make_rollout(experiment: Experiment, records: list[dict], actor, reference, critic, reward: YulanReward,
                 tokenizer, kl_coef: float) -> tuple[Rollout, dict[str, float]]:
    config = experiment.ppo
    prompts = [common.prompt_ids(tokenizer, r["prompt"], config.prompt_max_length) for r in records]
    responses = common.generate(actor, tokenizer, prompts, config.samples_per_prompt, config.temperature,
                                config.generate_max_length, batch_size=config.micro_rollout_batch_size)
    prompts = [p for p in prompts for _ in range(config.samples_per_prompt)]
    labels = [r["label"] for r in records for _ in range(config.samples_per_prompt)]
    prompt_texts = [tokenizer.decode(p) for p in prompts]
    queries = [text + tokenizer.decode(r) for text, r in zip(prompt_texts, responses)]
    scored = reward(queries, prompt_texts, labels)  # score + penalties, clipped
    batch = common.to_device(sequences(prompts, responses, tokenizer.pad_token_id))
    mask = (batch["labels"] != common.IGNORE).float()
    old_logps = common.token_logprobs(actor, batch)
    ref_logps = common.token_logprobs(reference, batch)
    values = critic_values(critic, batch) * mask
    # per-token reward: −β·(log π − log π_ref) everywhere, the clipped sequence reward on the last response token
    rewards = -kl_coef * (old_logps - ref_logps) * mask
    last = (mask.cumsum(1) == mask.sum(1, keepdim=True)) & (mask > 0)
    rewards = rewards + last.float() * torch.tensor(scored["rewards"], device=mask.device)[:, None]
    sequence_kl = ((old_logps - ref_logps) * mask).sum(1)
    metrics = {
        "ppo/reward": sum(scored["rewards"]) / len(scored["rewards"]),
        "ppo/score": sum(scored["scores"]) / len(scored["scores"]),
        "ppo/kl": sequence_kl.mean().item(),
        "ppo/response_length": mask.sum(1).mean().item(),
        **{f"ppo/{key}": sum(values_) / len(values_) for key, values_ in scored["extra_logs"].items()},
    }
    return Rollout(batch, old_logps, ref_logps, values, rewards, mask), metrics


def update(config, rollout: Rollout, actor, critic, optimizers, schedulers, actor_trains: bool, pad: int) -> dict:
    advantages, returns = gae(rollout.rewards, rollout.values, rollout.mask, config.gamma, config.gae_lambda)
    mean, std = masked_mean(advantages, rollout.mask), masked_mean((advantages - masked_mean(advantages, rollout.mask)) ** 2, rollout.mask).sqrt()
    advantages = (advantages - mean) / (std + 1e-8) * rollout.mask  # whitened over the rollout, as OpenRLHF does
    count = rollout.mask.shape[0]
    sums = {"ppo/policy_loss": 0.0, "ppo/value_loss": 0.0, "ppo/clip_fraction": 0.0}
    steps = 0
    for epoch in range(config.ppo_epochs):
        order = torch.randperm(count).tolist()
        for start in range(0, count, config.train_batch_size):
            indices = order[start:start + config.train_batch_size]
            for micro_start in range(0, len(indices), config.micro_train_batch_size):
                rows = indices[micro_start:micro_start + config.micro_train_batch_size]
                batch = {key: value[rows] for key, value in rollout.batch.items()}
                mask, share = rollout.mask[rows], len(rows) / len(indices)
                values = critic_values(critic, batch)
                old_values = rollout.values[rows]
                clipped = old_values + (values - old_values).clamp(-config.value_clip, config.value_clip)
                value_loss = 0.5 * masked_mean(torch.max((values - returns[rows]) ** 2, (clipped - returns[rows]) ** 2), mask)
                (value_loss * share).backward()
                sums["ppo/value_loss"] += value_loss.item() * share
                if actor_trains:
                    ratio = (common.token_logprobs(actor, batch) - rollout.old_logps[rows]).exp()
                    adv = advantages[rows]
                    surrogate = torch.min(ratio * adv, ratio.clamp(1 - config.policy_clip, 1 + config.policy_clip) * adv)
                    policy_loss = -masked_mean(surrogate, mask)
                    (policy_loss * share).backward()
                    sums["ppo/policy_loss"] += policy_loss.item() * share
                    sums["ppo/clip_fraction"] += masked_mean(((ratio - 1).abs() > config.policy_clip).float(), mask).item() * share
            trained = {"critic": critic} | ({"actor": actor} if actor_trains else {})
            for name, model in trained.items():
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # OpenRLHF's default --max_norm
                optimizers[name].step()
                schedulers[name].step()
                optimizers[name].zero_grad(set_to_none=True)
            steps += 1
    return {key: value / max(steps, 1) for key, value in sums.items()} | {"ppo/return": masked_mean(returns, rollout.mask).item()}
