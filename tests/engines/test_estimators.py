"""The RL estimator menu: each estimator and loss against a closed form on a small ragged batch, both engines'
settings for every value, a native GRPO run without a critic, and the rules that tie the settings together."""

import json
import math

import pytest
import torch

from yulan.cli.job import run_stage
from yulan.compose import load
from yulan.engines.native import estimators, losses, ppo
from yulan.engines.openrlhf import command as openrlhf
from yulan.engines.openrlhf.contract import check
from yulan.runtime import models, tiny
from yulan.runtime.records import write_jsonl
from yulan.schema.errors import ConfigError

# Two prompts x three samples, responses of 3, 1, 2 / 2, 3, 1 tokens; the second prompt's rewards are all equal.
REWARDS = torch.tensor([1.0, 0.0, 4.0, 2.0, 2.0, 2.0])
LENGTHS = [3, 1, 2, 2, 3, 1]
MASK = torch.tensor([[1.0 if t < n else 0.0 for t in range(3)] for n in LENGTHS])
NO_KL = torch.zeros_like(MASK)
WIDE = (-100.0, 100.0)


def run(name, rewards=REWARDS, kl=NO_KL, kl_coef=0.0, values=None, clip=WIDE, gamma=1.0):
    return estimators.advantages_and_returns(name, rewards, 3, kl, kl_coef, MASK, values, clip, gamma, 0.95)


def per_sample(advantages):
    """Each sample's advantage (constant over its tokens without KL and γ = 1)."""
    rows = [advantages[i, :n] for i, n in enumerate(LENGTHS)]
    assert all(torch.allclose(row, row[0].expand_as(row)) for row in rows)
    return [row[0].item() for row in rows]


def whitened(per_sample_values):
    tokens = [v for v, n in zip(per_sample_values, LENGTHS) for _ in range(n)]
    mean = sum(tokens) / len(tokens)
    std = math.sqrt(sum((t - mean) ** 2 for t in tokens) / len(tokens))
    return [(v - mean) / std for v in per_sample_values]


def test_group_norm_is_grpo_and_equal_rewards_give_zero():
    mean, std = 5 / 3, torch.tensor([1.0, 0.0, 4.0]).std().item()
    expected = [(r - mean) / (std + 1e-9) for r in (1.0, 0.0, 4.0)] + [0.0, 0.0, 0.0]
    assert per_sample(run("group_norm")[0]) == pytest.approx(expected, abs=1e-6)


def test_rloo_subtracts_the_mean_of_the_other_samples():
    expected = [1 - 2.0, 0 - 2.5, 4 - 0.5, 0.0, 0.0, 0.0]
    assert per_sample(run("rloo")[0]) == pytest.approx(expected)


def test_dr_grpo_subtracts_the_group_mean_without_dividing_by_its_std():
    expected = [1 - 5 / 3, 0 - 5 / 3, 4 - 5 / 3, 0.0, 0.0, 0.0]
    assert per_sample(run("dr_grpo")[0]) == pytest.approx(expected)


def test_reinforce_baseline_whitens_the_group_centred_reward_over_tokens():
    centred = [1 - 5 / 3, 0 - 5 / 3, 4 - 5 / 3, 0.0, 0.0, 0.0]
    assert per_sample(run("reinforce_baseline")[0]) == pytest.approx(whitened(centred), abs=1e-6)


def test_reinforce_plus_plus_whitens_the_raw_return():
    assert per_sample(run("reinforce")[0]) == pytest.approx(whitened(REWARDS.tolist()), abs=1e-6)


def test_flash_reinforce_subtracts_the_batch_mean():
    mean = REWARDS.mean().item()
    assert per_sample(run("flash_reinforce")[0]) == pytest.approx([r - mean for r in REWARDS.tolist()])


def test_reinforce_discounts_and_the_kl_penalty_lands_on_every_token():
    kl = torch.full_like(MASK, 0.5)
    _, returns = run("reinforce", kl=kl, kl_coef=0.2, gamma=0.5)
    # sample 0 (3 tokens, reward 1): per-token rewards −0.1, −0.1, 1 − 0.1
    assert returns[0].tolist() == pytest.approx([-0.1 + 0.5 * (-0.1 + 0.5 * 0.9), -0.1 + 0.5 * 0.9, 0.9])
    assert returns[1].tolist() == pytest.approx([-0.1, 0.0, 0.0])  # one token, then padding


