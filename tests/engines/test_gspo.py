"""GSPO as OpenRLHF 0.11.2's PolicyLoss computes it (policy_loss_type=gspo), on hand-computed values: one ratio per
sample, exp of its mean token log-ratio, clipped, every token carrying it, averaged per sample."""

import math

import pytest

from yulan.compose import ConfigError, load

torch = pytest.importorskip("torch")
from yulan.engines.native.losses import Totals, policy_loss  # noqa: E402

MASK = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # sample A: two tokens; sample B: one
OLD = torch.zeros(2, 2)
ADVANTAGES = torch.tensor([[1.0, 1.0], [2.0, 2.0]])


def gspo(logps, old=OLD):
    return policy_loss(logps, old, ADVANTAGES, MASK, (0.2, 0.2), "seq-mean-token-mean", Totals(3, 2), None, "gspo")


def test_one_clipped_ratio_per_sample_averaged_over_samples():
    logps = torch.tensor([[0.2, -0.1], [0.5, 7.0]], requires_grad=True)  # B's second token is padding
    loss, clip_share = gspo(logps)
    # A: ratio e^0.05 inside the clip, each token -1.051271; B: e^0.5 = 1.6487 clipped to 1.2, -2.4
    assert loss.item() == pytest.approx((-math.exp(0.05) - 2.4) / 2, abs=1e-6)
    assert loss.item() == pytest.approx(-1.7256355, abs=1e-6)
    assert clip_share.item() == pytest.approx(1 / 3)  # B's token, of three
    loss.backward()
    # A's loss is -ratio/2 and d ratio / d logp_t = ratio / 2: each token's gradient -e^0.05 / 4; B is clipped
    assert logps.grad.flatten().tolist() == pytest.approx([-math.exp(0.05) / 4] * 2 + [0.0, 0.0], abs=1e-6)


def test_a_ppo_ratio_would_differ_token_by_token():
    logps = torch.tensor([[0.2, -0.1], [0.5, 7.0]])
    ppo, _ = policy_loss(logps, OLD, ADVANTAGES, MASK, (0.2, 0.2), "seq-mean-token-mean", Totals(3, 2))
    assert ppo.item() == pytest.approx((-(1.2 + math.exp(-0.1)) / 2 - 2.4) / 2, abs=1e-6)  # e^0.2 clipped to 1.2
    assert gspo(logps)[0].item() != pytest.approx(ppo.item(), abs=1e-4)


def test_gspo_is_refused_with_a_token_mean_and_carried_to_openrlhf():
    with pytest.raises(ConfigError, match="GSPO's ratio is one per sample"):
        load(["experiment=ppo_yulan", "ppo.policy_loss=gspo"])
    experiment = load(
        ["experiment=grpo_yulan", "ppo.policy_loss=gspo", "ppo.policy_loss_aggregation=seq-mean-token-mean"]
    )
    from yulan.engines.openrlhf.command import command as openrlhf_command

    command = openrlhf_command(experiment, "ppo", "/job")
    assert command[command.index("--actor.policy_loss_type") + 1] == "gspo"
    assert command[command.index("--actor.loss_agg_mode") + 1] == "seq-mean-token-mean"


def test_native_grpo_trains_with_gspo(tmp_path):
    import json

    from tests.conftest import write_jsonl
    from yulan.cli.job import run_stage
    from yulan.runtime import models, tiny

    prompts = [
        {"id": str(i), "prompt": f"What is {i} + {i}?", "answer": str(2 * i), "mean_reward": 0.0} for i in range(4)
    ]
    write_jsonl(tmp_path / "prompts.jsonl", prompts)
    experiment = load(
        [
            "experiment=smoke_grpo",
            f"run_dir={tmp_path}",
            "tracking.mode=disabled",
            "stages=[ppo]",
            "ppo.actor.init_from=tiny:policy",
            f"ppo.prompts.source={tmp_path}/prompts.jsonl",
            "ppo.prompts.count=4",
            "ppo.max_steps=1",
            "ppo.generate_max_length=8",
            "ppo.policy_loss=gspo",
            "ppo.policy_loss_aggregation=seq-mean-token-mean",
        ]
    )
    start = models.load_causal_lm(tiny.resolve("tiny:policy", 4096, 1024), torch.float32).state_dict()
    assert run_stage(experiment, "ppo", str(tmp_path / "ppo")) == 0
    final = models.load_causal_lm(str(tmp_path / "ppo" / "model"), torch.float32).state_dict()
    assert any(not torch.equal(start[k], final[k]) for k in start)
    (metrics,) = [json.loads(line) for line in (tmp_path / "ppo" / "metrics.jsonl").read_text().splitlines()]
    assert math.isfinite(metrics["ppo/policy_loss"]) and 0.0 <= metrics["ppo/clip_fraction"] <= 1.0
