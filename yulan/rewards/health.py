"""Health of a PPO run while it trains: the statistics of every rollout (named in yulan/schema/health.py), the rules
that watch them, and the alerts they leave in the stage directory (`alerts.jsonl`).

The same code computes the statistics in both engines: the native trainer calls it on each rollout's samples;
under OpenRLHF, whose reward function is called once per sample inside every vLLM actor, `SharedWatch` gathers
the samples of all those processes into rollouts under a file lock. Light: no torch.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from yulan.rewards.penalties import has_generic_phrase
from yulan.runtime.records import number, read_json_object, read_log, write_text
from yulan.schema.experiment import Experiment
from yulan.schema.health import PENALTY_RULES, SAMPLE_STATISTICS, HealthConfig, HealthRule, key
from yulan.schema.reward import Penalties

log = logging.getLogger(__name__)

SKIPPED_LINES = key("skipped_lines")  # torn or foreign lines of the shared pending file, so far

ALERTS = "alerts.jsonl"
COUNT_WIDTH = 12


@dataclass(frozen=True)
class HealthSample:
    prompt: str  # a digest of the prompt: samples of one prompt share it
    response: str  # a digest of the response as the reward function sees it, whitespace aside
    length: int  # response tokens, the end-of-turn token included
    truncated: bool
    fired: dict[str, bool]  # rule penalty -> fired
    generic_phrase: bool
    rm_score: float
    reward: float


def digest(text: str) -> str:
    """Short enough that a rollout's samples gathered on disk stay small; long enough never to collide by chance."""
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def health_samples(
    prompts: list[str],
    responses: list[str],
    lengths: list[int],
    truncated: list[bool],
    scored: dict,
    penalties: Penalties,
) -> list[HealthSample]:
    """Samples from the reward function's output (YulanReward.__call__): its rewards and per-sample logs."""
    logs = scored["extra_logs"]
    count = len(prompts)
    return [
        HealthSample(
            prompt=digest(prompts[i]),
            response=digest(" ".join(responses[i].split())),
            length=int(lengths[i]),
            truncated=bool(truncated[i]),
            fired={rule: bool(logs.get(f"penalty_{rule}", [0.0] * count)[i]) for rule in PENALTY_RULES},
            generic_phrase=has_generic_phrase(responses[i], penalties),
            rm_score=float(logs.get("rm_score", scored["rewards"])[i]),
            reward=float(scored["rewards"][i]),
        )
        for i in range(count)
    ]


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between the nearest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def sample_statistics(samples: list[HealthSample]) -> dict[str, float]:
    """The statistics computed from a rollout's samples alone, under their logged names."""
    count = len(samples)
    if not count:
        return {}
    lengths = [float(s.length) for s in samples]
    seen: set[tuple[str, str]] = set()
    duplicates = 0
    for s in samples:
        duplicates += (s.prompt, s.response) in seen
        seen.add((s.prompt, s.response))
    rm_mean = sum(s.rm_score for s in samples) / count
    reward_mean = sum(s.reward for s in samples) / count
    stats = {
        "response_length_mean": sum(lengths) / count,
        "response_length_p10": percentile(lengths, 0.1),
        "response_length_p90": percentile(lengths, 0.9),
        "truncation_rate": sum(s.truncated for s in samples) / count,
        **{f"penalty_rate/{rule}": sum(s.fired[rule] for s in samples) / count for rule in PENALTY_RULES},
        "generic_phrase_rate": sum(s.generic_phrase for s in samples) / count,
        "duplicate_share": duplicates / count,
        "rm_score_mean": rm_mean,
        "reward_mean": reward_mean,
        "reward_rm_gap": reward_mean - rm_mean,
    }
    return {key(name): value for name, value in stats.items()}


def trainer_statistics(kl: float, kl_target: float, entropy: float) -> dict[str, float]:
    """The statistics only a trainer sees (the native engine's)."""
    return {key("kl_vs_target"): kl / kl_target, key("entropy"): entropy}


