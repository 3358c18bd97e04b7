"""Every emitted OpenRLHF command line parses with the real 0.11.2 parser, rebuilt from the wheel's source."""

import pytest

from yulan.compose import load
from yulan.engines.openrlhf import command as openrlhf
from yulan.engines.openrlhf.contract import ContractError, check, parser_from_wheel

VARIANTS = [
    ("sft_yulan", "sft", []),
    (
        "sft_yulan",
        "sft",
        ["sft.packing=false", "sft.attention=sdpa", "sft.gradient_checkpointing=false", "sft.loss_on=all"],
    ),
    (
        "sft_yulan",
        "sft",
        ["sft.zero_stage=3", "sft.micro_batch_size=2", "tracking.entity=lab", "tracking.mode=disabled"],
    ),
    (
        "sft_yulan",
        "sft",
        ["sft.engine_options.ring_attention_size=4", "sft.engine_options.liger_kernel=true", "sft.lora.rank=16"],
    ),
    ("dpo_yulan", "dpo", []),
    ("dpo_yulan", "dpo", ["dpo.lora.rank=8", "dpo.lora.target_modules=[q_proj,v_proj]", "dpo.lora.dropout=0.05"]),
    ("dpo_yulan", "dpo", ["dpo.label_smoothing=0.1", "dpo.lr_scheduler=constant"]),
    ("ppo_yulan", "ppo", []),
    ("ppo_yulan_async", "ppo", []),
    (
        "ppo_yulan",
        "ppo",
        [
            "ppo.kl.adaptive=false",
            "ppo.reward.mode=remote_function",
            "ppo.placement.colocate_all=true",
            "ppo.placement.vllm_gpu_memory_utilization=0.5",
        ],
    ),
    (
        "ppo_yulan",
        "ppo",
        ["ppo.reward.server_url=http://rm:5000", "ppo.placement.reward_gpus=0", "ppo.actor.frozen_steps=0"],
    ),
    (
        "yulan_full",
        "ppo",
        [
            "reward_model=tiny",
            "model=tiny",
            "ppo.critic.init_from=reward_model",
            "ppo.reward.mode=local_model",
            "ppo.health.rules.length_collapse.action=warn",
            "ppo.prompt_max_length=512",
            "ppo.generate_max_length=256",
            "sft.max_length=1024",
            "dpo.max_length=1024",
        ],
    ),
]


ENGINE_LEVEL = [
    (
        "sft_yulan",
        "sft",
        ["sft.engine_options.ring_attention_size=4", "sft.engine_options.full_determinism=true"],
        {"ds.ring_attn_size": 4, "train.full_determinism_enable": True, "ds.packing_samples": True},
    ),
    (
        "dpo_yulan",
        "dpo",
        ["dpo.lora.rank=8", "dpo.lora.alpha=32", "dpo.lora.target_modules=[q_proj,v_proj]", "dpo.lora.dropout=0.05"],
        {
            "ds.lora.rank": 8,
            "ds.lora.alpha": 32,
            "ds.lora.target_modules": ["q_proj", "v_proj"],
            "ds.lora.dropout": 0.05,
        },
    ),
    (
        "ppo_yulan",
        "ppo",
        ["ppo.async_rollouts.enabled=true", "ppo.async_rollouts.queue_size=2", "ppo.async_rollouts.partial=true"],
        {"train.async_enable": True, "train.async_queue_size": 2, "train.partial_rollout_enable": True},
    ),
    (
        "ppo_yulan",
        "ppo",
        ["ppo.engine_options.liger_kernel=true", "ppo.engine_options.ring_attention_size=2", "ppo.lora.rank=4"],
        {"ds.use_liger_kernel": True, "ds.ring_attn_size": 2, "ds.packing_samples": True, "ds.lora.rank": 4},
    ),
    ("ppo_yulan", "ppo", [], {"train.async_enable": False, "ds.lora.rank": 0, "ds.ring_attn_size": 1}),
]


@pytest.fixture(scope="module")
def parsers(openrlhf_wheel):
    return {stage: parser_from_wheel(openrlhf_wheel, module) for stage, module in openrlhf.MODULES.items()}


