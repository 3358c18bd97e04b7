"""`yulan reward score --samples FILE [overrides...] [--summary]`: the PPO reward of each sample, rule by rule."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from yulan.cli.common import add_overrides
from yulan.cli.samples import read_samples
from yulan.compose import compose, validate
from yulan.schema.errors import ConfigError


def add_parser(sub) -> None:
    rewards = sub.add_parser("reward", help="inspect the PPO reward on a file of samples")
    reward_sub = rewards.add_subparsers(dest="reward_command", required=True)
    score = reward_sub.add_parser("score", help="per sample: reward-model score, rules fired, verifier verdict, reward")
    score.add_argument(
        "--samples",
        type=Path,
        required=True,
        help="JSONL: prompt (text or chat messages), response, optional answer / tests / truncated",
    )
    score.add_argument("--summary", action="store_true", help="rates per rule and the verifier's pass rate")
    add_overrides(score)


def run(args: argparse.Namespace) -> int:
    """Per sample: the reward-model score, each rule that fired, the verifier's verdict and the final reward, as
    the PPO stage of the composed experiment computes them; --summary gives the rates."""

    experiment = validate(compose(args.overrides))
    lines, samples = reward_samples(args.samples)
    rows = scored(experiment, lines, samples)
    if args.summary:
        print(json.dumps(summary(rows), indent=2))
    else:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    return 0


def reward_samples(path: Path) -> tuple[list[int], list]:
    from yulan.rewards.reward import Sample
    from yulan.stages.preference import messages_of

    lines, records = read_samples(path, {"prompt", "response"}, None)
    samples = []
    for record in records:
        reference = {key: record[key] for key in ("answer", "tests") if record.get(key) is not None}
        samples.append(Sample(messages_of(record["prompt"]), record["response"], reference, record.get("truncated")))
    return lines, samples


def scored(experiment, lines: list[int], samples: list) -> list[dict]:
    """Each sample's reward as the PPO stage computes it, with its parts."""
    from yulan.rewards.reward import RewardServerError, YulanReward
    from yulan.rewards.sandbox import SandboxUnavailable
    from yulan.rewards.verifier import Checker
    from yulan.schema.errors import Problem

    config = experiment.ppo.reward
    if config.server_url:
        reward = YulanReward(config, config.server_url)
    else:
        from yulan.runtime import models

        reward = YulanReward(config, score_texts=models.reward_model(experiment))
    checker = reward.checker or Checker(config.verifier)  # a verdict is shown even where training ignores it
    try:
        scored = reward.score(samples)
        checks = [
            s.check if reward.checker else checker(sample.reference, sample.response)
            for s, sample in zip(scored, samples)
        ]
    except RewardServerError as error:
        raise ConfigError(
            "cannot reach the reward server",
            [
                Problem(
                    "ppo.reward.server_url",
                    str(error),
                    config.server_url,
                    "start the server, or drop server_url to score with the local reward model",
                )
            ],
        ) from None
    except SandboxUnavailable as error:
        raise ConfigError(
            "cannot run generated code",
            [
                Problem(
                    "ppo.reward.verifier.allow_unisolated_code",
                    str(error),
                    False,
                    (
                        "install bubblewrap, or set ppo.reward.verifier.allow_unisolated_code=true on a machine "
                        "you can lose"
                    ),
                )
            ],
        ) from None
    return [
        {
            "line": line,
            "rm_score": s.rm_score,
            "penalties": s.verdict.fired,
            "penalty": s.verdict.penalty,
            "verifier": {"kind": c.kind, "passed": c.passed, "detail": c.detail} if c else None,
            "reward": s.reward,
        }
        for line, s, c in zip(lines, scored, checks)
    ]


def summary(rows: list[dict]) -> dict:
    from yulan.schema.health import PENALTY_RULES

    checked = [row["verifier"] for row in rows if row["verifier"]]
    count = max(len(rows), 1)
    return {
        "samples": len(rows),
        "mean_reward": sum(row["reward"] for row in rows) / count,
        "mean_rm_score": sum(row["rm_score"] for row in rows) / count,
        "rule_rates": {rule: sum(rule in row["penalties"] for row in rows) / count for rule in PENALTY_RULES},
        "verified": len(checked),
        "verifier_pass_rate": sum(c["passed"] for c in checked) / len(checked) if checked else None,
    }
