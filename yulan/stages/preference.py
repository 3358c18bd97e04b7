"""Preference pairs (report §4): on-policy completions sampled from the SFT model, paired correct-vs-incorrect
for verifiable questions (final answers extracted and checked) and highest-vs-lowest reward-model score for the
rest, combined with off-policy pairs to the configured parts. Also writes per-prompt statistics (mean reward,
pass rate) next to the pairs: the PPO stage selects its challenging prompts from them.

Prompt files are JSONL: `prompt` (text or chat messages), optional `answer` (makes the question verifiable),
optional `solution` (a reference response), `id`, `category`. Pairs use OpenRLHF's format: `prompt` messages,
`chosen` and `rejected` assistant messages.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

from yulan.rewards.answers import is_correct
from yulan.runtime.records import read_jsonl, write_jsonl, write_text
from yulan.schema.experiment import Experiment, stage_output

log = logging.getLogger(__name__)

PROMPT_STATS = "prompt_stats.jsonl"


def messages_of(prompt: str | list[dict]) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def pair_for(record: dict, completions: list[str], scores: list[float], min_margin: float) -> tuple[dict | None, dict]:
    """One prompt's pair (or None) and its statistics."""
    ranked = sorted(zip(scores, completions), key=lambda item: -item[0])
    stats = {
        "id": record.get("id"),
        "prompt": record["prompt"],
        "mean_reward": sum(scores) / len(scores),
        **{key: record[key] for key in ("answer", "tests") if record.get(key) is not None},
    }
    if record.get("answer") is not None:
        verdicts = [is_correct(c, str(record["answer"])) for c in completions]
        stats["pass_rate"] = sum(verdicts) / len(verdicts)
        correct = [c for s, c in ranked if is_correct(c, str(record["answer"]))]
        wrong = [c for s, c in ranked if not is_correct(c, str(record["answer"]))]
        if not correct and record.get("solution"):
            correct, stats["chosen_from"] = [record["solution"]], "solution"  # nothing sampled was right
        if not correct or not wrong:
            return None, stats
        chosen, rejected, kind = correct[0], wrong[-1], "verified"
    else:
        (high, chosen), (low, rejected) = ranked[0], ranked[-1]
        if high - low < min_margin:
            return None, stats
        kind = "scored"
    prompt = messages_of(record["prompt"])
    return {
        "id": record.get("id"),
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "source": f"on_policy/{kind}",
    }, stats


def pair_texts(pair: dict) -> list[str]:
    return [
        str(m.get("content", "")) for key in ("prompt", "chosen", "rejected") for m in messages_of(pair.get(key) or [])
    ]


def on_policy_pairs(experiment: Experiment, records: list[dict]) -> tuple[list[dict], list[dict]]:
    """Completions of the policy for each instruction, scored by the reward model: (pairs, each prompt's stats)."""
    from yulan.rewards.reward import YulanReward
    from yulan.runtime import models
    from yulan.runtime.batches import prompt_ids
    from yulan.runtime.generation import backend_of, open_generator, sampling_for

    config = experiment.preference
    policy_path = models.model_path(experiment, experiment.resolve(config.policy))
    tokenizer = models.load_tokenizer(policy_path, experiment.model.chat_template)
    prompts = [
        prompt_ids(tokenizer, messages_of(r["prompt"]), experiment.model.context_length - config.max_new_tokens)
        for r in records
    ]
    n = config.completions_per_prompt
    generator = open_generator(experiment, policy_path, backend_of(experiment), tokenizer)
    try:
        sampling = sampling_for(
            tokenizer,
            models.generation_config_of(policy_path),
            config.max_new_tokens,
            config.temperature,
            n=n,
            seed=experiment.seed,
        )
        texts = [c.text for c in generator.generate(prompts, sampling, progress="preference sampling")]
    finally:
        generator.close()  # the engine's memory goes back before the reward model loads
    scorer = models.reward_model(experiment)
    render = YulanReward(experiment.ppo.reward).render  # the reward model's own chat format
    conversations = [messages_of(r["prompt"]) for r in records for _ in range(n)]  # completions are prompt-major
    scores = scorer([render(conversation, text) for conversation, text in zip(conversations, texts)])
    pairs, stats = [], []
    for k, record in enumerate(records):
        chunk = slice(k * n, (k + 1) * n)
        pair, stat = pair_for(record, texts[chunk], scores[chunk], config.min_score_margin)
        stats.append(stat)
        if pair:
            pairs.append(pair)
    return pairs, stats


def run(experiment: Experiment, job_dir: str) -> int:
    config = experiment.preference
    records = [r for path in config.prompts for r in read_jsonl(path)]
    on_target, off_target = config.parts["on_policy"].count, config.parts["off_policy"].count
    pairs, stats = [], []
    if on_target:
        if not records:
            log.error("preference.parts.on_policy needs instructions: list JSONL files in preference.prompts")
            return 2
        pairs, stats = on_policy_pairs(experiment, records)
    rng = random.Random(experiment.seed)
    on_policy = rng.sample(pairs, on_target) if len(pairs) > on_target else pairs
    off_policy = [r for path in config.off_policy_sources for r in read_jsonl(path)]
    off_policy = rng.sample(off_policy, off_target) if len(off_policy) > off_target else off_policy
    combined = [dict(p, source=p.get("source", "off_policy")) for p in off_policy] + on_policy
    rng.shuffle(combined)
    before, decontamination = len(combined), {}
    if config.decontaminate:
        from yulan.stages.curation.decontaminate import clean

        combined, decontamination = clean(
            combined, pair_texts, experiment.curation.decontaminate, experiment.eval.benchmarks, "preference pairs"
        )
    output = Path(stage_output(experiment.output_dir, "preference"))
    write_jsonl(output, combined)
    write_jsonl(output.with_name(PROMPT_STATS), stats)
    counts = {
        "prompts": len(records),
        "pairs": len(combined),
        "decontaminated": before - len(combined),
        "parts": {
            "on_policy": {
                "target": on_target,
                "made": len(on_policy),
                "short_by": max(on_target - len(on_policy), 0),
                "verified": sum(p["source"] == "on_policy/verified" for p in on_policy),
                "scored": sum(p["source"] == "on_policy/scored" for p in on_policy),
            },
            "off_policy": {
                "target": off_target,
                "made": len(off_policy),
                "short_by": max(off_target - len(off_policy), 0),
            },
        },
    }
    counts["decontamination"] = decontamination
    write_text(Path(job_dir) / "report.json", json.dumps(counts, indent=2))
    log.info(f"[preference] {json.dumps({k: v for k, v in counts.items() if k != 'decontamination'})}")
    if not combined:
        log.error("no preference pair could be made (see report.json)")
        return 1
    return 0
