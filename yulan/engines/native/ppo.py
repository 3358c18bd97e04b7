"""Native PPO with the report's recipe (§5), in OpenRLHF's conventions and with its estimator menu: samples per
prompt; the shared YulanReward (reward-model score clipped, verifier reward, rule penalties, with the generation's
own truncation signal); OpenRLHF's length rules; the estimator's baseline and returns (`estimators`); KL against the
frozen reference in the reward (the adaptive controller reading the per-token mean KL and resting while the actor
is frozen) or as a loss with a fixed β; log-probabilities at the sampling temperature; clipped policy (clip-higher)
and value losses (`losses`); for GAE a critic initialised from the reward model (or the policy, with OpenRLHF's
value head) and the actor frozen for the first rollouts while the critic learns. Every
pass over a rollout's samples (scoring, reference, critic, training) runs `micro_*_batch_size` samples at a time.
Every rollout's health statistics go to the metrics and `ppo.health.rules` judge them (`yulan.rewards.health`):
a stop rule checkpoints and ends the stage with HEALTH_STOP_STATUS."""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import torch

from yulan.engines.native import loop
from yulan.engines.native.estimators import advantages_and_returns
from yulan.engines.native.losses import (
    Totals,
    aggregate,
    is_weights,
    kl_estimate,
    masked_mean,
    policy_loss,
    value_loss,
)
from yulan.rewards.health import (
    HealthSample,
    Monitor,
    health_samples,
    record,
    sample_statistics,
    stops,
    trainer_statistics,
    unwatched_notice,
)
from yulan.rewards.reward import YulanReward, parse_label
from yulan.rewards.verifier import kind_of
from yulan.runtime import models
from yulan.runtime.batches import (
    IGNORE,
    Flat,
    Tokenized,
    hidden_states,
    layout,
    one_per_row,
    prompt_ids,
    token_logprobs,
)
from yulan.runtime.checkpoints import Checkpoints, save_final, save_or_stop
from yulan.runtime.generation import Generator, TransformersGenerator, backend_of, request_seed, sampling_for
from yulan.runtime.lifecycle import HEALTH_STOP_STATUS, REQUEUE_STATUS
from yulan.runtime.records import read_jsonl
from yulan.runtime.tracking import Progress, Tracker
from yulan.schema.experiment import Experiment, ppo_prompt_file, stage_output
from yulan.schema.ppo import KLController, PPOConfig

log = logging.getLogger(__name__)


class AdaptiveKL:
    """OpenRLHF's (and Ziegler et al.'s) controller: β ← β·(1 + clip(KL/target − 1, ±0.2)·n/horizon), where KL is
    the per-token mean KL of each sequence averaged over the rollout's samples (`mean_kl`)."""

    def __init__(self, config: KLController):
        self.config, self.value = config, config.init_coef

    def update(self, kl: float, samples: int) -> None:
        if self.config.adaptive:
            error = min(max(kl / self.config.target - 1, -0.2), 0.2)
            self.value *= 1 + error * samples / self.config.horizon


def mean_kl(kl: torch.Tensor, mask: torch.Tensor) -> float:
    """The rollout's KL in OpenRLHF's units: per sequence the mean per-token estimate over its response tokens,
    then the mean over sequences."""
    per_sequence = (kl * mask).sum(1) / mask.sum(1).clamp(min=1)
    return per_sequence.mean().item()


def length_rules(
    rewards: torch.Tensor, lengths: torch.Tensor, truncated: torch.Tensor, config: PPOConfig
) -> torch.Tensor:
    """OpenRLHF's length rules on sequence rewards: DAPO's overlong penalty (−min(excess, buffer)/buffer·factor
    beyond generate_max_length − buffer) and ProRL's stop-properly rule for truncated samples."""
    reward = config.reward
    rewards = rewards.clone()
    if reward.overlong_buffer_len is not None:
        buffer = reward.overlong_buffer_len
        excess = (lengths - (config.generate_max_length - buffer)).clamp(max=buffer)
        rewards -= torch.where(excess > 0, excess / buffer * reward.overlong_penalty_factor, 0.0)
    coef = reward.stop_properly_penalty_coef
    if coef is not None:
        rewards = torch.where(truncated, coef if coef < 0 else rewards * coef, rewards)
    return rewards


