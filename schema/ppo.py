"""PPO with the report's stabilisation tricks (report §5)."""

from __future__ import annotations

from typing import Literal

from pydantic import computed_field, model_validator

from schema.common import (
    ATTENTION_DESCRIPTION,
    MAX_STEPS_DESCRIPTION,
    PARAM_DTYPE_DESCRIPTION,
    Attention,
    Engine,
    ParamDtype,
    Resources,
    StageRef,
    engine_rules,
    gpu_job,
)
from schema.fields import Section, chosen, report, rule_error

PPO_TABLE = "§5 PPO hyperparameter table"


class PromptSet(Section):
    count: int = report(10_000, ge=1, unit="prompts", where="§5 prompt data: '10,000 challenging prompts'", description="Prompts PPO trains on.")
    source: StageRef = report(
        "preference", where="§5 prompt data: 'from the DPO dataset'", description="Where prompts are selected from."
    )
    difficulty: Literal["lowest_mean_reward", "lowest_pass_rate"] = chosen(
        "lowest_mean_reward",
        description="'Challenging' is not defined in the report: prompts whose sampled completions scored lowest.",
    )


class ActorConfig(Section):
    init_from: StageRef = report("dpo", where="§5: 'Building upon the DPO model'", description="Actor (and reference) weights.")
    learning_rate: float = report(1e-6, gt=0.0, where=PPO_TABLE, description="Actor learning rate.")
    frozen_steps: int = report(
        15,
        ge=0,
        unit="rollout iterations",
        where=f"{PPO_TABLE}: 'Freezing Actor Steps 15'",
        description="The first N rollout iterations update only the critic.",
    )


class CriticConfig(Section):
    init_from: Literal["reward_model", "policy"] = report(
        "reward_model",
        where="§5: 'The critic model was initialized from the reward model'",
        description="Critic weights: the reward model, or the policy with a fresh value head.",
    )
    learning_rate: float = report(1e-5, gt=0.0, where=PPO_TABLE, description="Critic learning rate.")


class KLController(Section):
    adaptive: bool = report(True, where="§5: 'Adaptive KL Controller'", description="Adjust the KL coefficient toward the target.")
    init_coef: float = report(0.01, ge=0.0, where=PPO_TABLE, description="Initial KL coefficient (beta).")
    target: float = report(0.06, gt=0.0, where=PPO_TABLE, description="KL divergence target.")
    horizon: int = chosen(10_000, ge=1, unit="samples", description="Adaptive controller horizon (OpenRLHF's default).")


class Penalties(Section):
    """Rule-based penalties for reward hacking, added to the reward-model score (report §5)."""

    incomplete: float = report(
        -5.0,
        le=0.0,
        where="§5 rule-based penalties: incomplete sentences / truncated responses",
        description="Added when the response stops mid-sentence or was truncated (size not in the report; 0 disables).",
    )
    sentence_end_marks: str = chosen(
        ".!?。！？…\"'”’)]}`*$|>", description="Characters a complete response may end with (code fences must be closed)."
    )
    incomplete_min_words: int = chosen(
        6, ge=1, description="A last line without an end mark counts as cut off only from this many words (short answers are fine; 2 CJK characters = 1 word)."
    )
    mixed_language: float = report(
        -5.0,
        le=0.0,
        where="§5 rule-based penalties: mixed-language responses",
        description="Added for Chinese characters in an answer to an English prompt, and the converse (size not in the report).",
    )
    chinese_prompt_min_cjk_fraction: float = chosen(
        0.3, gt=0.0, le=1.0, description="A prompt is Chinese when at least this share of its letters are CJK."
    )
    chinese_response_min_cjk_fraction: float = chosen(
        0.2, ge=0.0, le=1.0, description="An answer to a Chinese prompt needs at least this share of CJK letters."
    )
    language_exempt_words: tuple[str, ...] = chosen(
        ("chinese", "mandarin", "english", "translate", "translation", "pinyin", "中文", "汉语", "英文", "英语", "翻译"),
        description="Prompts mentioning these may legitimately mix languages (translation, language questions).",
    )
    generic: float = report(
        -10.0,
        le=0.0,
        where="§5 rule-based penalties: single-sentence responses like 'I hope this helps'",
        description="Added to short generic replies (size not in the report).",
    )
    generic_phrases: tuple[str, ...] = chosen(
        (
            "I hope this helps",
            "Let me know if you have any other questions",
            "Feel free to ask if you have more questions",
            "希望对你有帮助",
            "希望这能帮到你",
        ),
        description="Phrases that score highly for any query.",
    )
    generic_max_sentences: int = chosen(1, ge=1, description="A reply this short that contains a generic phrase is penalised.")