@dataclass(frozen=True)
class Alert:
    rule: str
    metric: str
    value: float
    threshold: float
    side: str  # below | above
    for_rollouts: int
    rollout: int
    action: str  # warn | stop

    @property
    def message(self) -> str:
        return (
            f"health rule '{self.rule}': {self.metric} = {self.value:.4g}, {self.side} {self.threshold:g} for "
            f"{self.for_rollouts} rollout(s) in a row at rollout {self.rollout}: "
            + ("stopping" if self.action == "stop" else "warning")
        )


def stops(alerts: list[Alert]) -> bool:
    """Whether this rollout's alerts end the run: a stop rule fired. Warn rules are logged and the run goes on."""
    return any(alert.action == "stop" for alert in alerts)


class Monitor:
    """The rules applied rollout after rollout. Its state (the early length level, each rule's streak) goes into
    checkpoints, so a resumed run judges as if it had never stopped."""

    def __init__(self, config: HealthConfig, produced: tuple[str, ...], state: dict | None = None):
        self.config = config
        unwatched = config.unwatched(produced)
        self.rules = {name: rule for name, rule in config.rules.items() if name not in unwatched}
        state = state or {}
        self.early: list[float] = list(state.get("early", []))
        self.streaks: dict[str, int] = dict(state.get("streaks", {}))

    def state(self) -> dict:
        return {"early": self.early, "streaks": self.streaks}

    def observe(self, rollout: int, stats: dict[str, float]) -> tuple[dict[str, float], list[Alert]]:
        """The statistics derived from the history (length against its early level) and the alerts of this rollout."""
        derived = {}
        length = stats.get(key("response_length_mean"))
        if length is not None:
            if len(self.early) < self.config.early_rollouts:
                self.early.append(length)
            else:
                level = sum(self.early) / len(self.early)
                derived[key("response_length_vs_early")] = length / level if level else 1.0
        values = stats | derived
        alerts = []
        for name, rule in self.rules.items():
            value = values.get(key(rule.metric))
            if value is None:
                continue  # not measured this rollout: the streak neither grows nor breaks
            if holds(rule, value):
                self.streaks[name] = self.streaks.get(name, 0) + 1
                if self.streaks[name] == rule.for_rollouts:
                    side, threshold = ("below", rule.below) if rule.below is not None else ("above", rule.above)
                    alerts.append(
                        Alert(name, rule.metric, value, threshold, side, rule.for_rollouts, rollout, rule.action)
                    )
                    self.streaks[name] = 0  # a resumed run that is still unhealthy is stopped again N rollouts on
            else:
                self.streaks[name] = 0
        return derived, alerts


def holds(rule: HealthRule, value: float) -> bool:
    return value < rule.below if rule.below is not None else value > rule.above


def unwatched_notice(config: HealthConfig, engine: str, produced: tuple[str, ...]) -> str | None:
    names = config.unwatched(produced)
    if not names:
        return None
    return (
        f"health: engine={engine} does not produce what these warn rules watch, so they are not watched: "
        + ", ".join(f"{name} ({config.rules[name].metric})" for name in names)
    )


def record(job_dir: str | Path, alerts: list[Alert]) -> None:
    """Each alert on stderr and as a line of the stage's alerts.jsonl."""
    if not alerts:
        return
    path = Path(job_dir) / ALERTS
    with path.open("a") as sink:
        for alert in alerts:
            log.info("%s", alert.message)
            sink.write(json.dumps({**asdict(alert), "message": alert.message}) + "\n")
        sink.flush()
        os.fsync(sink.fileno())


def is_alert(row: dict) -> bool:
    """Whether a line of alerts.jsonl is an alert as `record` writes it (what readers show and act on)."""
    return (
        number(row.get("rollout")) is not None
        and isinstance(row.get("rule"), str)
        and row.get("action") in ("warn", "stop")
        and isinstance(row.get("message"), str)
    )


