"""The YuLan reward: the reward-model score (the conversation in the reward model's own chat format) clipped, a
verifier's reward where the prompt is checkable, and the rule penalties (the order is RewardConfig's docstring).

OpenRLHF 0.11.2 loads a `.py` file given as `--reward.remote_url` inside every vLLM Ray actor and calls its
`reward_func(queries, prompts, labels)` once per sample. An exception there is only logged and the step fails
later with a misleading message, so this code never raises: a failed reward-model call is retried, then scored
with the configured fallback and counted in `extra_logs`.

The PPO prompt file carries each prompt's conversation (and its reference answer or tests, where it has one) as
the sample's `label`, so the response can be re-rendered in the reward model's format without knowing the actor's
chat template, and checked.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from yulan.rewards.health import RewardFunctionWatch
from yulan.rewards.penalties import Verdict, judge
from yulan.rewards.sandbox import SandboxUnavailable
from yulan.rewards.verifier import Check, Checker
from yulan.runtime.http import JsonClient, ServerError
from yulan.runtime.records import write_text
from yulan.schema.health import PENALTY_RULES, HealthConfig
from yulan.schema.reward import RewardConfig

log = logging.getLogger(__name__)


class RewardServerError(Exception):
    pass


def post_rewards(client: JsonClient, texts: list[str], retries: int | None = None) -> list[float]:
    """`POST /get_reward` in openrlhf.cli.serve_rm's format (the client retries failed requests); raises
    RewardServerError when no usable answer comes."""

    def parse(reply: Any) -> list[float]:
        rewards = reply["rewards"]
        if not isinstance(rewards, list) or len(rewards) != len(texts):
            raise ValueError(f"expected {len(texts)} rewards, got {rewards!r:.200}")
        return [float(value) for value in rewards]

    try:
        return client.post("", {"query": texts}, retries, parse=parse)
    except ServerError as error:
        raise RewardServerError(str(error)) from None


def reward_client(server_url: str, timeout_s: float, max_retries: int) -> JsonClient:
    return JsonClient(server_url.rstrip("/") + "/get_reward", timeout_s=timeout_s, max_retries=max_retries)


def parse_label(label: str, prompt_text: str) -> dict:
    """The PPO prompt file's label: JSON with the conversation (`messages`) and an optional reference (`answer`,
    `tests`). A plain string is the user prompt; no label at all leaves the rendered prompt as the user turn."""
    if label:
        try:
            data = json.loads(label)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("messages"), list):
            return data
        return {"messages": [{"role": "user", "content": label}]}
    return {"messages": [{"role": "user", "content": prompt_text}]}


def last_user_turn(conversation: list[dict]) -> str:
    return next((turn["content"] for turn in reversed(conversation) if turn.get("role") == "user"), "")


@dataclass(frozen=True)
class Sample:
    conversation: list[dict]  # the system prompt and earlier turns, ending with the user turn answered
    response: str
    reference: dict = field(default_factory=dict)  # `answer` (math) or `tests` (code) make it checkable
    truncated: bool | None = None  # no end-of-turn token within the generation limit; None where unknown


@dataclass(frozen=True)
class Scored:
    reward: float
    rm_score: float
    rm_component: float
    verifier_component: float
    check: Check | None
    verdict: Verdict
    rm_failed: bool


class YulanReward:
    """`score_texts` (rendered texts -> reward-model scores) defaults to the reward server at `server_url`;
    the native engine passes its local reward model instead, so both engines share everything else."""

    def __init__(
        self,
        config: RewardConfig,
        server_url: str = "",
        score_texts: Callable[[list[str]], list[float]] | None = None,
        unchecked_score: float = 0.5,
    ):
        self.config = config
        self.server_url = server_url
        self.client: JsonClient | None = None  # made on first use: a reward function is pickled into Ray actors
        self.score_texts = score_texts or self.scores
        self.checker = Checker(config.verifier) if config.verifier.enabled else None
        self.unchecked_score = unchecked_score  # where dynamic filtering always keeps a prompt without a checker

    def response_of(self, query: str, prompt: str) -> str:
        response = query[len(prompt) :] if query.startswith(prompt) else query
        for stop in self.config.actor_stop_strings:
            response = response.replace(stop, "")
        return response.strip()

    def render(self, conversation: list[dict], response: str) -> str:
        """The conversation and the response in the reward model's own chat format."""
        turns = [*conversation, {"role": "assistant", "content": response}]
        # replace(), not format(): braces inside the texts stay as they are
        return self.config.rm_chat_begin + "".join(
            self.config.rm_chat_turn.replace("{role}", str(turn["role"])).replace("{content}", str(turn["content"]))
            for turn in turns
        )

    def scores(self, texts: list[str]) -> list[float]:
        """The reward server's scores, with retries; raises RewardServerError when it cannot give them."""
        if self.client is None:
            self.client = reward_client(self.server_url, self.config.timeout_s, self.config.max_retries)
        return post_rewards(self.client, texts)

    def check(self, sample: Sample) -> Check | None:
        if self.checker is None:
            return None
        try:
            return self.checker(sample.reference, sample.response)
        except SandboxUnavailable as error:
            log.warning("code check skipped: %s", error)
            return None

    def score(self, samples: list[Sample]) -> list[Scored]:
        """Per sample: the reward-model score clipped to the range and weighted, plus the verifier's reward where
        the prompt has a checker, plus the rule penalties, floored at the range's low end."""
        low, high = self.config.clip_range
        verdicts = [
            judge(last_user_turn(s.conversation), s.response, self.config.penalties, s.truncated) for s in samples
        ]
        checks = [self.check(s) for s in samples]
        failed = False
        try:
            rm_scores = self.score_texts([self.render(s.conversation, s.response) for s in samples])
        except RewardServerError as error:
            log.warning("reward server failed, using fallback_reward=%s: %s", self.config.fallback_reward, error)
            rm_scores, failed = [self.config.fallback_reward] * len(samples), True
        out = []
        for rm_score, check, verdict in zip(rm_scores, checks, verdicts):
            weights = self.config.verifier.weights.get(check.kind) if check else None
            rm_part = (weights.reward_model if weights else 1.0) * min(max(rm_score, low), high)
            verifier_part = weights.verifier * check.passed if weights else 0.0
            reward = max(rm_part + verifier_part + verdict.penalty, low)
            out.append(Scored(reward, rm_score, rm_part, verifier_part, check, verdict, failed))
        return out

    def __call__(
        self, queries: list[str], prompts: list[str], labels: list[str], truncated: list[bool | None] | None = None
    ) -> dict[str, Any]:
        """OpenRLHF's reward-function contract: rewards, scores (what dynamic filtering reads: the verifier's 1/0
        where there is one, else the reward-model score) and per-sample logs."""
        low, high = self.config.clip_range
        count = len(queries)
        try:
            flags = truncated or [None] * count
            samples = []
            for query, prompt, label, cut in zip(queries, prompts, labels, flags):
                parsed = parse_label(label, prompt)
                reference = {key: parsed[key] for key in ("answer", "tests") if parsed.get(key) is not None}
                samples.append(Sample(parsed["messages"], self.response_of(query, prompt), reference, cut))
            scored = self.score(samples)
            if self.checker is not None:
                scores = [float(s.check.passed) if s.check else self.unchecked_score for s in scored]
            else:
                scores = [s.rm_score for s in scored]
            logs = {
                "rm_failed": [float(s.rm_failed) for s in scored],
                "rm_score": [s.rm_score for s in scored],
                "reward_rm": [s.rm_component for s in scored],
                "reward_verifier": [s.verifier_component for s in scored],
                "reward_penalty": [s.verdict.penalty for s in scored],
                "verified": [float(s.check is not None) for s in scored],
                "verifier_passed": [float(bool(s.check and s.check.passed)) for s in scored],
                **{f"penalty_{name}": [float(s.verdict.reasons[name]) for s in scored] for name in PENALTY_RULES},
            }
            return {"rewards": [s.reward for s in scored], "scores": scores, "extra_logs": logs}
        except Exception as error:  # the contract: never raise inside OpenRLHF's actors
            log.exception("reward function failed; every sample gets fallback_reward: %s", error)
            fallback = min(max(self.config.fallback_reward, low), high)
            return {
                "rewards": [fallback] * count,
                "scores": [fallback] * count,
                "extra_logs": {"rm_failed": [1.0] * count},
            }


