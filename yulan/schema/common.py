"""Settings shared by several stages: job resources, data shares, stage references."""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import Field

from yulan.schema.fields import Section, chosen, rule_error

PPO_TABLE = "§5 PPO hyperparameter table"  # where the report states most PPO and reward values

STAGES = ("curation", "sft", "preference", "dpo", "ppo", "eval")
StageName = Literal["curation", "sft", "preference", "dpo", "ppo", "eval"]
Engine = Literal["openrlhf", "native"]
BadRecordPolicy = Literal["stop", "skip"]
ParamDtype = Literal["bf16", "fp16", "fp32"]
Attention = Literal["flash_attention_2", "sdpa", "eager"]
ATTENTION_DESCRIPTION = (
    "Attention kernel; packing on OpenRLHF needs flash_attention_2 (a CUDA GPU and the flash-attn package)."
)
PARAM_DTYPE_DESCRIPTION = (
    "Compute precision of the trained models (on CPU too). Weights and optimizer state stay fp32 (master weights), "
    "as DeepSpeed keeps them, so small updates are not rounded away; fp16 adds dynamic loss scaling."
)
MAX_STEPS_DESCRIPTION = (
    "Stop after this many steps (None = the whole run). Like transformers' Trainer, it overrides the epochs: the "
    "LR schedule spans these steps and the data continues into further epochs if needed. Native engine only."
)


class Resources(Section):
    """What one job of a stage asks the scheduler for."""

    partition: Literal["gpu", "cpu"] = Field(description="Which partition of the cluster profile the job uses.")
    nodes: int = Field(ge=1, description="Nodes per job.")
    gpus_per_node: int = Field(ge=0, description="GPUs per node (0 = CPU job).")
    cpus_per_node: int = Field(default=16, ge=1, description="CPU cores per node.")
    mem_gb_per_node: int | None = Field(
        default=None, ge=1, description="Memory per node (GiB); None = scheduler default."
    )
    time_limit_minutes: int = Field(default=24 * 60, ge=1, description="Wall-clock limit of one job (minutes).")

    @property
    def total_gpus(self) -> int:
        return self.nodes * self.gpus_per_node


class EngineOptions(Section):
    """How the engine computes, not what: speed, memory and reproducibility (OpenRLHF's DeepSpeed-side options)."""

    liger_kernel: bool = chosen(
        False, description="Liger's fused kernels (OpenRLHF --ds.use_liger_kernel; CUDA and the liger-kernel package)."
    )
    ring_attention_size: int = chosen(
        1,
        ge=1,
        description="Sequence parallelism: each sequence split over this many GPUs with ring attention (OpenRLHF "
        "--ds.ring_attn_size; packed, flash_attention_2), for samples longer than one GPU holds.",
        unit="GPUs",
    )
    full_determinism: bool = chosen(
        False,
        description="Deterministic kernels, slower (OpenRLHF --train.full_determinism_enable; native: torch's "
        "deterministic algorithms).",
    )


class LoRA(Section):
    """Low-rank adapters instead of full fine-tuning (OpenRLHF --ds.lora.*; rank 0 = off)."""

    rank: int = chosen(0, ge=0, description="Adapter rank; 0 trains every weight.")
    alpha: int = chosen(16, ge=1, description="Adapter scale α (the update is α/rank · BA).")
    target_modules: tuple[str, ...] = chosen(
        ("all-linear",), min_length=1, description="Modules that get adapters: all-linear, or module names."
    )
    dropout: float = chosen(0.0, ge=0.0, lt=1.0, description="Dropout on the adapters' input.")


class TrainedStage(Protocol):
    """What `engine_rules` reads of a trained stage's settings (SFT, DPO and PPO each have these)."""

    @property
    def engine(self) -> str: ...
    @property
    def attention(self) -> str: ...
    @property
    def resources(self) -> Resources: ...
    @property
    def max_steps(self) -> int | None: ...
    @property
    def param_dtype(self) -> str: ...
    @property
    def engine_options(self) -> EngineOptions: ...
    @property
    def lora(self) -> LoRA: ...