def read_alerts(job_dir: str | Path, skipped: Counter[str] | None = None) -> list[dict]:
    """The stage's alerts; a line that is not one is counted in `skipped`."""
    return read_log(Path(job_dir) / ALERTS, is_alert, skipped)


@contextmanager
def counter(path: Path) -> Iterator[tuple[int | None, Callable[[int], None]]]:
    """An integer in a file, held under an exclusive lock (between processes and between threads) while the block
    runs: (its value, None if unreadable; a function storing a new one). Fixed-width, rewritten in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        text = os.pread(descriptor, COUNT_WIDTH, 0).decode(errors="replace")
        value = 0 if not text else int(text) if len(text) == COUNT_WIDTH and text.isdigit() else None
        yield value, lambda number: os.pwrite(descriptor, f"{number:0{COUNT_WIDTH}d}".encode(), 0)
    finally:
        os.close(descriptor)  # closing releases the lock


class SharedWatch:
    """OpenRLHF's side: every reward-function call (one sample, in any of the job's vLLM actors) adds its samples to
    `job_dir/health/pending.jsonl`; the call that completes a rollout's worth (samples_per_rollout) computes its
    statistics, applies the rules with the monitor's state from `health/state.json`, appends a line to the stage's
    metrics.jsonl and writes the alerts. The job wrapper reads both: it forwards the statistics to wandb and ends
    the run on a stop alert. With dynamic filtering a window is samples_per_rollout generated samples, which is
    less than what OpenRLHF generates for one filtered rollout."""

    def __init__(self, job_dir: str | Path, config: HealthConfig, samples_per_rollout: int):
        self.job_dir = Path(job_dir)
        self.directory = self.job_dir / "health"
        self.config, self.size = config, samples_per_rollout

    def reset(self) -> None:
        """A new job starts: samples of an interrupted one's unfinished rollout are dropped."""
        with counter(self.directory / "pending.count") as (_, store):
            (self.directory / "pending.jsonl").unlink(missing_ok=True)
            store(0)

    def add(self, samples: list[HealthSample]) -> None:
        pending_path = self.directory / "pending.jsonl"
        # the count, not the file, is read on every call: a rollout's calls cost O(1) each, not O(rollout)
        with counter(self.directory / "pending.count") as (count, store):
            with pending_path.open("a") as sink:
                sink.writelines(json.dumps(vars(s)) + "\n" for s in samples)
            if count is None:  # unreadable (a writer killed mid-write): count the file once
                count = len(pending_path.read_text().splitlines())
            else:
                count += len(samples)
            store(self.complete(pending_path) if count >= self.size else count)

    def complete(self, pending_path: Path) -> int:
        """The complete rollouts of the pending samples judged and logged; returns how many samples remain."""
        state_path = self.directory / "state.json"
        samples, skipped = [], 0
        for line in pending_path.read_bytes().decode(errors="replace").splitlines():
            sample = sample_of(line)
            if sample is None:
                skipped += 1
            else:
                samples.append(sample)
        state = read_json_object(state_path)
        if state_path.is_file() and not state:
            log.warning(f"health: {state_path} is unreadable; the rules start over from this rollout")
        try:
            monitor = Monitor(self.config, SAMPLE_STATISTICS, state.get("monitor"))
        except (TypeError, ValueError, KeyError, AttributeError):
            monitor = Monitor(self.config, SAMPLE_STATISTICS)
        rollout = state.get("rollouts") if isinstance(state.get("rollouts"), int) else 0
        skipped += state.get("skipped_lines") if isinstance(state.get("skipped_lines"), int) else 0
        if skipped:
            log.warning(f"health: {skipped} torn or foreign lines in {pending_path} skipped so far")
        while len(samples) >= self.size:
            window, samples = samples[: self.size], samples[self.size :]
            rollout += 1
            stats = sample_statistics(window)
            derived, alerts = monitor.observe(rollout, stats)
            with (self.job_dir / "metrics.jsonl").open("a") as sink:
                sink.write(
                    json.dumps({"step": rollout, **stats, **derived, **({SKIPPED_LINES: skipped} if skipped else {})})
                    + "\n"
                )
            record(self.job_dir, alerts)
        write_text(state_path, json.dumps({"rollouts": rollout, "monitor": monitor.state(), "skipped_lines": skipped}))
        write_text(pending_path, "".join(json.dumps(vars(sample)) + "\n" for sample in samples))
        return len(samples)


