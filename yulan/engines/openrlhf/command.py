"""Validated stage configs -> exact OpenRLHF command lines (flags as named by the release in the config).

Pure Python: it runs on the login node while planning, and never imports OpenRLHF.
"""

from __future__ import annotations

import math

from yulan.schema.experiment import Experiment, ppo_prompt_file

KNOWN_VERSIONS = ("0.11.2",)
MODULES = {
    "sft": "openrlhf.cli.train_sft",
    "dpo": "openrlhf.cli.train_dpo",
    "ppo": "openrlhf.cli.train_ppo_ray",
    "reward_server": "openrlhf.cli.serve_rm",
}
# The job runner replaces this token with the environment's key at start, so the secret is never written anywhere.
WANDB_KEY_PLACEHOLDER = "${WANDB_API_KEY}"
# OpenRLHF caps datasets at --data.max_samples (default 1,000,000); the SFT mix alone has 8.2M samples.
NO_SAMPLE_CAP = 2**31 - 1


class EngineVersionError(ValueError):
    pass


def command(experiment: Experiment, stage: str, job_dir: str) -> list[str]:
    """`python -m <module> <flags>` for one stage; `job_dir` is the stage's directory in the run."""
    if experiment.openrlhf_version not in KNOWN_VERSIONS:
        raise EngineVersionError(
            f"openrlhf_version={experiment.openrlhf_version} is not one of {KNOWN_VERSIONS} this translator knows"
        )
    flags = {"sft": _sft, "dpo": _dpo, "ppo": _ppo}[stage](experiment, job_dir)
    return ["python", "-m", MODULES[stage], *flags]


def reward_server_command(experiment: Experiment) -> list[str] | None:
    """The reward-model server the PPO job starts (None when it uses ppo.reward.server_url or a local model)."""
    reward = experiment.ppo.reward
    if reward.mode != "remote_function" or reward.server_url:
        return None
    return [
        "python",
        "-m",
        MODULES["reward_server"],
        "--reward.model_name_or_path",
        experiment.reward_model.name_or_path,
        "--data.max_len",
        str(reward.server_max_length),
        "--ds.param_dtype",
        experiment.ppo.param_dtype,
        "--host",
        "0.0.0.0",
        "--port",
        str(reward.server_port),
    ]


def _trainer(config, job_dir: str, seed: int) -> list[str]:
    flags = [
        "--train.batch_size",
        str(config.global_batch_size),
        "--train.micro_batch_size",
        str(config.micro_batch_size),
        "--train.max_epochs",
        str(config.epochs),
        "--train.seed",
        str(seed),
        "--adam.lr",
        str(config.learning_rate),
        "--adam.betas",
        *map(str, config.adam_betas),
        "--adam.weight_decay",
        str(config.weight_decay),
        "--lr_scheduler",
        config.lr_scheduler,
        "--lr_warmup_ratio",
        str(config.warmup_ratio),
        "--min_lr_ratio",
        str(config.min_lr_ratio),
        "--max_norm",
        str(config.max_grad_norm),
        "--ds.zero_stage",
        str(config.zero_stage),
        "--ds.param_dtype",
        config.param_dtype,
        "--ds.attn_implementation",
        config.attention,
        "--data.max_len",
        str(config.max_length),
        "--ckpt.output_dir",
        f"{job_dir}/model",
        "--ckpt.path",
        f"{job_dir}/checkpoints",
        "--ckpt.save_steps",
        str(config.save_every_steps),
        "--ckpt.load_enable",  # resume from the latest checkpoint in ckpt.path when one exists
        "--logger.logging_steps",
        str(config.log_every_steps),
    ]
    if config.packing:
        flags.append("--ds.packing_samples")
    if config.gradient_checkpointing:
        flags.append("--model.gradient_checkpointing_enable")
    return flags + _engine_options(config.engine_options, config.lora)


def _engine_options(options, lora) -> list[str]:
    """Kernels, ring attention, determinism and LoRA: flags only where they differ from OpenRLHF's defaults."""
    flags = []
    if options.liger_kernel:
        flags.append("--ds.use_liger_kernel")
    if options.ring_attention_size > 1:
        flags += ["--ds.ring_attn_size", str(options.ring_attention_size)]
    if options.full_determinism:
        flags.append("--train.full_determinism_enable")
    if lora.rank:
        flags += ["--ds.lora.rank", str(lora.rank), "--ds.lora.alpha", str(lora.alpha)]
        flags += ["--ds.lora.target_modules", *lora.target_modules, "--ds.lora.dropout", str(lora.dropout)]
    return flags


def _wandb(experiment: Experiment, stage: str) -> list[str]:
    tracking = experiment.tracking
    if tracking.backend != "wandb" or tracking.mode == "disabled":
        return []
    flags = [
        "--logger.wandb.key",
        WANDB_KEY_PLACEHOLDER,
        "--logger.wandb.project",
        tracking.project,
        "--logger.wandb.group",
        tracking.group or experiment.name,
        "--logger.wandb.run_name",
        f"{experiment.name}-{stage}",
    ]
    return flags + (["--logger.wandb.org", tracking.entity] if tracking.entity else [])