class RewardConfig(Section):
    mode: Literal["remote_function", "local_model"] = chosen(
        "remote_function",
        description="remote_function re-renders each sample in the reward model's own chat template (needed when tokenizers differ).",
    )
    server_url: str | None = chosen(None, description="Reward-model server; None = the PPO job starts one on `reward_gpus`.")
    server_port: int = chosen(5000, ge=1024, le=65535, description="Port of the reward server the PPO job starts.")
    server_max_length: int = chosen(
        8192, ge=1, unit="tokens",
        description="The server truncates at this many reward-model tokens (serve_rm's default, 2048, cuts PPO samples).",
    )
    server_start_timeout_s: float = chosen(1800.0, gt=0.0, description="How long the job waits for the server to load.", unit="seconds")
    rm_prompt_format: str = chosen(
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n{response}<|eot_id|>",
        description="The reward model's own chat format (Llama-3.1's for Skywork); the server applies none.",
    )
    actor_stop_strings: tuple[str, ...] = chosen(
        ("<|endoftext|>", "</s>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>"),
        description="End-of-turn tokens of the actor's template, stripped from responses before scoring.",
    )
    clip_range: tuple[float, float] = report((-20.0, 10.0), where=f"{PPO_TABLE}: 'Reward Clip Range (-20, 10)'", description="Rewards are clipped to [low, high].")
    penalties: Penalties = report(default_factory=Penalties, where="§5", description="Rule-based penalties.")
    timeout_s: float = chosen(60.0, gt=0.0, description="Per-request timeout to the reward server.", unit="seconds")
    max_retries: int = chosen(3, ge=0, description="Retries before the fallback reward is used.")
    fallback_reward: float = chosen(0.0, description="Reward for a sample the server could not score (counted in the logs).")

    @model_validator(mode="after")
    def _clip(self) -> RewardConfig:
        low, high = self.clip_range
        if low >= high:
            raise rule_error("clip_range", list(self.clip_range), "low must be below high", "write it as [low, high], e.g. [-20, 10]")
        if not low <= self.fallback_reward <= high:
            raise rule_error(
                "fallback_reward", self.fallback_reward, f"must lie inside clip_range [{low}, {high}]", "choose a value inside the clip range"
            )
        return self


class Placement(Section):
    """How the PPO job's GPUs are shared between the actor, critic, reference, reward server and vLLM."""

    colocate_all: bool = chosen(False, description="Run every model on every GPU in turn (needs actor GPUs = vLLM GPUs).")
    actor_gpus: int = chosen(2, ge=1, description="GPUs training the actor.")
    critic_gpus: int = chosen(2, ge=1, description="GPUs training the critic.")
    ref_gpus: int = chosen(1, ge=1, description="GPUs for the frozen reference.")
    reward_gpus: int = chosen(1, ge=0, description="GPUs for the reward-model server started by the job (0 with server_url).")
    vllm_engines: int = chosen(2, ge=1, description="vLLM generation engines (OpenRLHF always generates with vLLM).")
    vllm_tensor_parallel: int = chosen(1, ge=1, description="GPUs per vLLM engine.")
    vllm_gpu_memory_utilization: float = chosen(0.9, gt=0.0, le=1.0, description="vLLM's share of GPU memory (~0.5 when colocated).")

    @property
    def vllm_gpus(self) -> int:
        return self.vllm_engines * self.vllm_tensor_parallel

    def gpus_needed(self) -> int:
        if self.colocate_all:
            return max(self.actor_gpus, self.critic_gpus, self.ref_gpus, self.vllm_gpus) + self.reward_gpus
        return self.actor_gpus + self.critic_gpus + self.ref_gpus + self.vllm_gpus + self.reward_gpus

    @model_validator(mode="after")
    def _colocation(self) -> Placement:
        if self.colocate_all and self.actor_gpus != self.vllm_gpus:
            raise rule_error(
                "actor_gpus", self.actor_gpus,
                f"colocate_all needs actor GPUs = vLLM engines x tensor parallel = {self.vllm_gpus}",
                "make actor_gpus equal vllm_engines x vllm_tensor_parallel",
            )
        if self.colocate_all and self.vllm_gpu_memory_utilization > 0.6:
            raise rule_error(
                "vllm_gpu_memory_utilization", self.vllm_gpu_memory_utilization,
                "with colocate_all, vLLM shares each GPU with training and must leave room (<= 0.6)",
                "set vllm_gpu_memory_utilization=0.5",
            )
        return self