def sample_of(line: str) -> HealthSample | None:
    """A pending line as a sample; None for a line torn by a killed writer or written by something else."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or set(data) != set(HealthSample.__dataclass_fields__):
        return None

    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    fits = (
        isinstance(data["prompt"], str)
        and isinstance(data["response"], str)
        and isinstance(data["length"], int)
        and not isinstance(data["length"], bool)
        and isinstance(data["truncated"], bool)
        and isinstance(data["fired"], dict)
        and set(data["fired"]) == set(PENALTY_RULES)
        and all(isinstance(v, bool) for v in data["fired"].values())
        and isinstance(data["generic_phrase"], bool)
        and number(data["rm_score"])
        and number(data["reward"])
    )
    return HealthSample(**data) if fits else None


def watch_settings(experiment: Experiment, job_dir: str) -> dict | None:
    """RewardFunctionWatch's settings (but the penalties, which the reward file has) for an OpenRLHF PPO job; None
    when nothing is watched."""
    ppo = experiment.ppo
    if not ppo.health_statistics:
        return None
    tokenizer = experiment.resolve(ppo.actor.init_from)
    # absolute: OpenRLHF's vLLM actors need not share the driver's working directory
    return {
        "job_dir": os.path.abspath(job_dir),
        "config": ppo.health.model_dump(mode="json"),
        "samples_per_rollout": ppo.samples_per_rollout,
        "generate_max_length": ppo.generate_max_length,
        "tokenizer_path": os.path.abspath(tokenizer) if os.path.exists(tokenizer) else tokenizer,
        "stop_strings": list(ppo.reward.actor_stop_strings),
    }


class RewardFunctionWatch:
    """What the OpenRLHF reward function adds to each call: the samples' health, into the job's SharedWatch. It sees
    text only: a response's length is counted with the actor's tokenizer, and it was truncated when it fills
    generate_max_length without ending in an end-of-turn string (OpenRLHF decodes with special tokens kept)."""

    def __init__(
        self,
        job_dir: str,
        config: HealthConfig,
        penalties: Penalties,
        samples_per_rollout: int,
        generate_max_length: int,
        tokenizer_path: str,
        stop_strings: tuple[str, ...],
    ):
        self.shared = SharedWatch(job_dir, config, samples_per_rollout)
        self.penalties, self.max_length, self.stop_strings = penalties, generate_max_length, stop_strings
        self.tokenizer_path, self._tokenizer = tokenizer_path, None
        self._loading = threading.Lock()  # OpenRLHF calls from several threads at once

    def length(self, text: str) -> int:
        with self._loading:
            if self._tokenizer is None:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path)
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def measure(self, queries: list[str], prompts: list[str]) -> tuple[list[int], list[bool]]:
        """Per sample its response's length and whether it was truncated (which the reward's penalty needs too)."""
        raw = [query[len(prompt) :] if query.startswith(prompt) else query for query, prompt in zip(queries, prompts)]
        lengths = [self.length(text) for text in raw]
        return lengths, [
            n >= self.max_length and not text.rstrip().endswith(self.stop_strings) for n, text in zip(lengths, raw)
        ]

    def add(
        self, prompts: list[str], responses: list[str], lengths: list[int], truncated: list[bool], scored: dict
    ) -> None:
        self.shared.add(health_samples(prompts, responses, lengths, truncated, scored, self.penalties))
