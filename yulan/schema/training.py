"""SFT (report §3 recipe) and DPO (report §4 recipe)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import computed_field, model_validator

from yulan.schema.common import (
    ATTENTION_DESCRIPTION,
    MAX_STEPS_DESCRIPTION,
    PARAM_DTYPE_DESCRIPTION,
    Attention,
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

LRScheduler = Literal["constant", "constant_with_warmup", "cosine_with_min_lr", "linear"]


class Trainer(Section):
    """Settings every DeepSpeed-style trainer shares. Stages redeclare the fields whose defaults differ."""

    engine: Engine = chosen(
        "openrlhf", description="openrlhf on GPU clusters; native for one machine (CPU or one GPU)."
    )
    resources: Resources
    global_batch_size: int
    micro_batch_size: int = chosen(1, ge=1, description="Rows per GPU per forward pass.", unit="rows per GPU")
    epochs: int
    learning_rate: float
    lr_scheduler: LRScheduler = chosen("cosine_with_min_lr", description="OpenRLHF's default schedule.")
    warmup_ratio: float = chosen(0.03, ge=0.0, lt=1.0, description="Share of optimizer steps spent warming up.")
    min_lr_ratio: float = chosen(
        0.1, ge=0.0, le=1.0, description="Final LR as a share of the peak (cosine_with_min_lr)."
    )
    weight_decay: float = chosen(0.0, ge=0.0, description="AdamW weight decay.")
    adam_betas: tuple[float, float] = chosen((0.9, 0.95), description="AdamW betas.")
    max_grad_norm: float = chosen(1.0, gt=0.0, description="Gradient clipping norm.")
    zero_stage: Literal[0, 1, 2, 3] = chosen(2, description="DeepSpeed ZeRO stage.")
    param_dtype: ParamDtype = chosen("bf16", description=PARAM_DTYPE_DESCRIPTION)
    attention: Attention = chosen("flash_attention_2", description=ATTENTION_DESCRIPTION)
    packing: bool = chosen(True, description="Pack several samples per row without attention across them (no padding).")
    gradient_checkpointing: bool = chosen(True, description="Recompute activations to fit long sequences.")
    save_every_steps: int = chosen(500, ge=1, description="Checkpoint interval.", unit="optimizer steps")
    log_every_steps: int = chosen(1, ge=1, description="Metric logging interval.", unit="optimizer steps")
    max_steps: int | None = chosen(None, ge=1, description=MAX_STEPS_DESCRIPTION, unit="optimizer steps")
    engine_options: EngineOptions = chosen(
        default_factory=EngineOptions, description="Kernels, sequence parallelism and determinism."
    )
    lora: LoRA = chosen(default_factory=LoRA, description="Low-rank adapters (rank 0: full fine-tuning).")

    @computed_field(description="Data-parallel ranks: every GPU of the job (one process on a CPU-only job).")  # type: ignore[prop-decorator]
    @property
    def data_parallel_size(self) -> int:
        return max(self.resources.total_gpus, 1)

    @computed_field(description="Micro batches accumulated per optimizer step: global / (micro x data-parallel).")  # type: ignore[prop-decorator]
    @property
    def gradient_accumulation_steps(self) -> int:
        return max(self.global_batch_size // (self.micro_batch_size * self.data_parallel_size), 1)

    @model_validator(mode="after")
    def _batch_divides(self) -> Trainer:
        per_step = self.micro_batch_size * self.data_parallel_size
        if self.global_batch_size % per_step:
            raise rule_error(
                "global_batch_size",
                self.global_batch_size,
                f"must be divisible by micro_batch_size x data-parallel ranks = {self.micro_batch_size} x "
                f"{self.data_parallel_size} = {per_step}",
                f"use a global batch that is a multiple of {per_step}, or change micro_batch_size / the GPU count",
            )
        if self.engine == "openrlhf" and self.resources.gpus_per_node == 0:
            raise rule_error(
                "engine",
                self.engine,
                "the openrlhf engine needs GPUs (resources.gpus_per_node >= 1)",
                "set engine=native for a CPU run, or give the job GPUs",
            )
        engine_rules(self)
        if self.engine_options.ring_attention_size > 1 and not self.packing:
            raise rule_error(
                "packing",
                self.packing,
                "OpenRLHF's ring attention runs on packed samples",
                "set packing=true, or engine_options.ring_attention_size=1",
            )
        if self.engine == "openrlhf" and self.packing and self.attention != "flash_attention_2":
            raise rule_error(
                "attention",
                self.attention,
                "OpenRLHF packs samples only with flash_attention_2",
                "set attention=flash_attention_2 or packing=false",
            )
        return self


class SFTConfig(Trainer):
    init_from: StageRef = chosen("base", description="Starting weights: 'base' (the model group), a stage, or a path.")
    data: StageRef = chosen("curation", description="Training data: the curation stage's output or a file.")
    resources: Resources = paper(
        default_factory=lambda: gpu_job(nodes=4, gpus_per_node=8, hours=72),
        where="§3 training settings: '4 nodes equipped with 8xH800 GPUs'",
        description="Job layout.",
    )
    global_batch_size: int = paper(
        512,
        gt=0,
        unit="samples",
        where="§3 training settings: 'effective batch size of 512'",
        description="Samples per optimizer step.",
    )
    max_length: int = paper(
        28_672,
        gt=0,
        unit="tokens",
        where="§3 training settings: 'maximum sequence length of 28K tokens'",
        description="Longest sample.",
    )
    epochs: int = paper(
        2, ge=1, where="§3 training settings: 'trained for 2 epochs'", description="Passes over the data."
    )
    learning_rate: float = paper(
        1e-5, gt=0.0, where="§3 training settings: 'learning rate of 1e-5'", description="Peak LR."
    )
    loss_on: Literal["assistant", "all"] = chosen(
        "assistant", description="Tokens that carry loss: assistant turns only."
    )

    @computed_field(description="Upper bound of tokens per optimizer step: global batch x max length.")  # type: ignore[prop-decorator]
    @property
    def max_tokens_per_step(self) -> int:
        return self.global_batch_size * self.max_length


# The preference losses the native engine computes, one entry each in yulan/engines/native/dpo.py LOSSES
PreferenceLoss = Literal["sigmoid"]


class DPOConfig(Trainer):
    init_from: StageRef = chosen("sft", description="Policy (and frozen reference) weights: the SFT stage or a path.")
    data: StageRef = chosen("preference", description="Preference pairs: the preference stage's output or a file.")
    resources: Resources = chosen(
        default_factory=lambda: gpu_job(nodes=1, gpus_per_node=8, hours=24),
        description="The report does not give DPO's hardware; one 8-GPU node fits a 2.4B policy plus reference.",
    )
    global_batch_size: int = paper(
        128,
        gt=0,
        unit="pairs",
        where="§4 preference tuning recipe: 'batch size of 128'",
        description="Pairs per optimizer step.",
    )
    max_length: int = chosen(
        4096,
        gt=0,
        unit="tokens",
        description="Prompt + response length. OpenRLHF's default of 512 would truncate most pairs.",
    )
    epochs: int = paper(
        2, ge=1, where="§4 preference tuning recipe: 'trained for 2 epochs'", description="Passes over the pairs."
    )
    learning_rate: float = paper(
        5e-7, gt=0.0, where="§4 preference tuning recipe: 'learning rate of 5e-7'", description="Peak LR."
    )
    beta: float = paper(
        0.1, gt=0.0, where="§4 preference tuning recipe: 'β set to 0.1'", description="DPO inverse temperature."
    )
    warmup_ratio: float = chosen(0.1, ge=0.0, lt=1.0, description="Share of optimizer steps spent warming up.")
    loss: PreferenceLoss = paper(
        "sigmoid",
        where="§4 preference tuning: DPO",
        description="The preference loss (yulan/engines/native/dpo.py LOSSES): sigmoid is DPO's -log σ(β·margin), "
        "OpenRLHF's default.",
    )
    label_smoothing: float = chosen(
        0.0, ge=0.0, lt=0.5, description="Conservative-DPO label smoothing (0 = plain DPO)."
    )
    nll_loss_coef: float = chosen(
        0.0,
        ge=0.0,
        description="Weight of an added NLL loss on chosen responses: the mean over them of each one's mean token "
        "NLL, as OpenRLHF (0 = none).",
    )


def steps_per_epoch(samples: int, global_batch_size: int) -> int:
    return math.ceil(samples / global_batch_size)


def total_steps(samples: int | None, config: Trainer) -> int:
    """Optimizer steps of a run over `samples`: max_steps when set, else every epoch."""
    if config.max_steps:
        return config.max_steps
    assert samples is not None, "without max_steps the steps follow from the samples"
    return steps_per_epoch(samples, config.global_batch_size) * config.epochs