def engine_rules(stage: TrainedStage) -> None:
    """Rules every trained stage shares (SFT, DPO, PPO): what its engine and machine can carry out."""
    engine, attention, resources, options = stage.engine, stage.attention, stage.resources, stage.engine_options
    param_dtype, max_steps, lora = stage.param_dtype, stage.max_steps, stage.lora
    if engine == "native":
        if options.liger_kernel:
            raise rule_error(
                "engine_options.liger_kernel",
                True,
                "the native engine runs transformers' own modules; Liger's fused kernels are OpenRLHF's (CUDA)",
                "set engine_options.liger_kernel=false, or engine=openrlhf",
            )
        if options.ring_attention_size > 1:
            raise rule_error(
                "engine_options.ring_attention_size",
                options.ring_attention_size,
                "the native engine is one process; ring attention splits each sequence over several GPUs",
                "set engine_options.ring_attention_size=1, or engine=openrlhf",
            )
        if lora.rank:
            raise rule_error(
                "lora.rank",
                lora.rank,
                "the native engine trains every weight; adapters are OpenRLHF's here",
                "set lora.rank=0, or engine=openrlhf",
            )
    elif options.ring_attention_size > 1:
        if attention != "flash_attention_2":
            raise rule_error(
                "attention",
                attention,
                "OpenRLHF's ring attention runs on packed samples, which need flash_attention_2",
                "set attention=flash_attention_2, or engine_options.ring_attention_size=1",
            )
        if resources.total_gpus % options.ring_attention_size:
            raise rule_error(
                "engine_options.ring_attention_size",
                options.ring_attention_size,
                f"must divide the job's {resources.total_gpus} GPUs (each ring is a group of them)",
                "choose a divisor of nodes x gpus_per_node",
            )
    if param_dtype == "fp32" and engine == "openrlhf":
        raise rule_error(
            "param_dtype",
            param_dtype,
            "OpenRLHF 0.11.2's --ds.param_dtype takes bf16 or fp16 only (its parser refuses fp32)",
            "set param_dtype=bf16 (master weights stay fp32 under DeepSpeed), or engine=native for fp32 compute",
        )
    if attention == "flash_attention_2" and resources.gpus_per_node == 0:
        raise rule_error(
            "attention",
            attention,
            "flash-attention runs only on CUDA GPUs and this job has none (resources.gpus_per_node = 0)",
            "set attention=sdpa (or eager) for a CPU job, or give the job a GPU",
        )
    if max_steps is not None and engine == "openrlhf":
        raise rule_error(
            "max_steps",
            max_steps,
            "OpenRLHF 0.11.2 has no step limit; only the native engine stops after max_steps",
            "remove max_steps (bound the data or the epochs instead), or set engine=native",
        )


def gpu_job(nodes: int, gpus_per_node: int, hours: int) -> Resources:
    return Resources(
        partition="gpu",
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        cpus_per_node=8 * gpus_per_node,
        time_limit_minutes=hours * 60,
    )


def cpu_job(cpus: int, hours: int) -> Resources:
    return Resources(partition="cpu", nodes=1, gpus_per_node=0, cpus_per_node=cpus, time_limit_minutes=hours * 60)


class Share(Section):
    """One part of a data mixture: a target count and its share of the whole."""

    count: int = Field(
        ge=0, description="Samples in this part (0 leaves it out).", json_schema_extra={"unit": "samples"}
    )
    ratio: float = Field(ge=0.0, le=1.0, description="This part's share of the total.")


def check_shares(shares: dict[str, Share], tolerance: float, where: str) -> None:
    """Ratios sum to 1 and agree with the counts (the report rounds ratios to whole percents)."""
    if not shares:
        raise rule_error(where, {}, "a mixture needs at least one part", f"add a part under {where}")
    ratio_sum = sum(share.ratio for share in shares.values())
    if abs(ratio_sum - 1.0) > 1e-6:
        raise rule_error(
            where,
            {name: share.ratio for name, share in shares.items()},
            f"ratios must sum to 1 (they sum to {ratio_sum:.4f})",
            "adjust the ratios so that they add up to 1",
        )
    total = sum(share.count for share in shares.values())
    for name, share in shares.items():
        actual = share.count / total if total else 0.0
        if abs(actual - share.ratio) > tolerance:
            raise rule_error(
                f"{where}.{name}.ratio",
                share.ratio,
                f"ratio must match count/total = {share.count}/{total} = {actual:.4f} within {tolerance}",
                f"set this ratio to {actual:.2f}, or change the counts",
            )


# A stage reference names the stage whose output a stage reads ("sft"), "base" for the `model` group's
# weights, or anything else: a path or hub id, used as it is.
StageRef = str


# What a complete response's last line looks like: one rule for curation's truncation filter and PPO's penalty.
SENTENCE_END_MARKS = ".!?。！？…\"'”’`$|>"
SENTENCE_END_MARKS_DESCRIPTION = (
    "Characters a complete last line may end with; a closing bracket or bold counts when it closes what the line "
    "opened, a code fence when it closes the last block."
)
CONTINUATION_WORDS = (
    "a",
    "an",
    "the",
    "of",
    "to",
    "at",
    "by",
    "for",
    "with",
    "from",
    "into",
    "and",
    "or",
    "but",
    "nor",
    "so",
    "because",
    "if",
    "than",
    "that",
    "which",
    "who",
    "whose",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "has",
    "have",
    "had",
    "can",
    "could",
    "will",
    "would",
    "should",
    "must",
    "may",
    "might",
    "do",
    "does",
    "not",
    "very",
    "such",
    "as",
    "its",
    "their",
    "our",
    "your",
    "my",
    "his",
    "her",
    "this",
    "these",
    "以及",
    "或者",
    "并且",
    "而且",
    "但是",
    "因为",
    "所以",
    "如果",
    "虽然",
    "不断",
    "一个",
    "一些",
)
CONTINUATION_WORDS_DESCRIPTION = (
    "A last line ending in one of these words (or in a comma, a dash, an opening bracket) stops mid-sentence; a line "
    "ending in a content word is complete without an end mark (math results, list items, poems, Chinese without 。). "
    "Chinese entries are matched as the line's last characters, so single characters that end common words and "
    "sentences (的, 在, 对: 目的, 不在, 说得对) are left out, as are particles that end phrasal verbs "
    "(in, on: plug it in)."
)
UNFINISHED_MIN_WORDS = 12
UNFINISHED_MIN_WORDS_DESCRIPTION = (
    "An English last line of at least this many words that ends in a lowercase word without an end mark was cut "
    "off (shorter lines, math results and Chinese lines are judged by their last word alone)."
)
