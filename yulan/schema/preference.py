"""Preference-data construction (report §4)."""

from __future__ import annotations

from typing import Literal

from pydantic import computed_field, model_validator

from yulan.schema.common import Resources, Share, StageRef, check_shares, gpu_job
from yulan.schema.fields import Section, chosen, paper, rule_error


class PreferenceConfig(Section):
    policy: StageRef = paper(
        "sft",
        where="§4: 'we sampled completions from the SFT model'",
        description="Model that samples on-policy completions.",
    )
    parts: dict[str, Share] = paper(
        default_factory=lambda: {
            "off_policy": Share(count=258_000, ratio=0.69),
            "on_policy": Share(count=115_000, ratio=0.31),
        },
        where="§4 preference data table",
        description="Off-policy (public) and on-policy (sampled) pairs.",
    )
    ratio_tolerance: float = chosen(
        0.01, ge=0.0, le=0.1, description="Ratios in the report are rounded to whole percents."
    )
    off_policy_sources: tuple[str, ...] = chosen(
        (), description="Public preference datasets (paths or hub ids); the report names none."
    )
    prompts: tuple[str, ...] = chosen((), description="Instruction files for on-policy sampling (JSONL).")
    decontaminate: bool = chosen(
        True, description="Remove pairs that match the evaluation table (settings: curation.decontaminate)."
    )
    on_policy_domains: tuple[str, ...] = paper(
        ("science", "math", "code", "chinese_commonsense", "hallucination", "self_awareness"),
        where="§4 on-policy data",
        description="Domains the on-policy instructions cover.",
    )
    completions_per_prompt: int = chosen(
        8, ge=2, description="SFT samples per instruction (at least one chosen and one rejected)."
    )
    temperature: float = chosen(0.8, gt=0.0, description="Sampling temperature for on-policy completions.")
    max_new_tokens: int = chosen(2048, ge=1, description="Longest sampled completion.", unit="tokens")
    answer_extraction: Literal["llm", "rules"] = paper(
        "llm",
        where="§4: 'we extracted responses using an LLM'",
        description="How final answers of verifiable questions are read.",
    )
    extractor_model: str = chosen(
        "Qwen/Qwen2.5-32B-Instruct",
        description="The report does not name the extractor; the curation judge does the job.",
    )
    verifiable_pairing: Literal["correct_vs_incorrect"] = paper(
        "correct_vs_incorrect",
        where="§4: 'correct responses were designated as chosen ... incorrect ... rejected'",
        description="Pairing for verifiable questions.",
    )
    scored_pairing: Literal["highest_vs_lowest"] = paper(
        "highest_vs_lowest",
        where="§4: 'high scores were designated as chosen ... low scores ... rejected'",
        description="Pairing for the other questions, by reward-model score.",
    )
    min_score_margin: float = chosen(1.0, ge=0.0, description="Smallest reward gap between chosen and rejected.")
    resources: Resources = chosen(
        default_factory=lambda: gpu_job(nodes=1, gpus_per_node=8, hours=12), description="Sampling and scoring job."
    )

    @computed_field(description="Preference pairs in total (report: 373K).")  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        return sum(share.count for share in self.parts.values())

    @model_validator(mode="after")
    def _parts_agree(self) -> PreferenceConfig:
        unknown = set(self.parts) - {"off_policy", "on_policy"}
        if unknown:
            raise rule_error(
                "parts", sorted(unknown), "parts are 'off_policy' and 'on_policy'", "rename the part to one of those"
            )
        check_shares(self.parts, self.ratio_tolerance, "parts")
        return self
