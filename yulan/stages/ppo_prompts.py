"""PPO prompt selection (report §5: '10,000 challenging prompts from the DPO dataset'): the prompts whose sampled
completions did worst, by the configured difficulty signal, written as OpenRLHF's prompt file (`prompt` messages
and as `label` the conversation with its reference answer or tests, which the reward function reads)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from yulan.runtime.records import SetAside, read_jsonl, write_jsonl, write_text
from yulan.schema.curation import DecontaminationConfig
from yulan.schema.experiment import Experiment, ppo_prompt_file, stage_output
from yulan.schema.ppo import PromptSet
from yulan.stages.curation.io import refuse_overwriting, side_file, write_set_aside
from yulan.stages.preference import PROMPT_STATS, messages_of

log = logging.getLogger(__name__)


def prompt_problem(record: dict) -> str | None:
    """What is wrong with a prompt record (and what was expected), or None."""
    prompt = record.get("prompt")
    if prompt is None:
        return (
            f"no `prompt` (fields: {sorted(record)[:8]}); expected `prompt`: a string or a list of "
            f"{{role, content}} messages"
        )
    if not isinstance(prompt, str) and not (
        isinstance(prompt, list)
        and prompt
        and all(
            isinstance(m, dict) and isinstance(m.get("content"), str) and isinstance(m.get("role"), str) for m in prompt
        )
    ):
        return (
            f"`prompt` is {json.dumps(prompt, ensure_ascii=False)[:80]}; expected a string or a list of "
            f"{{role, content}} messages"
        )
    for key, low, high in (("pass_rate", 0.0, 1.0), ("mean_reward", -math.inf, math.inf)):
        if key in record and (key == "mean_reward" or record[key] is not None):
            value = record[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                expected = "a number from 0 to 1 (or null)" if key == "pass_rate" else "a number"
                return f"`{key}` is {json.dumps(value)[:40]}; expected {expected}"
    return None


def candidates(experiment: Experiment, set_aside: SetAside | None) -> tuple[list[dict], dict]:
    """The preference stage's per-prompt statistics, or a user's JSONL file of prompts (with optional statistics),
    less those that match the evaluation table (ppo.prompts.decontaminate)."""
    source = experiment.resolve(experiment.ppo.prompts.source)
    if experiment.ppo.prompts.source == "preference":
        source = str(Path(stage_output(experiment.output_dir, "preference")).with_name(PROMPT_STATS))
    records = read_jsonl(source, check=prompt_problem, set_aside=set_aside)
    return decontaminated(
        records, experiment.ppo.prompts, experiment.curation.decontaminate, experiment.eval.benchmarks
    )


def decontaminated(records: list[dict], config: PromptSet, settings, benchmarks) -> tuple[list[dict], dict]:
    """The records less those matching the evaluation table, and the decontamination rows per benchmark."""
    if not config.decontaminate:
        return records, {}
    from yulan.stages.curation.decontaminate import clean

    return clean(records, prompt_texts, settings, benchmarks, "ppo prompts")


def prompt_texts(record: dict) -> list[str]:
    return [m["content"] for m in messages_of(record["prompt"])] + [
        str(record[k]) for k in ("answer",) if record.get(k)
    ]


def difficulty(record: dict, signal: str) -> tuple[float, float]:
    """Sort key, hardest first. Prompts without a pass rate rank after those with one, by mean reward."""
    reward = record.get("mean_reward", 0.0)
    if signal == "lowest_pass_rate":
        rate = record.get("pass_rate")
        return (rate if rate is not None else 2.0, reward)
    return (reward, 0.0)


def select(experiment: Experiment, job_dir: str) -> Path:
    path = Path(ppo_prompt_file(job_dir))
    set_aside = SetAside.under(experiment.ppo.prompts.on_bad_record)
    records, rows = candidates(experiment, set_aside)
    write(path, hardest(records, experiment.ppo.prompts))
    counts = {"input": len(records), "bad_records": write_set_aside(set_aside, path), "decontamination": rows}
    write_text(side_file(path, "report.json"), json.dumps(counts, indent=2))
    return path


def hardest(records: list[dict], config: PromptSet) -> list[dict]:
    ranked = sorted(records, key=lambda r: difficulty(r, config.difficulty))[: config.count]
    if len(ranked) < config.count:
        log.warning(
            f"ppo.prompts.count={config.count} but only {len(ranked)} prompts are available; "
            "PPO runs with fewer rollouts"
        )
    return ranked


def write(path: Path, ranked: list[dict]) -> None:
    write_jsonl(
        path,
        (
            {"id": record.get("id"), "prompt": messages_of(record["prompt"]), "label": label(record)}
            for record in ranked
        ),
    )


def label(record: dict) -> str:
    """What the reward function receives with each sample (as JSON text): the whole conversation, which it renders
    in the reward model's format, and the reference (`answer` or `tests`) its verifier checks against."""
    references = {key: record[key] for key in ("answer", "tests") if record.get(key) is not None}
    return json.dumps({"messages": messages_of(record["prompt"]), **references}, ensure_ascii=False)


def run(input_path: Path, output_path: Path, config: PromptSet, seed: int = 0, benchmarks: dict | None = None) -> dict:
    """Standalone (`yulan curate ppo_prompts`): prompts with statistics (the preference stage's
    prompt_stats.jsonl) in, OpenRLHF's prompt file out."""
    refuse_overwriting(
        [input_path], [output_path, side_file(output_path, "bad.jsonl"), side_file(output_path, "report.json")]
    )
    set_aside = SetAside.under(config.on_bad_record)
    records = read_jsonl(input_path, check=prompt_problem, set_aside=set_aside)
    records, rows = decontaminated(records, config, DecontaminationConfig(), benchmarks or {})
    ranked = hardest(records, config)
    write(output_path, ranked)
    counts = {
        "input": len(records),
        "kept": len(ranked),
        "difficulty": config.difficulty,
        "bad_records": write_set_aside(set_aside, output_path),
        "decontamination": rows,
    }
    write_text(side_file(output_path, "report.json"), json.dumps(counts, indent=2))
    return counts