def for_openrlhf(reward: YulanReward, watch: RewardFunctionWatch | None = None):
    """OpenRLHF 0.11.2 calls with one sample and wraps each value as torch.tensor([value]): return scalars. `watch`
    measures each response (its truncation then reaches the penalty, as in the native engine) and gathers the
    samples' health statistics."""

    def reward_func(queries: list[str], prompts: list[str], labels: list[str]) -> dict[str, Any]:
        measured = None
        if watch is not None:
            try:
                measured = watch.measure(queries, prompts)
            except Exception as error:  # the contract: never raise inside OpenRLHF's actors
                log.exception("health statistics failed for this sample: %s", error)
        out = reward(queries, prompts, labels, truncated=measured[1] if measured else None)
        if measured is not None:
            try:
                watch.add(prompts, [reward.response_of(q, p) for q, p in zip(queries, prompts)], *measured, out)
            except Exception as error:
                log.exception("health statistics failed for this sample: %s", error)
        if len(queries) != 1:
            return out
        return {
            "rewards": out["rewards"][0],
            "scores": out["scores"][0],
            "extra_logs": {key: values[0] for key, values in out["extra_logs"].items()},
        }

    return reward_func


def write_reward_file(
    config: RewardConfig, server_url: str, job_dir: str, unchecked_score: float = 0.5, health: dict | None = None
) -> Path:
    """The file named by --reward.remote_url: it loads this module with the job's reward settings, and with `health`
    (RewardFunctionWatch's settings but the penalties) the health watch."""
    directory = Path(job_dir)
    directory.mkdir(parents=True, exist_ok=True)
    write_text(directory / "reward_config.json", config.model_dump_json(indent=2))
    watch = "None"
    if health is not None:
        write_text(directory / "health_watch.json", json.dumps(health, indent=2))
        watch = "watch_from(Path(__file__).parent / 'health_watch.json', _config.penalties)"
    path = directory / "reward_func.py"
    write_text(
        path,
        "# Written by the PPO job: the YuLan reward with this run's settings.\n"
        "from pathlib import Path\n"
        "from yulan.schema.reward import RewardConfig\n"
        "from yulan.rewards.reward import YulanReward, for_openrlhf, watch_from\n"
        "_config = RewardConfig.model_validate_json((Path(__file__).parent / 'reward_config.json').read_text())\n"
        f"reward_func = for_openrlhf(YulanReward(_config, {server_url!r}, unchecked_score={unchecked_score!r}), "
        f"{watch})\n",
    )
    return path


def watch_from(path: Path, penalties) -> RewardFunctionWatch:
    settings = json.loads(Path(path).read_text())
    return RewardFunctionWatch(
        settings["job_dir"],
        HealthConfig.model_validate(settings["config"]),
        penalties,
        settings["samples_per_rollout"],
        settings["generate_max_length"],
        settings["tokenizer_path"],
        tuple(settings["stop_strings"]),
    )
