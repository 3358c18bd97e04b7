"""The OpenRLHF engine inside a job: its command with the secrets the job's environment holds, torch's distributed
environment from SLURM's, the reward server and the PPO driver (in its own process group, watched by the health
rules). The PPO prompts are selected before this runs (the job entry point does it for every engine)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from yulan.engines.openrlhf import command as openrlhf
from yulan.rewards.health import SharedWatch, read_alerts, unwatched_notice, watch_settings
from yulan.rewards.reward import RewardServerError, post_rewards, write_reward_file
from yulan.runtime import distributed
from yulan.runtime.http import JsonClient
from yulan.runtime.lifecycle import HEALTH_STOP_STATUS
from yulan.schema.experiment import Experiment

log = logging.getLogger(__name__)


def engine_argv(command: list[str], tracking_mode: str) -> list[str]:
    """Secrets enter the engine's argv only here, from the job's environment, never from a file.

    OpenRLHF logs to wandb only when given a key; offline wandb checks none, so a marker stands in for it.
    """
    key = os.environ.get("WANDB_API_KEY") or ("offline" if tracking_mode == "offline" else "")
    return [key if token == openrlhf.WANDB_KEY_PLACEHOLDER else token for token in command]


def split_gpus(visible: list[str], reward_gpus: int) -> tuple[list[str], list[str]]:
    """The node's last `reward_gpus` GPUs serve the reward model; Ray (started by the driver) sees the rest."""
    return (visible[:-reward_gpus], visible[-reward_gpus:]) if reward_gpus else (visible, [])


def wait_until_serving(url: str, server: subprocess.Popen, timeout_s: float, poll_s: float = 2.0) -> None:
    """Poll the server with a real request until it answers; fail as soon as it exits or the time is up."""
    deadline = time.monotonic() + timeout_s
    client = JsonClient(url, timeout_s=min(poll_s * 5, 30.0), max_retries=0)
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the reward server exited with status {server.returncode} before serving")
        try:
            post_rewards(client, ["ping"])
            client.close()
            return
        except RewardServerError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the reward server at {url} did not answer within {timeout_s:.0f} s") from None
            time.sleep(poll_s)


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def run_openrlhf(experiment: Experiment, stage: str, job_dir: str) -> int:
    tracking = experiment.tracking
    if tracking.backend == "wandb" and tracking.mode == "online" and not os.environ.get("WANDB_API_KEY"):
        log.error("tracking.mode=online needs WANDB_API_KEY in the job's environment (or tracking.mode=offline)")
        return 2
    command = engine_argv(openrlhf.command(experiment, stage, job_dir), tracking.mode)
    env = dict(os.environ, WANDB_MODE=tracking.mode)
    if stage != "ppo":
        if int(env.get("SLURM_NTASKS", "1")) > 1:  # one task per GPU: torch's distributed environment from SLURM's
            env.update(distributed.torch_env(env, distributed.hostnames(env["SLURM_JOB_NODELIST"])))
        status = subprocess.call(command, env=env)
    elif int(env.get("SLURM_JOB_NUM_NODES", "1")) > 1:
        resources = experiment.ppo.resources
        env["RAY_ADDRESS"] = "auto"  # the driver joins the cluster this job starts
        status = distributed.run_ray_job(
            env,
            resources.gpus_per_node,
            experiment.ppo.placement.reward_gpus,
            job_dir,
            lambda: run_ppo_driver(experiment, job_dir, command, env),
        )
    else:
        status = run_ppo_driver(experiment, job_dir, command, env)
    if status == 0 and getattr(experiment, stage).lora.rank:
        merge_stage_adapters(experiment, stage, job_dir)
    return status


def merge_stage_adapters(experiment: Experiment, stage: str, job_dir: str) -> None:
    """OpenRLHF saves a LoRA stage's adapters alone in {job_dir}/model; later stages load a full model there. The
    adapters move to {job_dir}/adapter and the merged model takes their place."""
    from yulan.runtime.checkpoints import merge_adapter
    from yulan.runtime.models import DTYPES

    config = getattr(experiment, stage)
    model, adapters = Path(job_dir) / "model", Path(job_dir) / "adapter"
    if not (model / "adapter_config.json").exists():
        return  # merged already (a resumed job)
    if adapters.exists():
        shutil.rmtree(adapters)
    model.rename(adapters)
    start = {"sft": experiment.sft.init_from, "dpo": experiment.dpo.init_from, "ppo": experiment.ppo.actor.init_from}
    merge_adapter(experiment.resolve(start[stage]), adapters, model, DTYPES[config.param_dtype])


