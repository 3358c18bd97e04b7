"""Job entry point: `python -m yulan.run --run-dir DIR --stage STAGE` runs one stage of a planned run."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from schema.experiment import Experiment
from yulan.engines import openrlhf
from yulan.reward import write_reward_file
from yulan.stages import runner


def engine_argv(command: list[str]) -> list[str]:
    """Secrets enter the engine's argv only here, from the job's environment, never from a file."""
    key = os.environ.get("WANDB_API_KEY", "")
    return [key if token == openrlhf.WANDB_KEY_PLACEHOLDER else token for token in command]


def prepare_openrlhf(experiment: Experiment, stage: str, job_dir: str) -> str | None:
    """Files the PPO command line names: the prompt set and the reward function. Returns what is missing."""
    if stage != "ppo":
        return None
    prompts = Path(job_dir) / "data" / "prompts.jsonl"
    if not prompts.exists():
        return f"{prompts} is missing: selecting PPO prompts from the preference data is not built yet"
    reward = experiment.ppo.reward
    if reward.mode == "remote_function":
        if reward.server_url is None:
            return "starting a reward-model server inside the PPO job is not built yet: set ppo.reward.server_url"
        write_reward_file(reward, reward.server_url, job_dir)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m yulan.run", description=__doc__)
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--stage", required=True)
    args = parser.parse_args(argv)
    experiment = Experiment.model_validate_json((args.run_dir / "config.json").read_text())
    job_dir = f"{experiment.output_dir}/{args.stage}"
    Path(job_dir).mkdir(parents=True, exist_ok=True)
    engine = getattr(getattr(experiment, args.stage), "engine", None)
    if engine == "openrlhf":
        problem = prepare_openrlhf(experiment, args.stage, job_dir)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        return subprocess.call(engine_argv(openrlhf.command(experiment, args.stage, job_dir)))
    run_stage = runner(args.stage, engine)
    if run_stage is None:
        print(f"error: stage '{args.stage}' (engine {engine}) has no implementation in this version", file=sys.stderr)
        return 2
    return int(run_stage(experiment, job_dir) or 0)


if __name__ == "__main__":
    sys.exit(main())
