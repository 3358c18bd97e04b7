"""The PPO reward (report §5): the reward-model score, the rule penalties and the verifiable rewards."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from yulan.schema.common import (
    CONTINUATION_WORDS,
    CONTINUATION_WORDS_DESCRIPTION,
    PPO_TABLE,
    SENTENCE_END_MARKS,
    SENTENCE_END_MARKS_DESCRIPTION,
    UNFINISHED_MIN_WORDS,
    UNFINISHED_MIN_WORDS_DESCRIPTION,
)
from yulan.schema.fields import Section, chosen, paper, rule_error


class Penalties(Section):
    """Rule-based penalties for reward hacking, added to the clipped reward-model score (report §5)."""

    incomplete: float = paper(
        -5.0,
        le=0.0,
        where="§5 rule-based penalties: incomplete sentences / truncated responses",
        description="Added once when the response was truncated (no end-of-turn token within the generation limit) or "
        "ends mid-sentence (size not in the report; 0 disables).",
    )
    sentence_end_marks: str = chosen(SENTENCE_END_MARKS, description=SENTENCE_END_MARKS_DESCRIPTION)
    continuation_words: tuple[str, ...] = chosen(CONTINUATION_WORDS, description=CONTINUATION_WORDS_DESCRIPTION)
    unfinished_min_words: int = chosen(UNFINISHED_MIN_WORDS, ge=1, description=UNFINISHED_MIN_WORDS_DESCRIPTION)
    mixed_language: float = paper(
        -5.0,
        le=0.0,
        where="§5 rule-based penalties: mixed-language responses",
        description=(
            "Added for Chinese characters in an answer to an English prompt, and the converse (size not in the report)."
        ),
    )
    chinese_prompt_min_cjk_fraction: float = chosen(
        0.3, gt=0.0, le=1.0, description="A prompt is Chinese when at least this share of its letters are CJK."
    )
    chinese_response_min_cjk_fraction: float = chosen(
        0.2, ge=0.0, le=1.0, description="An answer to a Chinese prompt needs at least this share of CJK letters."
    )
    language_exempt_words: tuple[str, ...] = chosen(
        (
            "chinese",
            "mandarin",
            "english",
            "translate",
            "translation",
            "pinyin",
            "中文",
            "汉语",
            "英文",
            "英语",
            "翻译",
        ),
        description="Prompts mentioning these may legitimately mix languages (translation, language questions).",
    )
    generic: float = paper(
        -10.0,
        le=0.0,
        where="§5 rule-based penalties: single-sentence responses like 'I hope this helps'",
        description="Added to short generic replies (size not in the report).",
    )
    generic_phrases: tuple[str, ...] = chosen(
        (
            "hope this helps",
            "Let me know if you have any other questions",
            "Feel free to ask if you have more questions",
            "希望对你有帮助",
            "希望这能帮到你",
        ),
        description="Phrases that score highly for any query.",
    )
    generic_max_sentences: int = chosen(
        2, ge=1, description="A reply of at most this many sentences that contains a generic phrase is penalised."
    )


class ComponentWeights(Section):
    reward_model: float = chosen(1.0, ge=0.0, description="Weight of the clipped reward-model score.")
    verifier: float = chosen(10.0, ge=0.0, description="Reward for a verified answer (an unverified one gets 0).")


class Verifier(Section):
    """Verifiable rewards: prompts whose record carries a checkable reference get a checker's verdict as a reward
    component; prompts without one keep the reward model alone."""

    enabled: bool = chosen(
        False, description="Mix the checker's verdict into the reward (the report's PPO uses the reward model alone)."
    )
    weights: dict[Literal["math", "code"], ComponentWeights] = chosen(
        default_factory=lambda: {"math": ComponentWeights(), "code": ComponentWeights()},
        description="Per prompt kind: math (a reference `answer`, compared by the shared answer matcher) and code "
        "(`tests`, assert statements that import what they use, run in the judge against the functions the "
        "response's code defines in the evaluation sandbox).",
    )
    code_timeout_s: float = chosen(10.0, gt=0.0, unit="seconds", description="Time limit of one code check.")
    code_memory_mb: int = chosen(
        1024, ge=64, unit="MiB", description="Memory limit of one code check, for all its processes together."
    )
    allow_unisolated_code: bool = chosen(
        False,
        description="Run code checks in a plain subprocess where bubblewrap cannot start (a machine you can lose).",
    )


class RewardConfig(Section):
    """A sample's reward, in this order (both engines): the reward-model score clipped to `clip_range`, times its
    weight; plus the verifier's reward where the prompt has a checker; plus the rule penalties; floored at the clip's
    low end. Then OpenRLHF's length rules (`overlong_*`, `stop_properly_penalty_coef`) apply, the estimator's
    baseline, the clip range once more, and the per-token KL penalty."""

    mode: Literal["remote_function", "local_model"] = chosen(
        "remote_function",
        description=(
            "remote_function re-renders each sample in the reward model's own chat template (needed "
            "when tokenizers differ)."
        ),
    )
    server_url: str | None = chosen(
        None, description="Reward-model server; None = the PPO job starts one on `reward_gpus`."
    )
    server_port: int = chosen(5000, ge=1024, le=65535, description="Port of the reward server the PPO job starts.")
    server_max_length: int = chosen(
        8192,
        ge=1,
        unit="tokens",
        description=(
            "The server truncates at this many reward-model tokens (serve_rm's default, 2048, cuts PPO samples)."
        ),
    )
    server_start_timeout_s: float = chosen(
        1800.0, gt=0.0, description="How long the job waits for the server to load.", unit="seconds"
    )
    rm_chat_begin: str = chosen(
        "<|begin_of_text|>",
        description="Start of a conversation in the reward model's own chat format (Llama-3.1's for Skywork).",
    )
    rm_chat_turn: str = chosen(
        "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>",
        description="One turn (system, user or assistant) in the reward model's chat format; the server applies none.",
    )
    actor_stop_strings: tuple[str, ...] = chosen(
        ("<|endoftext|>", "</s>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>"),
        description="End-of-turn tokens of the actor's template, stripped from responses before scoring.",
    )
    clip_range: tuple[float, float] = paper(
        (-20.0, 10.0),
        where=f"{PPO_TABLE}: 'Reward Clip Range (-20, 10)'",
        description="Rewards are clipped to [low, high].",
    )
    penalties: Penalties = paper(default_factory=Penalties, where="§5", description="Rule-based penalties.")
    verifier: Verifier = chosen(
        default_factory=Verifier, description="Verifiable rewards from answer and test checkers."
    )
    overlong_buffer_len: int | None = chosen(
        None,
        ge=1,
        unit="tokens",
        description="DAPO's overlong penalty: a response longer than generate_max_length − this loses up to "
        "overlong_penalty_factor, linearly (None = off).",
    )
    overlong_penalty_factor: float = chosen(1.0, ge=0.0, description="The overlong penalty at the generation limit.")
    stop_properly_penalty_coef: float | None = chosen(
        None,
        le=1.0,
        description="ProRL's rule for truncated samples: in [0, 1] their reward is scaled by it, below 0 it replaces "
        "their reward (None = off; the `incomplete` penalty already covers truncation).",
    )
    timeout_s: float = chosen(60.0, gt=0.0, description="Per-request timeout to the reward server.", unit="seconds")
    max_retries: int = chosen(3, ge=0, description="Retries before the fallback reward is used.")
    fallback_reward: float = chosen(
        0.0, description="Reward for a sample the server could not score (counted in the logs)."
    )

    @model_validator(mode="after")
    def _clip(self) -> RewardConfig:
        low, high = self.clip_range
        if low >= high:
            raise rule_error(
                "clip_range", list(self.clip_range), "low must be below high", "write it as [low, high], e.g. [-20, 10]"
            )
        for name in ("{role}", "{content}"):
            if name not in self.rm_chat_turn:
                raise rule_error(
                    "rm_chat_turn",
                    self.rm_chat_turn,
                    f"must contain {name}",
                    "write one turn of the reward model's chat format with {role} and {content}",
                )
        if not low <= self.fallback_reward <= high:
            raise rule_error(
                "fallback_reward",
                self.fallback_reward,
                f"must lie inside clip_range [{low}, {high}]",
                "choose a value inside the clip range",
            )
        return self