def run_ppo_driver(experiment: Experiment, job_dir: str, command: list[str], env: dict[str, str]) -> int:
    reward, server, server_log = experiment.ppo.reward, None, None
    try:
        if reward.mode == "remote_function":
            url = reward.server_url
            server_command = openrlhf.reward_server_command(experiment)
            if server_command:
                gpus = env.get(
                    "CUDA_VISIBLE_DEVICES", ",".join(map(str, range(experiment.ppo.resources.gpus_per_node)))
                )
                ray_gpus, server_gpus = split_gpus(gpus.split(","), experiment.ppo.placement.reward_gpus)
                host = "127.0.0.1" if experiment.ppo.resources.nodes == 1 else socket.gethostname()
                url = f"http://{host}:{reward.server_port}"
                server_log = open(Path(job_dir) / "reward_server.log", "ab")
                server = subprocess.Popen(
                    server_command,
                    env=dict(env, CUDA_VISIBLE_DEVICES=",".join(server_gpus)),
                    stdout=server_log,
                    stderr=subprocess.STDOUT,
                )
                env["CUDA_VISIBLE_DEVICES"] = ",".join(ray_gpus)
                wait_until_serving(url + "/get_reward", server, reward.server_start_timeout_s)
            write_reward_file(
                reward,
                url,
                job_dir,
                unchecked_score=experiment.ppo.dynamic_filtering.neutral_score,
                health=watch_settings(experiment, job_dir),
            )
        return run_watched(experiment, job_dir, command, env)
    except (RuntimeError, TimeoutError) as error:
        log.error(f"{error} (log: {job_dir}/reward_server.log)")
        return 2
    finally:
        if server is not None:
            stop(server)
        if server_log is not None:
            server_log.close()


def end_group(process: subprocess.Popen, grace_s: float = 60.0) -> None:
    """SIGTERM to the engine's process group (the Ray driver and what it started on this node), SIGKILL after the
    grace period."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        process.wait()


def run_watched(
    experiment: Experiment, job_dir: str, command: list[str], env: dict[str, str], poll_s: float = 5.0
) -> int:
    """The OpenRLHF PPO driver in its own process group, watched: between polls the health statistics its reward
    function appended to metrics.jsonl go to wandb (a `-health` run beside OpenRLHF's own), and a stop alert in
    alerts.jsonl ends the whole group. What survives such a stop: OpenRLHF's last DeepSpeed checkpoint in
    job_dir/checkpoints (every ppo.save_every_steps rollouts; a resubmitted job resumes there with --ckpt.load_enable),
    no final model and no DONE marker, so no later stage reads the collapsed policy."""
    health = experiment.ppo.health
    notice = unwatched_notice(health, "openrlhf", experiment.ppo.health_statistics)
    if notice:
        log.warning("%s", notice)
    watched = watch_settings(experiment, job_dir) is not None
    if watched:
        SharedWatch(job_dir, health, experiment.ppo.samples_per_rollout).reset()
    alerts_before = len(read_alerts(job_dir))
    forwarded = MetricsForwarder(experiment, job_dir) if watched else None
    engine = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        while True:
            try:
                return engine.wait(timeout=poll_s)
            except subprocess.TimeoutExpired:
                pass
            if forwarded:
                forwarded.poll()
            stops = [a for a in read_alerts(job_dir)[alerts_before:] if a.get("action") == "stop"]
            if stops:
                log.info(f"{stops[0]['message']}; ending the OpenRLHF run (alerts: {job_dir}/alerts.jsonl)")
                end_group(engine)
                return HEALTH_STOP_STATUS
    finally:
        if engine.poll() is None:
            end_group(engine)
        if forwarded:
            forwarded.poll()
            forwarded.tracker.finish()


class MetricsForwarder:
    """New lines of the stage's metrics.jsonl (written by the reward function) to the stage's `-health` wandb run."""

    def __init__(self, experiment: Experiment, job_dir: str):
        from yulan.runtime.tracking import Tracker

        self.path, self.offset = Path(job_dir) / "metrics.jsonl", 0
        self.tracker = Tracker(experiment, "ppo", job_dir, label="health")
        if self.path.is_file():
            self.offset = self.path.stat().st_size  # a resumed job's earlier lines were forwarded by its first job

    def poll(self) -> None:
        if not self.path.is_file():
            return
        with self.path.open("rb") as source:
            source.seek(self.offset)
            for line in source:
                if not line.endswith(b"\n"):
                    break  # still being written
                self.offset += len(line)
                values = json.loads(line)
                self.tracker.log(values.pop("step"), values, to_file=False)


# The stage records' runners: (experiment, job_dir) -> exit status
def run_sft(experiment: Experiment, job_dir: str) -> int:
    return run_openrlhf(experiment, "sft", job_dir)


def run_dpo(experiment: Experiment, job_dir: str) -> int:
    return run_openrlhf(experiment, "dpo", job_dir)


def run_ppo(experiment: Experiment, job_dir: str) -> int:
    return run_openrlhf(experiment, "ppo", job_dir)