def test_gae_uses_the_critic_and_whitens():
    values = torch.tensor([[0.5, 0.2, 0.1]]).expand(6, 3) * MASK
    advantages, returns = run("gae", values=values)
    d2 = 1.0 - 0.1
    d1 = 0.0 + 0.1 - 0.2
    d0 = 0.0 + 0.2 - 0.5
    raw0 = [d0 + 0.95 * (d1 + 0.95 * d2), d1 + 0.95 * d2, d2]
    assert returns[0].tolist() == pytest.approx([a + v for a, v in zip(raw0, [0.5, 0.2, 0.1])])
    real = advantages[MASK.bool()]
    assert real.mean().item() == pytest.approx(0.0, abs=1e-6) and real.std(unbiased=False).item() == pytest.approx(
        1.0, abs=1e-4
    )


def test_the_clip_range_applies_after_the_baseline():
    _, returns = run("rloo", clip=(-1.0, 1.0))
    assert returns[2, 0].item() == 1.0 and returns[1, 0].item() == -1.0  # 3.5 and −2.5 clipped


def test_kl_estimators():
    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    log_ratio = logp - ref
    assert losses.kl_estimate(logp, ref, "k1").tolist() == pytest.approx(log_ratio.tolist())
    assert losses.kl_estimate(logp, ref, "k2").tolist() == pytest.approx((log_ratio**2 / 2).tolist())
    assert losses.kl_estimate(logp, ref, "k3").tolist() == pytest.approx(((-log_ratio).exp() - 1 + log_ratio).tolist())


def test_policy_loss_clip_higher_and_both_aggregations():
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    old = torch.zeros(2, 3)
    logps = torch.log(torch.tensor([[1.5, 1.5, 0.5], [1.5, 1.0, 1.0]]))
    adv = torch.tensor([[1.0, 1.0, -1.0], [1.0, 0.0, 0.0]])
    totals = losses.Totals(tokens=4, samples=2)
    symmetric, clipped_share = losses.policy_loss(logps, old, adv, mask, (0.2, 0.2), "token-mean", totals)
    # ratio 1.5 with A = 1 is clipped at 1.2; ratio 0.5 with A = −1 at 0.8 (min picks −0.8)
    assert symmetric.item() == pytest.approx(-(1.2 + 1.2 - 0.8 + 1.2) / 4)
    assert clipped_share.item() == pytest.approx(1.0)
    higher, _ = losses.policy_loss(logps, old, adv, mask, (0.2, 0.28), "token-mean", totals)
    assert higher.item() == pytest.approx(-(1.28 + 1.28 - 0.8 + 1.28) / 4)
    per_sequence, _ = losses.policy_loss(logps, old, adv, mask, (0.2, 0.2), "seq-mean-token-mean", totals)
    assert per_sequence.item() == pytest.approx(-((1.2 + 1.2 - 0.8) / 3 + 1.2) / 2, rel=1e-6)


def test_aggregation_over_micro_batches_equals_the_whole_batch():
    loss = torch.rand(4, 5)
    mask = (torch.rand(4, 5) > 0.3).float()
    mask[:, 0] = 1
    totals = losses.Totals(tokens=mask.sum().item(), samples=4)
    for mode in ("token-mean", "seq-mean-token-mean"):
        whole = losses.aggregate(loss, mask, mode, totals)
        parts = losses.aggregate(loss[:1], mask[:1], mode, totals) + losses.aggregate(loss[1:], mask[1:], mode, totals)
        assert parts.item() == pytest.approx(whole.item())


def test_length_rules_match_openrlhf():
    config = load(
        [
            "ppo.reward.overlong_buffer_len=16",
            "ppo.reward.overlong_penalty_factor=2.0",
            "ppo.reward.stop_properly_penalty_coef=-0.5",
        ]
    ).ppo  # smoke: generate_max_length 64
    rewards = ppo.length_rules(
        torch.tensor([1.0, 1.0, 1.0]), torch.tensor([40.0, 56.0, 64.0]), torch.tensor([False, False, True]), config
    )
    assert rewards.tolist() == pytest.approx([1.0, 1.0 - 8 / 16 * 2.0, -0.5])
    scaled = load(["ppo.reward.stop_properly_penalty_coef=0.25"]).ppo
    assert ppo.length_rules(
        torch.tensor([2.0, 2.0]), torch.tensor([1.0, 1.0]), torch.tensor([True, False]), scaled
    ).tolist() == [0.5, 2.0]


def test_dynamic_filtering_keeps_prompts_with_mixed_outcomes():
    assert ppo.kept_groups([1, 1, 0, 0, 0, 0, 1, 1, 1], 3, 0.0, 1.0) == [0]


# -- the OpenRLHF command line for every value ------------------------------------------------------------
@pytest.fixture(scope="module")
def ppo_parser(openrlhf_wheel):
    from yulan.engines.openrlhf.contract import parser_from_wheel

    return parser_from_wheel(openrlhf_wheel, openrlhf.MODULES["ppo"])