@pytest.mark.parametrize(
    ("experiment", "stage", "overrides"), VARIANTS, ids=[f"{e}-{' '.join(o)}" for e, _, o in VARIANTS]
)
def test_command_parses_with_the_real_parser(parsers, experiment, stage, overrides):
    config = load([f"experiment={experiment}", *overrides])
    argv = openrlhf.command(config, stage, "runs/x")
    assert argv[:3] == ["python", "-m", openrlhf.MODULES[stage]]
    check(parsers[stage], argv[3:])


@pytest.mark.parametrize(("experiment", "stage", "overrides", "expected"), ENGINE_LEVEL)
def test_engine_level_settings_reach_openrlhfs_flags(parsers, experiment, stage, overrides, expected):
    args = vars(
        check(parsers[stage], openrlhf.command(load([f"experiment={experiment}", *overrides]), stage, "runs/x")[3:])
    )
    for key, value in expected.items():
        assert (list(args[key]) if isinstance(args[key], (list, tuple)) else args[key]) == value, key


def test_reward_server_command_parses_and_covers_ppo_lengths(parsers, openrlhf_wheel):
    serve = parser_from_wheel(openrlhf_wheel, openrlhf.MODULES["reward_server"])
    experiment = load(["experiment=ppo_yulan"])
    args = vars(check(serve, openrlhf.reward_server_command(experiment)[3:]))
    assert args["reward.model_name_or_path"] == "Skywork/Skywork-Reward-Llama-3.1-8B-v0.2"
    assert args["data.max_len"] >= experiment.ppo.max_sequence_length  # serve_rm's default 2048 would truncate
    assert (
        openrlhf.reward_server_command(
            load(["experiment=ppo_yulan", "ppo.reward.server_url=http://rm:1", "ppo.placement.reward_gpus=0"])
        )
        is None
    )


def test_report_values_reach_the_right_flags(parsers):
    ppo = vars(check(parsers["ppo"], openrlhf.command(load(["experiment=ppo_yulan"]), "ppo", "runs/x")[3:]))
    assert ppo["actor.adam.lr"] == 1e-6 and ppo["critic.adam.lr"] == 1e-5
    assert ppo["train.batch_size"] == 128 and ppo["train.num_episodes"] == 4
    assert ppo["rollout.n_samples_per_prompt"] == 4
    assert ppo["data.max_len"] == 4096 and ppo["rollout.max_new_tokens"] == 2048
    assert ppo["algo.kl.init_coef"] == 0.01 and ppo["algo.kl.target"] == 0.06
    assert ppo["algo.advantage.lambd"] == 0.95 and ppo["algo.advantage.gamma"] == 1.0
    assert ppo["rollout.temperature"] == 1.0
    assert list(ppo["reward.clip_range"]) == [-20.0, 10.0]
    assert ppo["actor.lr_warmup_ratio"] == 0 and ppo["critic.lr_scheduler"] == "constant"
    assert ppo["reward.remote_url"] == "runs/x/reward_func.py" and ppo["reward.model_name_or_path"] is None
    sft = vars(check(parsers["sft"], openrlhf.command(load(["experiment=sft_yulan"]), "sft", "runs/x")[3:]))
    assert (sft["train.batch_size"], sft["data.max_len"], sft["train.max_epochs"], sft["adam.lr"]) == (
        512,
        28672,
        2,
        1e-5,
    )
    assert sft["data.max_samples"] >= 8_200_000  # OpenRLHF's default of 1,000,000 would drop most of the mix
    dpo = vars(check(parsers["dpo"], openrlhf.command(load(["experiment=dpo_yulan"]), "dpo", "runs/x")[3:]))
    assert (dpo["train.max_epochs"], dpo["train.batch_size"], dpo["adam.lr"], dpo["model.beta"]) == (2, 128, 5e-7, 0.1)
    assert dpo["data.max_len"] == 4096  # not OpenRLHF's silent default of 512


def test_is_correction_reaches_openrlhfs_flags(parsers):
    off = vars(check(parsers["ppo"], openrlhf.command(load(["experiment=ppo_yulan"]), "ppo", "runs/x")[3:]))
    assert off["algo.advantage.is_correction_level"] == "off"
    overrides = ["ppo.is_correction.level=seq", "ppo.is_correction.threshold=[0.9,1.1]"]
    on = vars(check(parsers["ppo"], openrlhf.command(load(["experiment=ppo_yulan", *overrides]), "ppo", "runs/x")[3:]))
    assert on["algo.advantage.is_correction_level"] == "seq" and on["algo.advantage.is_correction_mode"] == "mask"
    assert on["algo.advantage.is_correction_gating"] == "ratio"
    assert list(on["algo.advantage.is_correction_threshold"]) == [0.9, 1.1]


