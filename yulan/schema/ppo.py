"""PPO with the report's stabilisation tricks (report §5)."""

from __future__ import annotations

from typing import Literal

from pydantic import computed_field, model_validator

from yulan.schema.common import (
    ATTENTION_DESCRIPTION,
    MAX_STEPS_DESCRIPTION,
    PARAM_DTYPE_DESCRIPTION,
    PPO_TABLE,
    Attention,
    BadRecordPolicy,
    Engine,
    EngineOptions,
    LoRA,
    ParamDtype,
    Resources,
    StageRef,
    engine_rules,
    gpu_job,
)
from yulan.schema.fields import Section, chosen, paper, rule_error
from yulan.schema.health import SAMPLE_STATISTICS, STATISTICS, HealthConfig
from yulan.schema.reward import RewardConfig

# OpenRLHF 0.11.2's --algo.advantage.estimator menu; the native engine implements the same
# (yulan/engines/native/estimators.py).
Estimator = Literal["gae", "reinforce", "rloo", "reinforce_baseline", "group_norm", "dr_grpo", "flash_reinforce"]
CRITIC_ESTIMATORS = ("gae",)
GROUP_ESTIMATORS = ("rloo", "reinforce_baseline", "group_norm", "dr_grpo")
# Settings that describe the critic: they apply only to an estimator that has one.
CRITIC_SETTINGS = (
    "ppo.critic",
    "ppo.actor.frozen_steps",
    "ppo.placement.critic_gpus",
    "ppo.value_clip",
    "ppo.gae_lambda",
)


class PromptSet(Section):
    count: int = paper(
        10_000,
        ge=1,
        unit="prompts",
        where="§5 prompt data: '10,000 challenging prompts'",
        description="Prompts PPO trains on.",
    )
    source: StageRef = paper(
        "preference", where="§5 prompt data: 'from the DPO dataset'", description="Where prompts are selected from."
    )
    difficulty: Literal["lowest_mean_reward", "lowest_pass_rate"] = chosen(
        "lowest_mean_reward",
        description="'Challenging' is not defined in the report: prompts whose sampled completions scored lowest.",
    )
    decontaminate: bool = chosen(
        True, description="Leave out prompts that match the evaluation table (settings: curation.decontaminate)."
    )
    on_bad_record: BadRecordPolicy = chosen(
        "stop", description="A prompt record that cannot be used stops the job naming FILE:LINE, or (skip) is left out."
    )


class ActorConfig(Section):
    init_from: StageRef = paper(
        "dpo", where="§5: 'Building upon the DPO model'", description="Actor (and reference) weights."
    )
    learning_rate: float = paper(1e-6, gt=0.0, where=PPO_TABLE, description="Actor learning rate.")
    frozen_steps: int = paper(
        15,
        ge=0,
        unit="rollout iterations",
        where=f"{PPO_TABLE}: 'Freezing Actor Steps 15'",
        description=(
            "The first N rollout iterations update only the critic (GAE only: without a critic nothing would learn)."
        ),
    )


class CriticConfig(Section):
    init_from: Literal["reward_model", "policy"] = paper(
        "reward_model",
        where="§5: 'The critic model was initialized from the reward model'",
        description="Critic weights: the reward model, or the policy with a fresh value head.",
    )
    learning_rate: float = paper(1e-5, gt=0.0, where=PPO_TABLE, description="Critic learning rate.")


class KLController(Section):
    adaptive: bool = paper(
        True, where="§5: 'Adaptive KL Controller'", description="Adjust the KL coefficient toward the target."
    )
    init_coef: float = paper(0.01, ge=0.0, where=PPO_TABLE, description="Initial KL coefficient (beta).")
    target: float = paper(0.06, gt=0.0, where=PPO_TABLE, description="KL divergence target.")
    horizon: int = chosen(10_000, ge=1, unit="samples", description="Adaptive controller horizon (OpenRLHF's default).")
    use_loss: bool = chosen(
        False,
        description=(
            "KL as a loss term of the actor (GRPO's way) instead of a per-token penalty in the reward "
            "(the report's PPO)."
        ),
    )
    estimator: Literal["k1", "k2", "k3"] = chosen(
        "k1",
        description=(
            "Per-token KL estimate (Schulman): k1 = log π/π_ref, k2 = (log π/π_ref)²/2, k3 = π_ref/π − 1 − log π_ref/π."
        ),
    )

    @model_validator(mode="after")
    def _adaptive_needs_kl_in_the_reward(self) -> KLController:
        # OpenRLHF 0.11.2 feeds its adaptive controller the KL loss measured during the update and marks that
        # combination as incompatible in its own trainer; neither engine runs it rather than half-support it.
        if self.adaptive and self.use_loss:
            raise rule_error(
                "adaptive",
                True,
                "the adaptive controller steers the KL penalty in the reward; with use_loss=true (KL as a loss, GRPO's "
                "way) OpenRLHF 0.11.2 marks it incompatible",
                "set kl.adaptive=false (a fixed β = init_coef, as GRPO), or kl.use_loss=false",
            )
        return self


