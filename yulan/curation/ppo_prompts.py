"""PPO prompt selection (report §5: '10,000 challenging prompts from the DPO dataset'): the prompts whose sampled
completions did worst, by the configured difficulty signal, written as OpenRLHF's prompt file (`prompt` messages
and as `label` the conversation with its reference answer or tests, which the reward function reads)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schema.experiment import Experiment, stage_output
from schema.ppo import PromptSet
from yulan.curation.preference import PROMPT_STATS, messages_of


def candidates(experiment: Experiment) -> list[dict]:
    """The preference stage's per-prompt statistics, or a user's JSONL file of prompts (with optional statistics)."""
    source = experiment.resolve(experiment.ppo.prompts.source)
    if experiment.ppo.prompts.source == "preference":
        source = str(Path(stage_output(experiment.output_dir, "preference")).with_name(PROMPT_STATS))
    with open(source) as lines:
        return [json.loads(line) for line in lines if line.strip()]


def difficulty(record: dict, signal: str) -> tuple[float, float]:
    """Sort key, hardest first. Prompts without a pass rate rank after those with one, by mean reward."""
    reward = record.get("mean_reward", 0.0)
    if signal == "lowest_pass_rate":
        rate = record.get("pass_rate")
        return (rate if rate is not None else 2.0, reward)
    return (reward, 0.0)


def select(experiment: Experiment, job_dir: str) -> Path:
    path = Path(job_dir) / "data" / "prompts.jsonl"
    write(path, hardest(candidates(experiment), experiment.ppo.prompts))
    return path


def hardest(records: list[dict], config: PromptSet) -> list[dict]:
    ranked = sorted(records, key=lambda r: difficulty(r, config.difficulty))[: config.count]
    if len(ranked) < config.count:
        print(f"warning: ppo.prompts.count={config.count} but only {len(ranked)} prompts are available; "
              "PPO runs with fewer rollouts", file=sys.stderr)
    return ranked


def write(path: Path, ranked: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as sink:
        for record in ranked:
            sink.write(json.dumps({"id": record.get("id"), "prompt": messages_of(record["prompt"]),
                                   "label": label(record)}, ensure_ascii=False) + "\n")


def label(record: dict) -> str:
    """What the reward function receives with each sample (as JSON text): the whole conversation, which it renders
    in the reward model's format, and the reference (`answer` or `tests`) its verifier checks against."""
    references = {key: record[key] for key in ("answer", "tests") if record.get(key) is not None}
    return json.dumps({"messages": messages_of(record["prompt"]), **references}, ensure_ascii=False)


def run(input_path: Path, output_path: Path, config: PromptSet, seed: int = 0) -> dict:
    """Standalone (`yulan curate ppo_prompts`): prompts with statistics (the preference stage's
    prompt_stats.jsonl) in, OpenRLHF's prompt file out."""
    with input_path.open() as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    ranked = hardest(records, config)
    write(output_path, ranked)
    return {"input": len(records), "kept": len(ranked), "difficulty": config.difficulty}