SERVER = ["experiment=ppo_yulan", "ppo.reward.server_url=http://rm:5000", "ppo.placement.reward_gpus=0"]


@pytest.mark.parametrize(
    "estimator", ["gae", "reinforce", "rloo", "reinforce_baseline", "group_norm", "dr_grpo", "flash_reinforce"]
)
def test_every_estimator_reaches_openrlhf(ppo_parser, estimator):
    experiment = load([*SERVER, f"ppo.estimator={estimator}"])
    args = vars(check(ppo_parser, openrlhf.command(experiment, "ppo", "runs/x")[3:]))
    assert args["algo.advantage.estimator"] == estimator
    if estimator == "gae":
        assert args["critic.model_name_or_path"] and args["critic.freezing_steps"] == 14
    else:  # no critic: OpenRLHF gets no critic model, GPUs or freezing
        assert args["critic.model_name_or_path"] is None and args["critic.freezing_steps"] == -1


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["ppo.policy_clip_high=0.28"], {"actor.eps_clip_low_high": [0.2, 0.28]}),
        (
            [],
            {
                "actor.eps_clip_low_high": [0.2, 0.2],
                "actor.loss_agg_mode": "token-mean",
                "algo.kl.use_loss": False,
                "algo.kl.estimator": "k1",
                "algo.dynamic_filtering_enable": False,
                "reward.overlong_buffer_len": None,
                "reward.stop_properly_penalty_coef": None,
            },
        ),
        (["ppo.policy_loss_aggregation=seq-mean-token-mean"], {"actor.loss_agg_mode": "seq-mean-token-mean"}),
        (
            ["ppo.kl.use_loss=true", "ppo.kl.adaptive=false", "ppo.kl.estimator=k3"],
            {"algo.kl.use_loss": True, "algo.kl.estimator": "k3", "algo.kl.target": None},
        ),
        (["ppo.kl.estimator=k2"], {"algo.kl.estimator": "k2"}),
        (
            ["ppo.policy_loss=gspo", "ppo.policy_loss_aggregation=seq-mean-token-mean"],
            {"actor.policy_loss_type": "gspo", "actor.loss_agg_mode": "seq-mean-token-mean"},
        ),
        (
            [
                "ppo.reward.verifier.enabled=true",
                "ppo.dynamic_filtering.enabled=true",
                "ppo.dynamic_filtering.range=[0.1,0.9]",
            ],
            {"algo.dynamic_filtering_enable": True, "algo.dynamic_filtering_range": [0.1, 0.9]},
        ),
        (
            ["ppo.reward.overlong_buffer_len=512", "ppo.reward.overlong_penalty_factor=0.5"],
            {"reward.overlong_buffer_len": 512.0, "reward.overlong_penalty_factor": 0.5},
        ),
        (["ppo.reward.stop_properly_penalty_coef=-0.5"], {"reward.stop_properly_penalty_coef": -0.5}),
    ],
)
def test_policy_loss_and_reward_options_reach_openrlhf(ppo_parser, overrides, expected):
    args = vars(check(ppo_parser, openrlhf.command(load([*SERVER, *overrides]), "ppo", "runs/x")[3:]))
    for key, value in expected.items():
        assert (list(args[key]) if isinstance(args[key], (list, tuple)) else args[key]) == value, key


@pytest.mark.parametrize("experiment", ["ppo_yulan", "smoke"])
def test_an_estimator_sweep_plans_on_the_shipped_experiments(tmp_path, experiment):
    import subprocess
    import sys

    overrides = SERVER[1:] if experiment == "ppo_yulan" else []
    result = subprocess.run(
        [
            sys.executable,
            "launch.py",
            "-m",
            f"experiment={experiment}",
            *overrides,
            "ppo.estimator=gae,group_norm,rloo",
            "dry_run=true",
            f"run_root={tmp_path}",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)["runs"]
    assert [[o for o in r["overrides"] if o.startswith("ppo.estimator")] for r in runs] == [
        [f"ppo.estimator={e}"] for e in ("gae", "group_norm", "rloo")
    ]


# -- rules, before anything runs ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        (
            ["ppo.estimator=group_norm", "ppo.samples_per_prompt=1", "ppo.rollout_batch_size=8"],
            "ppo.samples_per_prompt",
            ["estimator=group_norm", "2 or more"],
        ),
        (
            ["ppo.estimator=rloo", "ppo.critic.learning_rate=2e-5"],
            "ppo.critic.learning_rate",
            ["critic", "ppo.estimator=gae"],
        ),
        (["ppo.estimator=group_norm", "ppo.placement.critic_gpus=2"], "ppo.placement.critic_gpus", ["critic"]),
        (["ppo.estimator=group_norm", "ppo.actor.frozen_steps=3"], "ppo.actor.frozen_steps", ["critic"]),
        (
            ["ppo.dynamic_filtering.enabled=true"],
            "ppo.dynamic_filtering.enabled",
            ["verifier", "ppo.reward.verifier.enabled=true"],
        ),
        (["ppo.estimator=group_norm", "ppo.gamma=0.9"], "ppo.gamma", ["γ = 1", "ppo.gamma=1.0"]),
        (["ppo.reward.overlong_buffer_len=100"], "ppo.reward.overlong_buffer_len", ["generate_max_length = 64"]),
        (["ppo.dynamic_filtering.range=[1,0]"], "ppo.dynamic_filtering.range", ["low must be below high"]),
        (["ppo.reward.rm_chat_turn='<{role}>'"], "ppo.reward.rm_chat_turn", ["{content}"]),
    ],
)
def test_inconsistent_rl_settings_are_refused(overrides, field, words):
    with pytest.raises(ConfigError) as caught:
        load(overrides)
    message = str(caught.value)
    assert field in message and all(word in message for word in words), message