def test_fifteen_frozen_rollouts_in_openrlhf_terms(parsers):
    """OpenRLHF 0.11.2 runs the actor when a 0-based rollout counter exceeds freezing_steps."""
    for frozen in (0, 1, 15):
        args = vars(
            check(
                parsers["ppo"],
                openrlhf.command(load(["experiment=ppo_yulan", f"ppo.actor.frozen_steps={frozen}"]), "ppo", "runs/x")[
                    3:
                ],
            )
        )
        actor_runs = [step for step in range(40) if step > args["critic.freezing_steps"]]
        assert actor_runs[0] == frozen  # rollouts 0 .. frozen-1 update only the critic: exactly `frozen` of them


def test_adaptive_kl_is_off_without_target(parsers):
    args = vars(
        check(parsers["ppo"], openrlhf.command(load(["experiment=ppo_yulan", "ppo.kl.adaptive=false"]), "ppo", "x")[3:])
    )
    assert args["algo.kl.target"] is None and args["algo.kl.init_coef"] == 0.01


@pytest.mark.parametrize(
    "bad",
    [
        ["--train.batch", "3"],  # abbreviation that argparse would silently accept
        ["--train_batch_size", "3"],  # pre-0.10.2 flat name
        ["--pretrain", "x"],  # renamed
        ["--freezing_actor_steps", "15"],  # renamed
        ["--prompt_max_len", "2048"],  # removed in 0.9.8
        ["--train.batch_size", "many"],  # wrong type
        ["--reward.clip_range", "-20"],  # wrong number of values
        ["--optim", "sgd"],  # not a choice
    ],
)
def test_checker_rejects_bad_flags(parsers, bad):
    with pytest.raises(ContractError):
        check(parsers["ppo"] if "clip" in bad[0] or "freezing" in bad[0] else parsers["sft"], bad)


def test_no_secret_on_the_command_line():
    argv = openrlhf.command(load(["experiment=ppo_yulan"]), "ppo", "runs/x")
    key = argv[argv.index("--logger.wandb.key") + 1]
    assert key == openrlhf.WANDB_KEY_PLACEHOLDER


def test_job_runner_fills_the_key_from_the_environment(monkeypatch):
    from yulan.engines.openrlhf.driver import engine_argv

    argv = ["--logger.wandb.key", openrlhf.WANDB_KEY_PLACEHOLDER]
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert engine_argv(argv, "online") == ["--logger.wandb.key", "k" * 40]
    monkeypatch.delenv("WANDB_API_KEY")
    assert engine_argv(argv, "offline") == ["--logger.wandb.key", "offline"]  # offline wandb checks no key


def test_offline_wandb_accepts_the_marker_key(tmp_path):
    """What OpenRLHF does with the key, on real wandb in offline mode: login, init, log, finish."""
    import os
    import subprocess
    import sys

    import wandb

    code = (
        "import wandb\n"
        "if not wandb.api.api_key: wandb.login(key='offline')\n"
        "run = wandb.init(project='p', name='sft'); run.log({'loss': 1.0}); run.finish()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"} | {
        "WANDB_MODE": "offline",
        "HOME": str(tmp_path),
    }
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "wandb").glob("offline-run-*")), wandb.__version__


def test_online_tracking_without_key_refuses(tmp_path, monkeypatch):
    from yulan.engines.openrlhf.driver import run_openrlhf

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    experiment = load(["experiment=sft_yulan", "tracking.mode=online"])
    assert run_openrlhf(experiment, "sft", str(tmp_path)) == 2


def test_unknown_engine_version_is_refused():
    experiment = load(["experiment=ppo_yulan"]).model_copy(update={"openrlhf_version": "0.12.0"})
    with pytest.raises(openrlhf.EngineVersionError, match="0.12.0"):
        openrlhf.command(experiment, "ppo", "runs/x")