class AsyncRollouts(Section):
    """OpenRLHF's asynchronous PPO: vLLM samples the next rollouts while the actor trains on the last ones, so each
    rollout comes from a policy up to `queue_size` updates old (the IS correction can weigh that)."""

    enabled: bool = chosen(False, description="Sample and train at once (--train.async_enable).")
    queue_size: int = chosen(1, ge=1, description="Rollouts sampled ahead of training (--train.async_queue_size).")
    partial: bool = chosen(
        False,
        description="Update vLLM's weights mid-generation, so a sample may hold tokens of two policies "
        "(--train.partial_rollout_enable; needs enabled).",
    )

    @model_validator(mode="after")
    def _partial_needs_async(self) -> AsyncRollouts:
        if self.partial and not self.enabled:
            raise rule_error(
                "partial", True, "partial rollouts are a mode of async rollouts", "set async_rollouts.enabled=true"
            )
        return self


class DynamicFiltering(Section):
    enabled: bool = chosen(
        False,
        description="Drop prompts whose samples all succeed or all fail and draw the next prompts in their place "
        "(DAPO's dynamic sampling; the native engine draws for at most one pass over the prompts per rollout).",
    )
    range: tuple[float, float] = chosen(
        (0.0, 1.0),
        description="A prompt is kept when its samples' mean verifier score lies strictly inside (low, high).",
    )

    @property
    def neutral_score(self) -> float:
        """The score given to a sample without a checker: the range's middle, so such prompts are always kept."""
        return sum(self.range) / 2

    @model_validator(mode="after")
    def _range(self) -> DynamicFiltering:
        if self.range[0] >= self.range[1]:
            raise rule_error(
                "range", list(self.range), "low must be below high", "write it as [low, high], e.g. [0, 1]"
            )
        return self