# -- a native GRPO run ------------------------------------------------------------------------------------
def test_native_grpo_trains_without_a_critic_and_rewards_verified_answers(tmp_path):
    prompts = [
        {"id": str(i), "prompt": f"What is {i} + {i}?", "answer": str(2 * i), "mean_reward": float(i)} for i in range(8)
    ]
    write_jsonl(tmp_path / "prompts.jsonl", prompts)
    experiment = load(
        [
            "experiment=smoke_grpo",
            f"run_dir={tmp_path}",
            "stages=[ppo]",
            "ppo.actor.init_from=tiny:policy",
            f"ppo.prompts.source={tmp_path}/prompts.jsonl",
            "ppo.prompts.count=8",
            "ppo.save_every_steps=1",
            "ppo.generate_max_length=16",
        ]
    )
    job_dir = tmp_path / "ppo"
    actor0 = models.load_causal_lm(tiny.resolve("tiny:policy", 4096, 1024), torch.float32).state_dict()
    assert run_stage(experiment, "ppo", str(job_dir)) == 0
    assert not (job_dir / "checkpoints" / "step-1" / "critic.pt").exists()
    final = models.load_causal_lm(str(job_dir / "model"), torch.float32).state_dict()
    assert any(not torch.equal(actor0[k], final[k]) for k in actor0)  # no frozen rollouts without a critic
    metrics = [json.loads(line) for line in (job_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["ppo/actor_frozen"] for m in metrics] == [0.0, 0.0]
    assert all(m["ppo/verified"] == 1.0 and "ppo/value_loss" not in m and "ppo/kl_loss" in m for m in metrics)
    assert all(0.0 <= m["ppo/verifier_passed"] <= 1.0 and m["ppo/penalty_truncated"] >= 0 for m in metrics)


def test_native_dynamic_filtering_replaces_prompts_whose_samples_agree(tmp_path):
    # even prompts carry an answer the tiny model never gives (every sample fails: dropped); odd ones have no
    # checker (the range's middle: kept), so a rollout of 4 prompts is filled with replacements
    prompts = [
        {
            "id": str(i),
            "prompt": f"Say something about {i}.",
            "mean_reward": 0.0,
            **({"answer": "987654321"} if i % 2 == 0 else {}),
        }
        for i in range(8)
    ]
    write_jsonl(tmp_path / "prompts.jsonl", prompts)
    experiment = load(
        [
            "experiment=smoke_grpo",
            f"run_dir={tmp_path}",
            "stages=[ppo]",
            "ppo.actor.init_from=tiny:policy",
            f"ppo.prompts.source={tmp_path}/prompts.jsonl",
            "ppo.prompts.count=8",
            "ppo.max_steps=2",
            "ppo.dynamic_filtering.enabled=true",
            "ppo.generate_max_length=8",
            "ppo.save_every_steps=1",
        ]
    )
    job_dir = tmp_path / "ppo"
    assert run_stage(experiment, "ppo", str(job_dir)) == 0
    metrics = [json.loads(line) for line in (job_dir / "metrics.jsonl").read_text().splitlines()]
    for m in metrics:
        assert m["ppo/prompts_drawn"] > 4 and m["ppo/filter_pass_rate"] == 4 / m["ppo/prompts_drawn"]
        assert m["ppo/tokens"] > 0  # a full rollout of 4 kept prompts trained
    state = torch.load(job_dir / "checkpoints" / "step-1" / "state.pt", weights_only=False)
    assert state["extra"]["prompts_consumed"] == metrics[0]["ppo/prompts_drawn"]  # a resumed job draws on from here