def _sft(experiment: Experiment, job_dir: str) -> list[str]:
    sft = experiment.sft
    flags = [
        "--model.model_name_or_path",
        experiment.resolve(sft.init_from),
        "--data.dataset",
        experiment.resolve(sft.data),
        "--data.input_key",
        "messages",
        "--data.apply_chat_template",
        "--data.multiturn",  # loss on every assistant turn of a conversation
        "--data.max_samples",
        str(NO_SAMPLE_CAP),
        *_trainer(sft, job_dir, experiment.seed),
    ]
    if sft.loss_on == "all":
        flags.append("--model.pretrain_mode_enable")
    return flags + _wandb(experiment, "sft")


def _dpo(experiment: Experiment, job_dir: str) -> list[str]:
    dpo = experiment.dpo
    policy = experiment.resolve(dpo.init_from)
    flags = [
        "--model.model_name_or_path",
        policy,
        "--ref.model_name_or_path",
        policy,
        "--data.dataset",
        experiment.resolve(dpo.data),
        "--data.prompt_key",
        "prompt",
        "--data.chosen_key",
        "chosen",
        "--data.rejected_key",
        "rejected",
        "--data.apply_chat_template",
        "--data.max_samples",
        str(NO_SAMPLE_CAP),
        "--model.beta",
        str(dpo.beta),
        "--model.label_smoothing",
        str(dpo.label_smoothing),
        "--model.nll_loss_coef",
        str(dpo.nll_loss_coef),
        *_trainer(dpo, job_dir, experiment.seed),
    ]
    return flags + _wandb(experiment, "dpo")


def _role(name: str, gpus: int, gpus_per_node: int) -> list[str]:
    nodes = max(math.ceil(gpus / gpus_per_node), 1)
    return [f"--{name}.num_nodes", str(nodes), f"--{name}.num_gpus_per_node", str(min(gpus, gpus_per_node))]


def _ppo(experiment: Experiment, job_dir: str) -> list[str]:
    flags = [
        *_ppo_data_and_batches(experiment, job_dir),
        *_ppo_actor_and_algorithm(experiment),
        *_ppo_placement_and_checkpoints(experiment, job_dir),
        *_ppo_critic(experiment),
        *_ppo_options(experiment, job_dir),
    ]
    return flags + _wandb(experiment, "ppo")


def _ppo_data_and_batches(experiment: Experiment, job_dir: str) -> list[str]:
    ppo = experiment.ppo
    return [
        "--actor.model_name_or_path",
        experiment.resolve(ppo.actor.init_from),
        "--data.prompt_dataset",
        ppo_prompt_file(job_dir),  # written by the job's prompt selection
        "--data.input_key",
        "prompt",
        "--data.label_key",
        "label",
        "--data.apply_chat_template",
        "--data.max_samples",
        str(ppo.prompts.count),
        # OpenRLHF bounds prompt + response by --data.max_len and the response by --rollout.max_new_tokens.
        "--data.max_len",
        str(ppo.max_sequence_length),
        "--rollout.max_new_tokens",
        str(ppo.generate_max_length),
        "--rollout.batch_size",
        str(ppo.rollout_batch_size),
        "--rollout.n_samples_per_prompt",
        str(ppo.samples_per_prompt),
        "--rollout.micro_batch_size",
        str(ppo.micro_rollout_batch_size),
        "--rollout.temperature",
        str(ppo.temperature),
        "--train.batch_size",
        str(ppo.train_batch_size),
        "--train.micro_batch_size",
        str(ppo.micro_train_batch_size),
        "--train.num_episodes",
        str(ppo.num_episodes),
        "--train.max_epochs",
        str(ppo.ppo_epochs),
        "--train.seed",
        str(experiment.seed),
    ]


def _ppo_actor_and_algorithm(experiment: Experiment) -> list[str]:
    ppo = experiment.ppo
    return [
        "--actor.adam.lr",
        str(ppo.actor.learning_rate),
        "--actor.lr_scheduler",
        ppo.lr_scheduler,
        "--actor.lr_warmup_ratio",
        str(ppo.lr_warmup_ratio),
        "--actor.min_lr_ratio",
        str(ppo.min_lr_ratio),
        "--actor.max_norm",
        str(ppo.max_grad_norm),
        "--actor.eps_clip_low_high",
        *map(str, ppo.policy_clip_range),
        "--actor.loss_agg_mode",
        ppo.policy_loss_aggregation,
        "--actor.policy_loss_type",
        ppo.policy_loss,
        "--algo.advantage.estimator",
        ppo.estimator,
        "--algo.advantage.gamma",
        str(ppo.gamma),
        "--algo.kl.init_coef",
        str(ppo.kl.init_coef),
        "--algo.kl.horizon",
        str(ppo.kl.horizon),
        "--algo.kl.estimator",
        ppo.kl.estimator,
        "--reward.clip_range",
        *map(str, ppo.reward.clip_range),
        *_is_correction(ppo.is_correction),
    ]