class ISCorrection(Section):
    """Rollout/trainer log-probability mismatch correction (OpenRLHF 0.11.2's --algo.advantage.is_correction_*): a
    gate reads a statistic per unit (a token, or a sequence's mean) of the weight π_train/π_rollout and drops (mask)
    or clamps (clip) units outside [low, high]. Rollouts sampled by the trainer itself have weight 1."""

    level: Literal["off", "token", "seq"] = chosen(
        "off", description="off, token (each token), or seq (a sequence's geometric-mean ratio; mask only)."
    )
    mode: Literal["mask", "clip"] = chosen(
        "mask",
        description="mask: out-of-band units get no gradient, the rest keep their token weight; clip: the token "
        "weight clamped into [low, high].",
    )
    gating: Literal["ratio", "binary_kl", "tv"] = chosen(
        "ratio",
        description="What the gate reads: the weight itself, or the sampled token's binary KL / total variation "
        "between rollout and trainer (upper bound only).",
    )
    threshold: tuple[float, float] = chosen(
        (0.5, 5.0), description="[low, high] bounds of the gated statistic (OpenRLHF's default)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ISCorrection:
        low, high = self.threshold
        if not 0 <= low < high:
            raise rule_error("threshold", list(self.threshold), "needs 0 <= low < high", "e.g. [0.5, 5.0]")
        if self.mode == "clip" and (self.level == "seq" or self.gating != "ratio"):
            raise rule_error(
                "mode",
                self.mode,
                "clip needs level=token and gating=ratio (only a token weight can be clamped)",
                "set mode=mask, or level=token and gating=ratio",
            )
        if self.gating != "ratio" and low > 0:
            raise rule_error(
                "threshold",
                list(self.threshold),
                f"gating={self.gating} is bounded from above only",
                "set threshold=[0, DELTA]",
            )
        return self


class Placement(Section):
    """How the PPO job's GPUs are shared between the actor, critic, reference, reward server and vLLM."""

    colocate_all: bool = chosen(
        False, description="Run every model on every GPU in turn (needs actor GPUs = vLLM GPUs)."
    )
    actor_gpus: int = chosen(2, ge=1, description="GPUs training the actor.")
    critic_gpus: int = chosen(2, ge=1, description="GPUs training the critic.")
    ref_gpus: int = chosen(1, ge=1, description="GPUs for the frozen reference.")
    reward_gpus: int = chosen(
        1, ge=0, description="GPUs for the reward-model server started by the job (0 with server_url)."
    )
    vllm_engines: int = chosen(2, ge=1, description="vLLM generation engines (OpenRLHF always generates with vLLM).")
    vllm_tensor_parallel: int = chosen(1, ge=1, description="GPUs per vLLM engine.")
    vllm_gpu_memory_utilization: float = chosen(
        0.9, gt=0.0, le=1.0, description="vLLM's share of GPU memory (~0.5 when colocated)."
    )

    @property
    def vllm_gpus(self) -> int:
        return self.vllm_engines * self.vllm_tensor_parallel

    def gpus_needed(self, critic: bool = True) -> int:
        critic_gpus = self.critic_gpus if critic else 0
        if self.colocate_all:
            return max(self.actor_gpus, critic_gpus, self.ref_gpus, self.vllm_gpus) + self.reward_gpus
        return self.actor_gpus + critic_gpus + self.ref_gpus + self.vllm_gpus + self.reward_gpus

    @model_validator(mode="after")
    def _colocation(self) -> Placement:
        if self.colocate_all and self.actor_gpus != self.vllm_gpus:
            raise rule_error(
                "actor_gpus",
                self.actor_gpus,
                f"colocate_all needs actor GPUs = vLLM engines x tensor parallel = {self.vllm_gpus}",
                "make actor_gpus equal vllm_engines x vllm_tensor_parallel",
            )
        if self.colocate_all and self.vllm_gpu_memory_utilization > 0.6:
            raise rule_error(
                "vllm_gpu_memory_utilization",
                self.vllm_gpu_memory_utilization,
                "with colocate_all, vLLM shares each GPU with training and must leave room (<= 0.6)",
                "set vllm_gpu_memory_utilization=0.5",
            )
        return self


class PPOConfig(Section):
    engine: Engine = chosen(
        "openrlhf", description="openrlhf (report: 'carried out using the OpenRLHF framework') or native."
    )
    resources: Resources = paper(
        default_factory=lambda: gpu_job(nodes=1, gpus_per_node=8, hours=48),
        where="§5 training recipe: 'We used 8xH800 GPUs'",
        description="Job layout.",
    )
    placement: Placement = chosen(default_factory=Placement, description="GPU roles inside the job.")
    prompts: PromptSet = paper(default_factory=PromptSet, where="§5 prompt data", description="PPO prompts.")
    actor: ActorConfig = paper(default_factory=ActorConfig, where="§5", description="Policy being trained.")
    critic: CriticConfig = paper(default_factory=CriticConfig, where="§5", description="Value model.")
    train_batch_size: int = paper(128, gt=0, unit="samples", where=PPO_TABLE, description="Samples per optimizer step.")
    num_episodes: int = paper(4, ge=1, where=PPO_TABLE, description="Passes over the prompt set.")
    samples_per_prompt: int = paper(4, ge=1, where=PPO_TABLE, description="Responses generated per prompt.")
    prompt_max_length: int = paper(
        2048, ge=1, unit="tokens", where=PPO_TABLE, description="Longest prompt (longer ones are left-truncated)."
    )
    generate_max_length: int = paper(2048, ge=1, unit="tokens", where=PPO_TABLE, description="Longest response.")
    estimator: Estimator = paper(
        "gae",
        where=f"{PPO_TABLE}: GAE λ and γ",
        description="Advantage estimator: gae (with a critic, the report's), reinforce (REINFORCE++), "
        "reinforce_baseline, rloo, group_norm (GRPO), dr_grpo, flash_reinforce; all but gae train no critic.",
    )
    policy_loss: Literal["ppo", "gspo"] = chosen(
        "ppo",
        description="Policy loss: ppo (a clipped ratio per token, the report's) or gspo (GSPO: one ratio per sample, "
        "the exp of its mean token log-ratio, clipped; against the sampler's log-probabilities under is_correction). "
        "gspo takes policy_loss_aggregation=seq-mean-token-mean.",
    )
    policy_loss_aggregation: Literal["token-mean", "seq-mean-token-mean"] = chosen(
        "token-mean",
        description="Policy loss over a batch: the mean over all its response tokens, or the mean over "
        "samples of each sample's token mean (every sample weighs the same).",
    )
    kl: KLController = paper(default_factory=KLController, where="§5", description="KL penalty against the reference.")
    is_correction: ISCorrection = chosen(
        default_factory=ISCorrection,
        description="Importance-sampling correction of vLLM rollouts' log-probability mismatch (off in the report's "
        "recipe).",
    )
    gae_lambda: float = paper(0.95, ge=0.0, le=1.0, where=PPO_TABLE, description="General Advantage Estimation λ.")
    gamma: float = paper(1.0, ge=0.0, le=1.0, where=PPO_TABLE, description="Discount factor γ.")
    temperature: float = paper(1.0, gt=0.0, where=PPO_TABLE, description="Generation temperature.")
    lr_warmup_ratio: float = paper(
        0.0, ge=0.0, lt=1.0, where=PPO_TABLE, description="Learning-rate warmup ratio (actor and critic)."
    )
    lr_scheduler: Literal["constant", "cosine_with_min_lr"] = paper(
        "constant", where=PPO_TABLE, description="LR schedule (actor and critic)."
    )
    min_lr_ratio: float = chosen(
        0.1, ge=0.0, le=1.0, description="Final LR as a share of the peak (cosine_with_min_lr; OpenRLHF's default)."
    )
    max_grad_norm: float = chosen(
        1.0, gt=0.0, description="Gradient clipping norm of actor and critic (OpenRLHF's default --max_norm)."
    )
    reward: RewardConfig = paper(
        default_factory=RewardConfig, where="§5 reward model", description="Reward computation."
    )
    rollout_batch_size: int = chosen(
        128,
        ge=1,
        unit="prompts",
        description="Prompts per rollout iteration; 128 x 4 samples = 4 optimizer steps per rollout.",
    )
    ppo_epochs: int = chosen(1, ge=1, description="Passes over each rollout's samples.")
    micro_train_batch_size: int = chosen(
        4, ge=1, description="Samples per GPU per training pass.", unit="samples per GPU"
    )
    micro_rollout_batch_size: int = chosen(
        8, ge=1, description="Samples per GPU per scoring pass.", unit="samples per GPU"
    )
    policy_clip: float = chosen(
        0.2, gt=0.0, description="PPO ratio clip ε (the lower side when policy_clip_high is set)."
    )
    policy_clip_high: float | None = chosen(
        None,
        gt=0.0,
        description=(
            "Clip-higher (DAPO): the ratio is clipped to [1 − policy_clip, 1 + policy_clip_high]; None = symmetric."
        ),
    )
    dynamic_filtering: DynamicFiltering = chosen(
        default_factory=DynamicFiltering, description="Keep only prompts the policy sometimes solves."
    )
    health: HealthConfig = chosen(
        default_factory=HealthConfig,
        description="Statistics of every rollout and the rules that warn or stop the run "
        "(the report met reward hacking and output length collapse).",
    )
    value_clip: float = chosen(0.5, gt=0.0, description="Value-function clip.")
    zero_stage: Literal[0, 1, 2, 3] = chosen(2, description="DeepSpeed ZeRO stage for actor and critic.")
    param_dtype: ParamDtype = chosen("bf16", description=PARAM_DTYPE_DESCRIPTION)
    attention: Attention = chosen("flash_attention_2", description=ATTENTION_DESCRIPTION)
    gradient_checkpointing: bool = chosen(True, description="Recompute activations.")
    engine_options: EngineOptions = chosen(
        default_factory=EngineOptions,
        description="Kernels, sequence parallelism (packs the samples) and determinism of actor and critic.",
    )
    lora: LoRA = chosen(default_factory=LoRA, description="Low-rank adapters on the actor (rank 0: full fine-tuning).")
    async_rollouts: AsyncRollouts = chosen(
        default_factory=AsyncRollouts, description="Sample the next rollouts while the actor trains (OpenRLHF)."
    )
    save_every_steps: int = chosen(20, ge=1, description="Checkpoint interval.", unit="rollout iterations")
    max_steps: int | None = chosen(None, ge=1, description=MAX_STEPS_DESCRIPTION, unit="rollout iterations")

    @property
    def uses_critic(self) -> bool:
        return self.estimator in CRITIC_ESTIMATORS

    @property
    def health_statistics(self) -> tuple[str, ...]:
        """The health statistics this engine produces: the native trainer all; OpenRLHF those this project's reward
        function computes from the samples, none when OpenRLHF scores with a local model."""
        if self.engine == "native":
            return tuple(STATISTICS)
        return SAMPLE_STATISTICS if self.reward.mode == "remote_function" else ()

    @property
    def frozen_rollouts(self) -> int:
        """Rollouts in which the actor waits for the critic: actor.frozen_steps with a critic, none without."""
        return self.actor.frozen_steps if self.uses_critic else 0

    @property
    def policy_clip_range(self) -> tuple[float, float]:
        """The ratio's clip below and above 1 (policy_clip, and policy_clip_high where set)."""
        return (self.policy_clip, self.policy_clip if self.policy_clip_high is None else self.policy_clip_high)

    @computed_field(description="Samples generated per rollout iteration: rollout_batch_size x samples_per_prompt.")  # type: ignore[prop-decorator]
    @property
    def samples_per_rollout(self) -> int:
        return self.rollout_batch_size * self.samples_per_prompt

    @computed_field(  # type: ignore[prop-decorator]
        description="Optimizer steps per rollout iteration: samples_per_rollout / train_batch_size x ppo_epochs."
    )
    @property
    def optimizer_steps_per_rollout(self) -> int:
        return self.samples_per_rollout // self.train_batch_size * self.ppo_epochs

    @computed_field(description="Rollout iterations per episode: prompts.count // rollout_batch_size.")  # type: ignore[prop-decorator]
    @property
    def rollouts_per_episode(self) -> int:
        return self.prompts.count // self.rollout_batch_size

    @computed_field(  # type: ignore[prop-decorator]
        description="Rollout iterations in the whole run: max_steps, or rollouts_per_episode x num_episodes."
    )
    @property
    def total_rollouts(self) -> int:
        return self.rollouts_for(self.prompts.count)

    def rollouts_for(self, prompts: int) -> int:
        """Rollout iterations over `prompts` prompts (fewer than prompts.count when fewer could be selected)."""
        return self.max_steps or prompts // self.rollout_batch_size * self.num_episodes

    @computed_field(description="Optimizer steps of actor and critic in the whole run (the LR schedule's length).")  # type: ignore[prop-decorator]
    @property
    def total_optimizer_steps(self) -> int:
        return self.total_rollouts * self.optimizer_steps_per_rollout

    @computed_field(  # type: ignore[prop-decorator]
        description="Longest sequence: prompt_max_length + generate_max_length.", json_schema_extra={"unit": "tokens"}
    )
    @property
    def max_sequence_length(self) -> int:
        return self.prompt_max_length + self.generate_max_length

    @model_validator(mode="after")
    def _gspo_is_per_sample(self) -> PPOConfig:
        if self.policy_loss == "gspo" and self.policy_loss_aggregation != "seq-mean-token-mean":
            raise rule_error(
                "policy_loss_aggregation",
                self.policy_loss_aggregation,
                "GSPO's ratio is one per sample, so its loss is a mean over samples (OpenRLHF uses that "
                "aggregation for gspo whatever loss_agg_mode says)",
                "set ppo.policy_loss_aggregation=seq-mean-token-mean",
            )
        return self

    @model_validator(mode="after")
    def _batch_arithmetic(self) -> PPOConfig:
        engine_rules(self)
        if self.async_rollouts.enabled and self.engine == "native":
            raise rule_error(
                "async_rollouts.enabled",
                True,
                "the native engine samples and trains in one process, one after the other",
                "set async_rollouts.enabled=false, or engine=openrlhf",
            )
        if self.samples_per_rollout % self.train_batch_size:
            raise rule_error(
                "train_batch_size",
                self.train_batch_size,
                f"must divide the samples of one rollout: rollout_batch_size x samples_per_prompt = "
                f"{self.rollout_batch_size} x {self.samples_per_prompt} = {self.samples_per_rollout}",
                (
                    "change rollout_batch_size so that rollout_batch_size x samples_per_prompt is a multiple of "
                    "train_batch_size"
                ),
            )
        if self.rollout_batch_size > self.prompts.count:
            raise rule_error(
                "rollout_batch_size",
                self.rollout_batch_size,
                f"cannot exceed the prompt set (prompts.count = {self.prompts.count}): no rollout would ever run",
                "lower rollout_batch_size or raise prompts.count",
            )
        actor_ranks = self.placement.actor_gpus if self.engine == "openrlhf" else 1
        if self.train_batch_size % (self.micro_train_batch_size * actor_ranks):
            raise rule_error(
                "train_batch_size",
                self.train_batch_size,
                (
                    f"must be divisible by micro_train_batch_size x actor GPUs = {self.micro_train_batch_size} x "
                    f"{actor_ranks}"
                ),
                "change micro_train_batch_size or placement.actor_gpus",
            )
        self._estimator_rules()
        if self.engine == "openrlhf":
            needed, have = self.placement.gpus_needed(self.uses_critic), self.resources.total_gpus
            if needed > have:
                raise rule_error(
                    "placement",
                    needed,
                    f"the roles need {needed} GPUs but the job has resources.nodes x gpus_per_node = {have}",
                    "give fewer GPUs to some roles, set colocate_all=true, or request more GPUs",
                )
        if (
            self.reward.mode == "remote_function"
            and not self.reward.server_url
            and not self.placement.reward_gpus
            and self.engine == "openrlhf"
        ):
            raise rule_error(
                "placement.reward_gpus",
                0,
                "the job starts the reward server and needs at least one GPU for it",
                "set ppo.placement.reward_gpus=1, or point ppo.reward.server_url at a running server",
            )
        if self.reward.server_url and self.placement.reward_gpus and self.engine == "openrlhf":
            raise rule_error(
                "placement.reward_gpus",
                self.placement.reward_gpus,
                "a reward server at reward.server_url is already running; the job should not start another",
                "set placement.reward_gpus=0",
            )
        return self

    def _estimator_rules(self) -> None:
        estimator = self.estimator
        if estimator in GROUP_ESTIMATORS and self.samples_per_prompt < 2:
            raise rule_error(
                "samples_per_prompt",
                self.samples_per_prompt,
                f"estimator={estimator} compares each sample with the other samples of its prompt; with one sample "
                "every advantage is 0 and nothing is learned",
                "set ppo.samples_per_prompt to 2 or more, or use estimator=reinforce or flash_reinforce",
            )
        if self.gamma != 1.0 and estimator not in ("gae", "reinforce"):
            raise rule_error(
                "gamma",
                self.gamma,
                f"estimator={estimator} uses undiscounted returns (OpenRLHF forces γ = 1)",
                "set ppo.gamma=1.0, or use estimator=gae or reinforce",
            )
        filtering = self.dynamic_filtering
        if filtering.enabled and not self.reward.verifier.enabled:
            raise rule_error(
                "dynamic_filtering.enabled",
                True,
                "dynamic filtering keeps prompts by their samples' verifier scores, and no verifier is enabled",
                "set ppo.reward.verifier.enabled=true (prompts need reference answers or tests), or disable filtering",
            )
        if filtering.enabled and self.samples_per_prompt < 2:
            raise rule_error(
                "dynamic_filtering.enabled",
                True,
                "filtering judges a prompt by the spread of its samples' scores",
                "set ppo.samples_per_prompt to 2 or more",
            )
        if self.engine == "openrlhf" and self.reward.mode == "local_model" and self.reward.verifier.enabled:
            raise rule_error(
                "reward.verifier.enabled",
                True,
                (
                    "OpenRLHF scores with a local reward model alone; verifier rewards go through this project's "
                    "reward function"
                ),
                "set ppo.reward.mode=remote_function",
            )
        buffer = self.reward.overlong_buffer_len
        if buffer is not None and buffer > self.generate_max_length:
            raise rule_error(
                "reward.overlong_buffer_len",
                buffer,
                f"cannot exceed generate_max_length = {self.generate_max_length}",
                f"set ppo.reward.overlong_buffer_len to at most {self.generate_max_length}",
            )
