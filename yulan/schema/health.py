"""Training health (report §5: reward hacking, unstable training, output length collapse): the statistics both PPO
engines write for every rollout, and the rules that watch them.

This module is the one place for the statistics' names: the engines, the rules, `yulan status` and `yulan report`
read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import model_validator

from yulan.schema.errors import suggest
from yulan.schema.fields import Section, chosen, rule_error

PREFIX = "health/"
# The rule penalties of yulan.rewards.penalties, in the order they are judged.
PENALTY_RULES = ("truncated", "incomplete", "mixed_language", "generic")


@dataclass(frozen=True)
class Statistic:
    description: str
    kind: Literal["rate", "ratio", "tokens", "nats", "score"]  # what values it takes: the bounds of its thresholds
    from_samples: bool = True  # computed from the samples alone (OpenRLHF: by this project's reward function)


STATISTICS: dict[str, Statistic] = {
    "response_length_mean": Statistic("Mean response length (tokens, end-of-turn token included).", "tokens"),
    "response_length_p10": Statistic("10th percentile of response length.", "tokens"),
    "response_length_p90": Statistic("90th percentile of response length.", "tokens"),
    "response_length_vs_early": Statistic(
        "Mean response length divided by its early level (the mean over the first `early_rollouts` rollouts); "
        "absent during those.",
        "ratio",
    ),
    "truncation_rate": Statistic("Share of responses without an end-of-turn token within generate_max_length.", "rate"),
    **{
        f"penalty_rate/{rule}": Statistic(
            f"Share of responses on which the '{rule}' rule fired (whether or not its penalty is 0).", "rate"
        )
        for rule in PENALTY_RULES
    },
    "generic_phrase_rate": Statistic(
        "Share of responses containing a generic phrase (ppo.reward.penalties."
        "generic_phrases) anywhere, short or long.",
        "rate",
    ),
    "duplicate_share": Statistic(
        "Share of responses identical (whitespace aside) to an earlier sample of the same prompt in the rollout.",
        "rate",
    ),
    "rm_score_mean": Statistic("Mean reward-model score, before clipping.", "score"),
    "reward_mean": Statistic(
        "Mean reward of the reward function (clipped score, verifier, penalties), before the length rules and KL.",
        "score",
    ),
    "reward_rm_gap": Statistic(
        "reward_mean − rm_score_mean: what penalties and verifier add; a widening negative "
        "gap means the policy is being penalised more and more.",
        "score",
    ),
    "kl_vs_target": Statistic(
        "The rollout's KL against the reference (ppo/kl) divided by ppo.kl.target.", "ratio", from_samples=False
    ),
    "entropy": Statistic(
        "Mean negative log-probability of the sampled response tokens under the policy (a "
        "Monte-Carlo estimate of its per-token entropy).",
        "nats",
        from_samples=False,
    ),
}
StatisticName = Literal[tuple(STATISTICS)]  # type: ignore[valid-type]
SAMPLE_STATISTICS = tuple(name for name, statistic in STATISTICS.items() if statistic.from_samples)


def key(name: str) -> str:
    """The name under which a statistic is logged (metrics.jsonl and wandb), in both engines."""
    return PREFIX + name


class HealthRule(Section):
    """Fires each time the statistic has been below (or above) the threshold for `for_rollouts` rollouts in a row
    since the rule last fired."""

    metric: StatisticName = chosen(  # type: ignore[valid-type]
        ..., description="The statistic watched (yulan/schema/health.py lists them)."
    )
    below: float | None = chosen(None, description="Fires while the statistic is below this.")
    above: float | None = chosen(None, description="Fires while the statistic is above this.")
    for_rollouts: int = chosen(1, ge=1, unit="rollouts", description="Consecutive rollouts the condition must hold.")
    action: Literal["warn", "stop"] = chosen(
        "warn", description="warn: log it and continue; stop: checkpoint and end the stage with the rule as reason."
    )

    @model_validator(mode="after")
    def _threshold(self) -> HealthRule:
        if (self.below is None) == (self.above is None):
            raise rule_error(
                "below", self.below, "a rule needs exactly one of below and above", "set either below=X or above=X"
            )
        side = "below" if self.below is not None else "above"
        threshold = self.below if self.below is not None else self.above
        assert threshold is not None  # exactly one of the two is set (checked above)
        kind = STATISTICS[self.metric].kind
        if kind == "rate" and not (0 < threshold <= 1 if side == "below" else 0 <= threshold < 1):
            raise rule_error(
                side,
                threshold,
                f"{self.metric} is a share in [0, 1]: {side} {threshold} never fires",
                f"give {side} as a share, e.g. {side}=0.5 for 50%",
            )
        if kind in ("ratio", "tokens", "nats") and (threshold <= 0 if side == "below" else threshold < 0):
            raise rule_error(
                side,
                threshold,
                f"{self.metric} is never negative: {side} {threshold} never fires",
                f"give a positive threshold, e.g. {side}=0.5",
            )
        return self


def default_rules() -> dict[str, HealthRule]:
    """Rules that would have flagged the report's collapse: length falling to half its early level stops the run;
    the hacking patterns the report names (truncation, generic one-liners, mixed language), duplicated samples and
    a KL far above its target warn."""
    return {
        "length_collapse": HealthRule(metric="response_length_vs_early", below=0.5, for_rollouts=3, action="stop"),
        "truncation": HealthRule(metric="truncation_rate", above=0.5, for_rollouts=3),
        "generic_replies": HealthRule(metric="penalty_rate/generic", above=0.2, for_rollouts=3),
        "mixed_language": HealthRule(metric="penalty_rate/mixed_language", above=0.2, for_rollouts=3),
        "duplicates": HealthRule(metric="duplicate_share", above=0.5, for_rollouts=3),
        "kl_runaway": HealthRule(metric="kl_vs_target", above=3.0, for_rollouts=5),
    }


class HealthConfig(Section):
    early_rollouts: int = chosen(
        3,
        ge=1,
        unit="rollouts",
        description="Rollouts whose mean response length is the early level length is compared with.",
    )
    rules: dict[str, HealthRule] = chosen(
        default_factory=default_rules,
        description="Named rules ({} watches nothing); "
        "a warn rule on a statistic the engine does not produce is not watched (the job says so).",
    )

    @model_validator(mode="before")
    @classmethod
    def _new_rules_are_complete(cls, data: Any) -> Any:
        """A rule name the defaults lack starts a new rule, which needs its metric: a misspelt name is caught here."""
        rules = data.get("rules") if isinstance(data, dict) else None
        for name, rule in (rules or {}).items():
            if name not in default_rules() and isinstance(rule, dict) and "metric" not in rule:
                close = suggest(str(name), list(default_rules()))
                raise rule_error(
                    f"rules.{name}",
                    rule,
                    "a rule that is not one of the defaults is new and needs metric, and below or above",
                    f"did you mean the rule '{close}'?"
                    if close
                    else f"give ppo.health.rules.{name}.metric and below= or above=",
                )
        return data

    def unwatched(self, produced: tuple[str, ...]) -> list[str]:
        """Rules on statistics the engine does not produce."""
        return [name for name, rule in self.rules.items() if rule.metric not in produced]

    def check_engine(self, engine: str, produced: tuple[str, ...]) -> None:
        """A stop rule must watch a statistic the engine produces, or it would never stop anything."""
        for name in self.unwatched(produced):
            rule = self.rules[name]
            if rule.action == "stop":
                what = (
                    f"produces only {', '.join(produced)}"
                    if produced
                    else "produces none with reward.mode=local_model (this project's reward function computes them)"
                )
                raise rule_error(
                    f"ppo.health.rules.{name}.metric",
                    rule.metric,
                    f"engine={engine} does not produce {rule.metric}: it {what}",
                    (
                        f"watch a statistic this engine produces, set ppo.health.rules.{name}.action=warn, or use "
                        "engine=native"
                    ),
                )