def kept_groups(scores: list[float], group: int, low: float, high: float) -> list[int]:
    """Dynamic filtering: the prompts whose samples' mean score lies strictly inside (low, high)."""
    means = [sum(scores[i : i + group]) / group for i in range(0, len(scores), group)]
    return [k for k, mean in enumerate(means) if low < mean < high]


def critic_values(critic, flat: Flat) -> torch.Tensor:
    """Per-token values (rows, width) from a sequence-classification model: its scalar head at every position."""
    return critic.score(hidden_states(critic, flat)).squeeze(-1).float()


def response_rows(flat: Flat, per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token values at the positions that predict response tokens (the labelled ones), as rows shaped like
    `mask` (one sample per row, 1 on its response tokens)."""
    return torch.zeros_like(mask).masked_scatter(mask.bool(), per_token[flat.loss_mask])


class Rollout:
    """One rollout's samples: prompt + response sequences, a reward per sample, and per response token (rows padded
    to the longest response, `mask` = 1 on real tokens) the old, reference and sampler log-probabilities, the KL
    estimate between old and reference, and the values (None without a critic)."""

    def __init__(self, sequences: list[Tokenized], rewards, old_logps, ref_logps, kl, values, mask, rollout_logps):
        self.sequences, self.rewards, self.mask = sequences, rewards, mask
        self.old_logps, self.ref_logps, self.kl, self.values = old_logps, ref_logps, kl, values
        self.rollout_logps = rollout_logps  # the sampler's (vLLM's); the trainer's own when it sampled


@torch.no_grad()
def score_sequences(
    sequences: list[Tokenized], actor, reference, critic, micro: int, autocast, temperature: float = 1.0
) -> tuple:
    """Old log-probabilities, reference log-probabilities (both of the policies at the sampling temperature) and
    values (None without a critic) of every response token, `micro` sequences per forward pass, written into
    rollout-sized tensors allocated once; peak memory follows `micro`."""
    lengths = torch.tensor([s.loss_tokens for s in sequences], device=models.device())
    mask = (torch.arange(int(lengths.max()), device=lengths.device)[None] < lengths[:, None]).float()
    old, ref = torch.zeros_like(mask), torch.zeros_like(mask)
    values = torch.zeros_like(mask) if critic is not None else None
    for start in range(0, len(sequences), micro):
        flat = layout(one_per_row(sequences[start : start + micro]), actor).to(models.device())
        rows = mask[start : start + micro]
        with autocast():
            old[start : start + micro] = response_rows(flat, token_logprobs(actor, flat, temperature), rows)
            ref[start : start + micro] = response_rows(flat, token_logprobs(reference, flat, temperature), rows)
            if critic is not None:
                values[start : start + micro] = response_rows(flat, critic_values(critic, flat), rows)
    return old, ref, values, mask


def train(experiment: Experiment, job_dir: str) -> int:
    config = experiment.ppo
    models.seed_everything(experiment.seed, config.engine_options.full_determinism)
    prompt_file = ppo_prompt_file(job_dir)  # the job's prompt selection wrote it
    records = read_jsonl(prompt_file)
    total_rollouts = config.rollouts_for(len(records))
    if len(records) < config.rollout_batch_size:
        log.error(f"{len(records)} prompts selected, fewer than ppo.rollout_batch_size={config.rollout_batch_size}")
        return 2
    reward = rollout_reward(experiment, records)
    actor_path = models.model_path(experiment, experiment.resolve(config.actor.init_from))
    models.check_checkpoint(actor_path, experiment.model, "model")
    tokenizer = loop.policy_tokenizer(experiment, actor_path)
    actor = loop.load_trained(actor_path, config.attention, config.gradient_checkpointing)
    reference = loop.frozen_copy(actor_path, config.attention)
    critic = load_critic(experiment, actor_path, tokenizer.pad_token_id) if config.uses_critic else None
    learners = [("actor", actor, config.actor.learning_rate)]
    if critic is not None:
        learners.append(("critic", critic, config.critic.learning_rate))
    steps = total_rollouts * config.optimizer_steps_per_rollout  # = ppo.total_optimizer_steps, every prompt selected
    trained = {name: learner(config, model, lr, steps) for name, model, lr in learners}
    kl = AdaptiveKL(config.kl)
    checkpoints = Checkpoints(job_dir)
    weights = {name: model for name, model, _ in learners}
    states = {key: value for name in trained for key, value in trained[name].states(name).items()}
    rollout_index, extra = checkpoints.restore(weights, states)
    kl.value = extra.get("kl_coef", kl.value)
    monitor = Monitor(config.health, config.health_statistics, extra.get("health"))
    tracker = Tracker(experiment, "ppo", job_dir)
    progress = Progress(total_rollouts, rollout_index, "ppo")
    stream = PromptStream(
        records,
        config.rollout_batch_size,
        experiment.seed,
        extra.get("prompts_consumed", rollout_index * config.rollout_batch_size),
    )
    notice = unwatched_notice(config.health, "native", config.health_statistics)
    if notice:
        log.warning("%s", notice)
    sampler = rollout_sampler(experiment, actor, tokenizer, job_dir)  # after the restore: it holds those weights
    try:
        while rollout_index < total_rollouts:
            actor_trains = rollout_index >= config.frozen_rollouts
            metrics, tokens = rollout_and_update(
                experiment, stream, (actor, reference, critic), sampler, reward, tokenizer, trained, kl, actor_trains
            )
            if actor_trains and sampler.backend == "vllm":
                pushed = time.perf_counter()
                sampler.push_weights(actor, rollout_weights_dir(job_dir))
                metrics["rollout/weight_push_s"] = time.perf_counter() - pushed
            rollout_index += 1
            derived, alerts = monitor.observe(rollout_index, metrics)
            metrics |= derived
            tracker.log(rollout_index, metrics)
            record(job_dir, alerts)
            progress.step(tokens, reward=metrics["ppo/reward"], kl=metrics.get("ppo/kl", 0.0))
            extra = {"kl_coef": kl.value, "prompts_consumed": stream.consumed, "health": monitor.state()}
            if stops(alerts):
                path = checkpoints.save(rollout_index, weights, states, extra)
                log.warning(f"stopped by a health rule at rollout {rollout_index}; checkpoint {path} (resumable)")
                progress.close()
                tracker.finish()
                return HEALTH_STOP_STATUS
            if save_or_stop(
                checkpoints, rollout_index, total_rollouts, config.save_every_steps, weights, states, extra
            ):
                tracker.finish()
                return REQUEUE_STATUS
        progress.close()
        tracker.finish()
        save_final(actor, tokenizer, stage_output(experiment.output_dir, "ppo"))
        return 0
    finally:
        sampler.close()


def rollout_sampler(experiment: Experiment, actor, tokenizer, job_dir: str) -> Generator:
    """The trainer's actor samples (transformers), or a vLLM engine over a copy of it that every update is pushed
    into (colocated, as TRL's colocate mode)."""
    config = experiment.ppo
    if backend_of(experiment) != "vllm":
        return TransformersGenerator(actor, tokenizer, config.micro_rollout_batch_size)
    from yulan.runtime.vllm_engine import VllmGenerator

    return VllmGenerator.for_training(
        actor,
        tokenizer,
        rollout_weights_dir(job_dir),
        experiment.generation.vllm,
        experiment.seed,
        experiment.model.context_length,
    )


def rollout_weights_dir(job_dir: str) -> Path:
    return Path(job_dir) / "rollout_engine"


def rollout_reward(experiment: Experiment, records: list[dict]) -> YulanReward:
    config = experiment.ppo
    scorer = None if config.reward.server_url else models.reward_model(experiment)
    reward = YulanReward(
        config.reward,
        config.reward.server_url or "",
        score_texts=scorer,
        unchecked_score=config.dynamic_filtering.neutral_score,
    )
    if reward.checker and any(kind_of(parse_label(r["label"], "")) == "code" for r in records):
        reward.checker.isolation()  # refuse now, not after hours of rollouts, where code cannot run isolated
    return reward


def load_critic(experiment: Experiment, actor_path: str, pad_token_id: int | None):
    config = experiment.ppo
    critic_path = actor_path
    if config.critic.init_from == "reward_model":
        critic_path = models.model_path(experiment, experiment.reward_model.name_or_path, "reward_model")
        models.check_checkpoint(critic_path, experiment.reward_model, "reward_model")
    critic = loop.load_trained(
        critic_path, config.attention, config.gradient_checkpointing, scorer=True, pad_token_id=pad_token_id
    )
    if critic_path == actor_path:  # a head the policy's checkpoint lacks: OpenRLHF's initialisation, not 0.02
        init_value_head(critic)
    return critic


def init_value_head(critic) -> None:
    """OpenRLHF 0.11.2's value head for a critic started from the policy: N(0, 1/(hidden_size + 1))."""
    with torch.no_grad():
        critic.score.weight.normal_(mean=0.0, std=1 / (critic.config.hidden_size + 1))


def learner(config: PPOConfig, model, learning_rate: float, steps: int) -> loop.Trained:
    return loop.Trained(
        model,
        learning_rate,
        config.param_dtype,
        config.max_grad_norm,
        config.lr_scheduler,
        steps,
        config.lr_warmup_ratio,
        config.min_lr_ratio,
    )


def rollout_and_update(
    experiment: Experiment,
    stream,
    policies: tuple,
    sampler: Generator,
    reward,
    tokenizer,
    trained: dict,
    kl,
    actor_trains: bool,
) -> tuple[dict, int]:
    """One rollout of the current policy and the updates it feeds: (its metrics, its tokens)."""
    config = experiment.ppo
    actor, reference, critic = policies
    started = time.perf_counter()
    rollout, metrics = make_rollout(experiment, stream, policies, sampler, reward, tokenizer, trained["actor"].autocast)
    trained_at = time.perf_counter()
    if rollout is not None:
        metrics |= update(config, rollout, actor, critic, trained, actor_trains, kl.value)
        if actor_trains:  # frozen rollouts leave the actor where the reference is: no KL to steer by
            kl.update(metrics["ppo/kl"], config.samples_per_rollout)
        metrics |= trainer_statistics(
            metrics["ppo/kl"], config.kl.target, entropy=-masked_mean(rollout.old_logps, rollout.mask).item()
        )
    elapsed = time.perf_counter() - started
    tokens = sum(len(s.input_ids) for s in rollout.sequences) if rollout is not None else 0
    return metrics | {
        "ppo/kl_coef": kl.value,
        "ppo/actor_frozen": float(not actor_trains),
        "ppo/step_time_s": elapsed,
        "ppo/train_time_s": time.perf_counter() - trained_at,
        "ppo/tokens": tokens,
        "ppo/tokens_per_s": tokens / elapsed,
    }, tokens


class PromptStream:
    """The selected prompts in a fresh seeded order each episode, handed out in turn. An episode uses the first
    rollouts_per_episode x rollout_batch_size prompts of its order (as many as the rollouts can take); `consumed`
    (kept in checkpoints) says where the stream is."""

    def __init__(self, records: list[dict], rollout_batch_size: int, seed: int, consumed: int = 0):
        self.records, self.seed, self.consumed = records, seed, consumed
        self.per_episode = len(records) // rollout_batch_size * rollout_batch_size
        self._episode, self._order = -1, []

    def order(self, episode: int) -> list[int]:
        if episode != self._episode:  # shuffled once per episode, not per prompt taken
            self._order = list(range(len(self.records)))
            random.Random(f"{self.seed}:{episode}").shuffle(self._order)
            self._episode = episode
        return self._order

    def take(self, count: int) -> list[dict]:
        taken = []
        for position in range(self.consumed, self.consumed + count):
            episode, index = divmod(position, self.per_episode)
            taken.append(self.records[self.order(episode)[index]])
        self.consumed += count
        return taken


def sample_prompts(
    experiment: Experiment,
    records: list[dict],
    sampler: Generator,
    actor,
    reward: YulanReward,
    tokenizer,
    autocast,
    seed: int,
) -> dict:
    """Generates `samples_per_prompt` responses per prompt and scores them: per sample its prompt and response ids,
    the sampler's log-probabilities (vLLM's; None when the trainer sampled), truncation, reward (after the length
    rules), score and logs."""
    config = experiment.ppo
    group = config.samples_per_prompt
    prompts = [prompt_ids(tokenizer, r["prompt"], config.prompt_max_length) for r in records]
    vllm = sampler.backend == "vllm"
    sampling = sampling_for(
        tokenizer,
        actor.generation_config,
        config.generate_max_length,
        config.temperature,
        n=group,
        seed=seed,
        logprobs=vllm,  # the trainer's own samples need none: their log-probabilities are old_logps
    )
    started = time.perf_counter()
    with autocast():
        completions = sampler.generate(prompts, sampling)
    sampling_s = time.perf_counter() - started
    responses = [c.token_ids for c in completions]
    prompts = [p for p in prompts for _ in range(group)]
    labels = [r["label"] for r in records for _ in range(group)]
    truncated = [c.finish_reason != "stop" for c in completions]
    scored, health = score_responses(tokenizer, reward, prompts, responses, labels, truncated)
    rewards = length_rules(
        torch.tensor(scored["rewards"]),
        torch.tensor([float(len(r)) for r in responses]),
        torch.tensor(truncated),
        config,
    )
    return {
        "prompts": prompts,
        "responses": responses,
        "rollout_logps": [c.logprobs for c in completions],
        "sampling_s": sampling_s,
        "truncated": truncated,
        "rewards": rewards.tolist(),
        "scores": scored["scores"],
        "logs": scored["extra_logs"],
        "health": health,
    }


def score_responses(
    tokenizer,
    reward: YulanReward,
    prompts: list[list[int]],
    responses: list[list[int]],
    labels: list[str],
    truncated: list[bool],
) -> tuple[dict, list[HealthSample]]:
    """The reward function's output for token-id samples, decoded as OpenRLHF decodes them (special tokens kept),
    and the samples' health."""
    prompt_texts = [tokenizer.decode(p, skip_special_tokens=False) for p in prompts]
    queries = [tokenizer.decode(p + r, skip_special_tokens=False) for p, r in zip(prompts, responses)]
    scored = reward(queries, prompt_texts, labels, truncated=truncated)
    health = health_samples(
        prompt_texts,
        [reward.response_of(q, p) for q, p in zip(queries, prompt_texts)],
        [len(r) for r in responses],
        truncated,
        scored,
        reward.config.penalties,
    )
    return scored, health


def make_rollout(
    experiment: Experiment,
    stream: PromptStream,
    policies: tuple,
    sampler: Generator,
    reward: YulanReward,
    tokenizer,
    autocast,
) -> tuple[Rollout | None, dict[str, float]]:
    """One rollout's samples for rollout_batch_size prompts. With dynamic filtering, prompts whose samples' verifier
    scores all agree are dropped and replaced by the next prompts of the stream (as OpenRLHF does), for at most one
    pass over the prompt set; None when none was kept."""
    config = experiment.ppo
    group, wanted = config.samples_per_prompt, config.rollout_batch_size
    started = time.perf_counter()
    actor, reference, critic = policies
    generated: dict[str, list] = {
        key: [] for key in ("prompts", "responses", "rollout_logps", "truncated", "rewards", "scores", "health")
    }
    logs: dict[str, list] = {}
    kept: list[int] = []  # sample indices into `generated`
    drawn, sampling_s = 0, 0.0
    while len(kept) < wanted * group and drawn < max(len(stream.records), wanted):
        count = wanted - len(kept) // group
        # seeded by where the stream is: every draw its own seeds, and a resumed run the same ones
        seed = request_seed(experiment.seed, stream.consumed)
        part = sample_prompts(experiment, stream.take(count), sampler, actor, reward, tokenizer, autocast, seed)
        sampling_s += part["sampling_s"]
        offset = len(generated["rewards"])
        groups = range(count)
        if config.dynamic_filtering.enabled:
            groups = kept_groups(part["scores"], group, *config.dynamic_filtering.range)
        kept += [offset + k * group + j for k in groups for j in range(group)]
        for key, values_ in generated.items():
            values_.extend(part[key])
        for key, values_ in part["logs"].items():
            logs.setdefault(key, []).extend(values_)
        drawn += count
        if not config.dynamic_filtering.enabled:
            break
    generated_at = time.perf_counter()
    responses = generated["responses"]
    metrics = {
        "ppo/reward": sum(generated["rewards"]) / len(responses),
        "ppo/score": sum(generated["scores"]) / len(responses),
        "ppo/generation_time_s": generated_at - started,
        "ppo/generated_tokens_per_s": sum(map(len, responses)) / max(generated_at - started, 1e-9),
        # the sampler alone (generation_time_s also holds the rewards' scoring)
        "rollout/sampling_s": sampling_s,
        "rollout/sampled_tokens_per_s": sum(map(len, responses)) / max(sampling_s, 1e-9),
        **{f"ppo/{key}": sum(values_) / len(values_) for key, values_ in logs.items()},
    }
    metrics |= sample_statistics(generated["health"])  # every sample generated, as OpenRLHF's reward function sees them
    if config.dynamic_filtering.enabled:
        metrics["ppo/filter_pass_rate"] = len(kept) / group / drawn
        metrics["ppo/prompts_drawn"] = drawn
    if not kept:
        return None, metrics
    prompts = generated["prompts"]
    sequences = [Tokenized(prompts[i] + responses[i], [IGNORE] * len(prompts[i]) + responses[i]) for i in kept]
    old_logps, ref_logps, values, mask = score_sequences(
        sequences, actor, reference, critic, config.micro_rollout_batch_size, autocast, config.temperature
    )
    kl = kl_estimate(old_logps, ref_logps, config.kl.estimator)
    metrics["ppo/kl"] = mean_kl(kl, mask)
    rewards = torch.tensor([generated["rewards"][i] for i in kept], device=mask.device)
    rollout_logps = old_logps
    if sampler.backend == "vllm":
        rollout_logps = torch.zeros_like(old_logps)
        for row, i in enumerate(kept):
            sampled = generated["rollout_logps"][i]
            rollout_logps[row, : len(sampled)] = torch.tensor(sampled, device=mask.device)
        metrics["rollout/logprob_diff"] = masked_mean((old_logps - rollout_logps).abs(), mask).item()
        metrics["rollout/logprob_diff_max"] = ((old_logps - rollout_logps).abs() * mask).max().item()
    return Rollout(sequences, rewards, old_logps, ref_logps, kl, values, mask, rollout_logps), metrics


def update(
    config: PPOConfig, rollout: Rollout, actor, critic, trained: dict, actor_trains: bool, kl_coef: float
) -> dict:
    mask = rollout.mask
    kl_in_reward = torch.zeros_like(mask) if config.kl.use_loss else rollout.kl
    advantages, returns = advantages_and_returns(
        config.estimator,
        rollout.rewards,
        config.samples_per_prompt,
        kl_in_reward,
        kl_coef,
        mask,
        rollout.values,
        config.reward.clip_range,
        config.gamma,
        config.gae_lambda,
    )
    count = mask.shape[0]
    sums = {"ppo/policy_loss": 0.0, "ppo/clip_fraction": 0.0} | ({"ppo/value_loss": 0.0} if critic is not None else {})
    if config.kl.use_loss:
        sums["ppo/kl_loss"] = 0.0
    steps = 0
    updated = ({"critic": critic} if critic is not None else {}) | ({"actor": actor} if actor_trains else {})
    for model in updated.values():
        model.train()  # generation left them in eval mode; gradient checkpointing acts only in training mode
    for _ in range(config.ppo_epochs):
        order = torch.randperm(count).tolist()
        for start in range(0, count, config.train_batch_size):
            indices = order[start : start + config.train_batch_size]
            totals = Totals(tokens=mask[indices].sum().item(), samples=len(indices))
            for micro_start in range(0, len(indices), config.micro_train_batch_size):
                rows = indices[micro_start : micro_start + config.micro_train_batch_size]
                flat = layout(one_per_row([rollout.sequences[i] for i in rows]), actor).to(models.device())
                rows_mask = mask[rows]
                if critic is not None:
                    with trained["critic"].autocast():
                        values = response_rows(flat, critic_values(critic, flat), rows_mask)
                    loss = value_loss(values, rollout.values[rows], returns[rows], rows_mask, config.value_clip, totals)
                    trained["critic"].backward(loss)
                    sums["ppo/value_loss"] += loss.item()
                if actor_trains:
                    with trained["actor"].autocast():
                        logps = response_rows(flat, token_logprobs(actor, flat, config.temperature), rows_mask)
                    weights, behaviour = None, rollout.old_logps[rows]
                    if config.is_correction.level != "off" and config.policy_loss == "gspo":
                        behaviour = rollout.rollout_logps[rows]  # GSPO's ratio against the sampler (OpenRLHF's)
                    elif config.is_correction.level != "off":  # PPO's: per-token weights
                        weights, filtered = is_weights(
                            rollout.old_logps[rows], rollout.rollout_logps[rows], rows_mask, config.is_correction
                        )
                        sums["rollout/is_filtered"] = sums.get("rollout/is_filtered", 0.0) + filtered.item() * len(
                            rows
                        ) / len(indices)
                    loss, clip_share = policy_loss(
                        logps,
                        behaviour,
                        advantages[rows],
                        rows_mask,
                        config.policy_clip_range,
                        config.policy_loss_aggregation,
                        totals,
                        weights,
                        config.policy_loss,
                    )
                    sums["ppo/policy_loss"] += loss.item()
                    if config.kl.use_loss:
                        kl = kl_estimate(logps, rollout.ref_logps[rows], config.kl.estimator)
                        kl_loss = kl_coef * aggregate(kl, rows_mask, "token-mean", totals)  # OpenRLHF: token mean
                        loss = loss + kl_loss
                        sums["ppo/kl_loss"] += kl_loss.item()
                    trained["actor"].backward(loss)
                    sums["ppo/clip_fraction"] += clip_share.item() * len(rows) / len(indices)
            for name in updated:
                step = trained[name].step()
                sums[f"ppo/{name}_grad_norm"] = sums.get(f"ppo/{name}_grad_norm", 0.0) + step["grad_norm"]
                sums[f"ppo/{name}_lr"] = step["lr"]
            steps += 1
    means = {key: value / max(steps, 1) if not key.endswith("_lr") else value for key, value in sums.items()}
    return means | {
        "ppo/return": masked_mean(returns, mask).item(),
        "ppo/advantage_std": advantages[mask.bool()].std(unbiased=False).item(),
    }
