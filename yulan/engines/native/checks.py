"""What a native trainer cannot carry out, found before anything runs (no torch import: launch checks it)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from yulan.schema.errors import Problem
from yulan.schema.experiment import Experiment
from yulan.schema.models import mismatches


def prerun_problems(experiment: Experiment, stage: str, here: bool = True) -> list[Problem]:
    """Checkpoints that already exist as local directories are compared with `model.*` / `reward_model.*`; `here`:
    also what this machine lacks (flash-attn for attention=flash_attention_2)."""
    config = getattr(experiment, stage)
    if config.engine != "native":
        return []
    problems = []
    if here and config.attention == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        problems.append(
            Problem(
                f"{stage}.attention",
                "flash_attention_2 needs the flash-attn package, which this environment lacks",
                config.attention,
                f"install flash-attn built for this machine's CUDA, or set {stage}.attention=sdpa",
            )
        )
    checkpoints = {"model": experiment.resolve(config.actor.init_from if stage == "ppo" else config.init_from)}
    if stage == "ppo" and config.critic.init_from == "reward_model":
        checkpoints["reward_model"] = experiment.reward_model.name_or_path
    for spec_name, path in checkpoints.items():
        file = Path(path) / "config.json"
        if file.is_file():
            problems += mismatches(getattr(experiment, spec_name), json.loads(file.read_text()), spec_name, path)
    return problems
