"""The YuLan reward: reward-model score (in the reward model's own chat format) + rule penalties, clipped.

OpenRLHF 0.11.2 loads a `.py` file given as `--reward.remote_url` inside every vLLM Ray actor and calls its
`reward_func(queries, prompts, labels)` once per sample. An exception there is only logged and the step fails
later with a misleading message, so this code never raises: a failed reward-model call is retried, then scored
with the configured fallback and counted in `extra_logs`.

The PPO prompt file carries each raw user prompt as the sample's `label`, so the response can be re-rendered
in the reward model's format without knowing the actor's chat template.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

from schema.ppo import RewardConfig
from yulan.penalties import judge

log = logging.getLogger(__name__)


class RewardServerError(Exception):
    pass


def post_rewards(url: str, texts: list[str], timeout_s: float) -> list[float]:
    """One `POST /get_reward` in openrlhf.cli.serve_rm's format; raises RewardServerError on any failure."""
    request = urllib.request.Request(url, data=json.dumps({"query": texts}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            rewards = json.loads(reply.read())["rewards"]
        if not isinstance(rewards, list) or len(rewards) != len(texts):
            raise ValueError(f"expected {len(texts)} rewards, got {rewards!r:.200}")
        return [float(value) for value in rewards]
    except (OSError, ValueError, KeyError, TypeError) as error:  # URLError and timeouts are OSErrors
        raise RewardServerError(str(error)) from None


class YulanReward:
    """`score_texts` (rendered texts -> reward-model scores) defaults to the reward server at `server_url`;
    the native engine passes its local reward model instead, so both engines share everything else."""

    def __init__(self, config: RewardConfig, server_url: str = "",
                 score_texts: Callable[[list[str]], list[float]] | None = None):
        self.config = config
        self.url = server_url.rstrip("/") + "/get_reward"
        self.score_texts = score_texts or self.scores

    def response_of(self, query: str, prompt: str) -> str:
        response = query[len(prompt):] if query.startswith(prompt) else query
        for stop in self.config.actor_stop_strings:
            response = response.replace(stop, "")
        return response.strip()

    def render(self, user_prompt: str, response: str) -> str:
        # format() fills the template's placeholders only; braces inside the texts stay as they are
        return self.config.rm_prompt_format.format(prompt=user_prompt, response=response)

    def scores(self, texts: list[str]) -> list[float]:
        """The reward server's scores, with retries; raises RewardServerError when it cannot give them."""
        last_error: RewardServerError | None = None
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                time.sleep(min(0.2 * 2 ** (attempt - 1), 5.0))
            try:
                return post_rewards(self.url, texts, self.config.timeout_s)
            except RewardServerError as error:
                last_error = error
        raise RewardServerError(f"{self.url}: {last_error}")

    def __call__(self, queries: list[str], prompts: list[str], labels: list[str]) -> dict[str, Any]:
        low, high = self.config.clip_range
        count = len(queries)
        try:
            responses = [self.response_of(q, p) for q, p in zip(queries, prompts)]
            users = [label or prompt for label, prompt in zip(labels, prompts)]
            verdicts = [judge(user, response, self.config.penalties) for user, response in zip(users, responses)]
            failed = 0.0
            try:
                scores = self.score_texts([self.render(user, response) for user, response in zip(users, responses)])
            except RewardServerError as error:
                log.warning("reward server failed, using fallback_reward=%s: %s", self.config.fallback_reward, error)
                scores, failed = [self.config.fallback_reward] * count, 1.0
            rewards = [min(max(score + verdict.penalty, low), high) for score, verdict in zip(scores, verdicts)]
            logs = {
                "rm_failed": [failed] * count,
                **{f"penalty_{name}": [float(v.reasons[name]) for v in verdicts] for name in verdicts[0].reasons},
            } if count else {"rm_failed": []}
            return {"rewards": rewards, "scores": scores, "extra_logs": logs}
        except Exception as error:  # the contract: never raise inside OpenRLHF's actors
            log.exception("reward function failed; every sample gets fallback_reward: %s", error)
            fallback = min(max(self.config.fallback_reward, low), high)
            return {"rewards": [fallback] * count, "scores": [fallback] * count,
                    "extra_logs": {"rm_failed": [1.0] * count}}


def for_openrlhf(reward: YulanReward):
    """OpenRLHF 0.11.2 calls with one sample and wraps each value as torch.tensor([value]): return scalars."""

    def reward_func(queries: list[str], prompts: list[str], labels: list[str]) -> dict[str, Any]:
        out = reward(queries, prompts, labels)
        if len(queries) != 1:
            return out
        return {
            "rewards": out["rewards"][0],
            "scores": out["scores"][0],
            "extra_logs": {key: values[0] for key, values in out["extra_logs"].items()},
        }

    return reward_func


def write_reward_file(config: RewardConfig, server_url: str, job_dir: str) -> Path:
    """The file named by --reward.remote_url: it loads this module with the job's reward settings."""
    directory = Path(job_dir)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "reward_config.json").write_text(config.model_dump_json(indent=2))
    path = directory / "reward_func.py"
    path.write_text(
        "# Written by the PPO job: the YuLan reward with this run's settings.\n"
        "from pathlib import Path\n"
        "from schema.ppo import RewardConfig\n"
        "from yulan.reward import YulanReward, for_openrlhf\n"
        "_config = RewardConfig.model_validate_json((Path(__file__).parent / 'reward_config.json').read_text())\n"
        f"reward_func = for_openrlhf(YulanReward(_config, {server_url!r}))\n"
    )
    return path