class PPOConfig(Section):
    engine: Engine = chosen("openrlhf", description="openrlhf (report: 'carried out using the OpenRLHF framework') or native.")
    resources: Resources = report(
        default_factory=lambda: gpu_job(nodes=1, gpus_per_node=8, hours=48),
        where="§5 training recipe: 'We used 8xH800 GPUs'",
        description="Job layout.",
    )
    placement: Placement = chosen(default_factory=Placement, description="GPU roles inside the job.")
    prompts: PromptSet = report(default_factory=PromptSet, where="§5 prompt data", description="PPO prompts.")
    actor: ActorConfig = report(default_factory=ActorConfig, where="§5", description="Policy being trained.")
    critic: CriticConfig = report(default_factory=CriticConfig, where="§5", description="Value model.")
    train_batch_size: int = report(128, gt=0, unit="samples", where=PPO_TABLE, description="Samples per optimizer step.")
    num_episodes: int = report(4, ge=1, where=PPO_TABLE, description="Passes over the prompt set.")
    samples_per_prompt: int = report(4, ge=1, where=PPO_TABLE, description="Responses generated per prompt.")
    prompt_max_length: int = report(2048, ge=1, unit="tokens", where=PPO_TABLE, description="Longest prompt (longer ones are left-truncated).")
    generate_max_length: int = report(2048, ge=1, unit="tokens", where=PPO_TABLE, description="Longest response.")
    kl: KLController = report(default_factory=KLController, where="§5", description="KL penalty against the reference.")
    gae_lambda: float = report(0.95, ge=0.0, le=1.0, where=PPO_TABLE, description="General Advantage Estimation λ.")
    gamma: float = report(1.0, ge=0.0, le=1.0, where=PPO_TABLE, description="Discount factor γ.")
    temperature: float = report(1.0, gt=0.0, where=PPO_TABLE, description="Generation temperature.")
    lr_warmup_ratio: float = report(0.0, ge=0.0, lt=1.0, where=PPO_TABLE, description="Learning-rate warmup ratio (actor and critic).")
    lr_scheduler: Literal["constant", "cosine_with_min_lr"] = report("constant", where=PPO_TABLE, description="LR schedule (actor and critic).")
    min_lr_ratio: float = chosen(0.1, ge=0.0, le=1.0, description="Final LR as a share of the peak (cosine_with_min_lr; OpenRLHF's default).")
    max_grad_norm: float = chosen(1.0, gt=0.0, description="Gradient clipping norm of actor and critic (OpenRLHF's default --max_norm).")
    reward: RewardConfig = report(default_factory=RewardConfig, where="§5 reward model", description="Reward computation.")
    rollout_batch_size: int = chosen(
        128, ge=1, unit="prompts", description="Prompts per rollout iteration; 128 x 4 samples = 4 optimizer steps per rollout."
    )
    ppo_epochs: int = chosen(1, ge=1, description="Passes over each rollout's samples.")
    micro_train_batch_size: int = chosen(4, ge=1, description="Samples per GPU per training pass.", unit="samples per GPU")
    micro_rollout_batch_size: int = chosen(8, ge=1, description="Samples per GPU per scoring pass.", unit="samples per GPU")
    policy_clip: float = chosen(0.2, gt=0.0, description="PPO ratio clip ε.")
    value_clip: float = chosen(0.5, gt=0.0, description="Value-function clip.")
    zero_stage: Literal[0, 1, 2, 3] = chosen(2, description="DeepSpeed ZeRO stage for actor and critic.")
    param_dtype: ParamDtype = chosen("bf16", description=PARAM_DTYPE_DESCRIPTION)
    attention: Attention = chosen("flash_attention_2", description=ATTENTION_DESCRIPTION)
    gradient_checkpointing: bool = chosen(True, description="Recompute activations.")
    save_every_steps: int = chosen(20, ge=1, description="Checkpoint interval.", unit="rollout iterations")
    max_steps: int | None = chosen(None, ge=1, description=MAX_STEPS_DESCRIPTION, unit="rollout iterations")

    @computed_field(description="Samples generated per rollout iteration: rollout_batch_size x samples_per_prompt.")
    @property
    def samples_per_rollout(self) -> int:
        return self.rollout_batch_size * self.samples_per_prompt

    @computed_field(description="Optimizer steps per rollout iteration: samples_per_rollout / train_batch_size x ppo_epochs.")
    @property
    def optimizer_steps_per_rollout(self) -> int:
        return self.samples_per_rollout // self.train_batch_size * self.ppo_epochs

    @computed_field(description="Rollout iterations per episode: prompts.count // rollout_batch_size.")
    @property
    def rollouts_per_episode(self) -> int:
        return self.prompts.count // self.rollout_batch_size

    @computed_field(description="Rollout iterations in the whole run: max_steps, or rollouts_per_episode x num_episodes.")
    @property
    def total_rollouts(self) -> int:
        return self.rollouts_for(self.prompts.count)

    def rollouts_for(self, prompts: int) -> int:
        """Rollout iterations over `prompts` prompts (fewer than prompts.count when fewer could be selected)."""
        return self.max_steps or prompts // self.rollout_batch_size * self.num_episodes

    @computed_field(description="Optimizer steps of actor and critic in the whole run (the LR schedule's length).")
    @property
    def total_optimizer_steps(self) -> int:
        return self.total_rollouts * self.optimizer_steps_per_rollout

    @computed_field(description="Longest sequence: prompt_max_length + generate_max_length.", json_schema_extra={"unit": "tokens"})
    @property
    def max_sequence_length(self) -> int:
        return self.prompt_max_length + self.generate_max_length

    @model_validator(mode="after")
    def _batch_arithmetic(self) -> PPOConfig:
        engine_rules(self.engine, self.attention, self.resources, self.max_steps)
        if self.samples_per_rollout % self.train_batch_size:
            raise rule_error(
                "train_batch_size", self.train_batch_size,
                f"must divide the samples of one rollout: rollout_batch_size x samples_per_prompt = "
                f"{self.rollout_batch_size} x {self.samples_per_prompt} = {self.samples_per_rollout}",
                "change rollout_batch_size so that rollout_batch_size x samples_per_prompt is a multiple of train_batch_size",
            )
        if self.rollout_batch_size > self.prompts.count:
            raise rule_error(
                "rollout_batch_size", self.rollout_batch_size,
                f"cannot exceed the prompt set (prompts.count = {self.prompts.count}): no rollout would ever run",
                "lower rollout_batch_size or raise prompts.count",
            )
        actor_ranks = self.placement.actor_gpus if self.engine == "openrlhf" else 1
        if self.train_batch_size % (self.micro_train_batch_size * actor_ranks):
            raise rule_error(
                "train_batch_size", self.train_batch_size,
                f"must be divisible by micro_train_batch_size x actor GPUs = {self.micro_train_batch_size} x {actor_ranks}",
                "change micro_train_batch_size or placement.actor_gpus",
            )
        if self.engine == "openrlhf":
            needed, have = self.placement.gpus_needed(), self.resources.total_gpus
            if needed > have:
                raise rule_error(
                    "placement", needed,
                    f"the roles need {needed} GPUs but the job has resources.nodes x gpus_per_node = {have}",
                    "give fewer GPUs to some roles, set colocate_all=true, or request more GPUs",
                )
        if self.reward.mode == "remote_function" and not self.reward.server_url and not self.placement.reward_gpus \
                and self.engine == "openrlhf":
            raise rule_error(
                "placement.reward_gpus", 0, "the job starts the reward server and needs at least one GPU for it",
                "set ppo.placement.reward_gpus=1, or point ppo.reward.server_url at a running server",
            )
        if self.reward.server_url and self.placement.reward_gpus and self.engine == "openrlhf":
            raise rule_error(
                "placement.reward_gpus", self.placement.reward_gpus,
                "a reward server at reward.server_url is already running; the job should not start another",
                "set placement.reward_gpus=0",
            )
        return self
