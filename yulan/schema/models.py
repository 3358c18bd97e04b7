"""Model descriptions: the policy base model and the reward model (groups `model/` and `reward_model/`)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from yulan.schema.errors import Problem
from yulan.schema.fields import Section, paper


class ModelSpec(Section):
    """What the pipeline needs to know about a model before loading it."""

    name_or_path: str = Field(description="Hub id or local directory of the weights (`tiny:<name>` = built locally).")
    tokenizer: str = Field(
        description="Identity of the tokenizer. Two models share token ids only when this is equal.",
    )
    vocab_size: int = Field(gt=0, description="Vocabulary size (tokens).")
    context_length: int = Field(gt=0, description="Longest sequence the model accepts (tokens).")
    num_parameters: int = Field(gt=0, description="Parameter count, used for FLOP and memory estimates.")
    chat_template: str | None = Field(
        default=None, description="Jinja chat template; None = the one shipped with the tokenizer."
    )


def yulan_mini() -> ModelSpec:
    return ModelSpec(
        name_or_path="yulan-team/YuLan-Mini",
        tokenizer="yulan-team/YuLan-Mini",
        vocab_size=99_000,
        context_length=28_672,
        num_parameters=2_420_000_000,
    )


def skywork_reward() -> ModelSpec:
    return ModelSpec(
        name_or_path="Skywork/Skywork-Reward-Llama-3.1-8B-v0.2",
        tokenizer="meta-llama/Llama-3.1",
        vocab_size=128_256,
        context_length=131_072,
        num_parameters=7_500_000_000,
    )


POLICY_FIELD = paper(
    default_factory=yulan_mini,
    where="§1: YuLan-Mini, 2.4B parameters, the model every stage starts from",
    description="The policy's base model (SFT starts from it; complexity loss is computed with it).",
)

REWARD_FIELD = paper(
    default_factory=skywork_reward,
    where="§4 preference data and §5 reward model: Skywork/Skywork-Reward-Llama-3.1-8B-v0.2",
    description="Reward model scoring preference candidates and PPO rollouts.",
)


def mismatches(spec: ModelSpec, config: dict[str, Any], spec_name: str, path: str) -> list[Problem]:
    """How a checkpoint's config.json disagrees with its description: the vocabulary (token ids must mean the same
    thing in every stage) and the context (a description promising more than the model's positions allow)."""
    problems = []
    vocab = config.get("vocab_size")
    if vocab is not None and vocab != spec.vocab_size:
        problems.append(
            Problem(
                f"{spec_name}.vocab_size",
                f"the checkpoint at {path} has vocab_size {vocab}",
                spec.vocab_size,
                f"set {spec_name}.vocab_size={vocab}, or point at the checkpoint it describes",
            )
        )
    positions = config.get("max_position_embeddings")
    if positions is not None and spec.context_length > positions:
        problems.append(
            Problem(
                f"{spec_name}.context_length",
                f"the checkpoint at {path} has max_position_embeddings {positions}",
                spec.context_length,
                f"set {spec_name}.context_length to at most {positions}",
            )
        )
    return problems