def _is_correction(correction) -> list[str]:
    if correction.level == "off":
        return []
    return [
        "--algo.advantage.is_correction_level",
        correction.level,
        "--algo.advantage.is_correction_mode",
        correction.mode,
        "--algo.advantage.is_correction_gating",
        correction.gating,
        "--algo.advantage.is_correction_threshold",
        *map(str, correction.threshold),
    ]


def _ppo_placement_and_checkpoints(experiment: Experiment, job_dir: str) -> list[str]:
    ppo, place = experiment.ppo, experiment.ppo.placement
    per_node = ppo.resources.gpus_per_node
    return [
        "--ds.zero_stage",
        str(ppo.zero_stage),
        "--ds.param_dtype",
        ppo.param_dtype,
        "--ds.attn_implementation",
        ppo.attention,
        *_role("actor", place.actor_gpus, per_node),
        *_role("ref", place.ref_gpus, per_node),
        "--vllm.num_engines",
        str(place.vllm_engines),
        "--vllm.tensor_parallel_size",
        str(place.vllm_tensor_parallel),
        "--vllm.gpu_memory_utilization",
        str(place.vllm_gpu_memory_utilization),
        "--ckpt.output_dir",
        f"{job_dir}/model",
        "--ckpt.path",
        f"{job_dir}/checkpoints",
        "--ckpt.save_steps",
        str(ppo.save_every_steps),
        "--ckpt.load_enable",
    ]


def _ppo_critic(experiment: Experiment) -> list[str]:
    ppo, place = experiment.ppo, experiment.ppo.placement
    if not ppo.uses_critic:
        return []
    actor = experiment.resolve(ppo.actor.init_from)
    critic = experiment.reward_model.name_or_path if ppo.critic.init_from == "reward_model" else actor
    return [
        "--critic.model_name_or_path",
        critic,
        # The report freezes the actor for N rollout iterations; OpenRLHF 0.11.2 updates the actor when a
        # 0-based iteration counter exceeds freezing_steps, so N frozen iterations need freezing_steps = N - 1.
        "--critic.freezing_steps",
        str(ppo.frozen_rollouts - 1),
        "--critic.adam.lr",
        str(ppo.critic.learning_rate),
        "--critic.lr_scheduler",
        ppo.lr_scheduler,
        "--critic.lr_warmup_ratio",
        str(ppo.lr_warmup_ratio),
        "--critic.min_lr_ratio",
        str(ppo.min_lr_ratio),
        "--critic.max_norm",
        str(ppo.max_grad_norm),
        "--critic.value_clip",
        str(ppo.value_clip),
        "--algo.advantage.lambd",
        str(ppo.gae_lambda),
        *_role("critic", place.critic_gpus, ppo.resources.gpus_per_node),
    ]


def _ppo_options(experiment: Experiment, job_dir: str) -> list[str]:
    """The flags that are given only when their setting is on."""
    ppo, flags = experiment.ppo, []
    if ppo.kl.use_loss:
        flags.append("--algo.kl.use_loss")
    if ppo.dynamic_filtering.enabled:
        flags += [
            "--algo.dynamic_filtering_enable",
            "--algo.dynamic_filtering_range",
            *map(str, ppo.dynamic_filtering.range),
        ]
    if ppo.reward.overlong_buffer_len is not None:
        flags += [
            "--reward.overlong_buffer_len",
            str(ppo.reward.overlong_buffer_len),
            "--reward.overlong_penalty_factor",
            str(ppo.reward.overlong_penalty_factor),
        ]
    if ppo.reward.stop_properly_penalty_coef is not None:
        flags += ["--reward.stop_properly_penalty_coef", str(ppo.reward.stop_properly_penalty_coef)]
    if ppo.kl.adaptive:  # OpenRLHF switches to its adaptive controller exactly when a target is given
        flags += ["--algo.kl.target", str(ppo.kl.target)]
    if ppo.reward.mode == "remote_function":
        flags += ["--reward.remote_url", f"{job_dir}/reward_func.py"]
    else:
        flags += ["--reward.model_name_or_path", experiment.reward_model.name_or_path]
    if ppo.placement.colocate_all:
        flags.append("--train.colocate_all")
    if ppo.gradient_checkpointing:
        flags.append("--actor.gradient_checkpointing_enable")
    if ppo.engine_options.ring_attention_size > 1:
        flags.append("--ds.packing_samples")  # what ring attention runs on (OpenRLHF would switch it on, warning)
    if ppo.async_rollouts.enabled:
        flags += ["--train.async_enable", "--train.async_queue_size", str(ppo.async_rollouts.queue_size)]
    if ppo.async_rollouts.partial:
        flags.append("--train.partial_rollout_enable")
    return flags + _engine_options(ppo.engine_options, ppo.lora)
