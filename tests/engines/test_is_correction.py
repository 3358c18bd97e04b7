"""The rollout/trainer mismatch correction, pinned to OpenRLHF 0.11.2's PolicyLoss semantics on hand-computed
values, and its settings refused where OpenRLHF refuses them."""

import math

import pytest

from yulan.schema.errors import ConfigError
from yulan.schema.ppo import ISCorrection

torch = pytest.importorskip("torch")
from yulan.engines.native.losses import is_weights  # noqa: E402

OLD = torch.zeros(1, 2)  # the trainer's log-probabilities
ROLLOUT = torch.tensor([[-math.log(3.0), math.log(3.0)]])  # the sampler's: weights π_train/π_rollout = 3 and 1/3
MASK = torch.ones(1, 2)


def weights(**settings):
    found, share = is_weights(OLD, ROLLOUT, MASK, ISCorrection(**settings))
    return [round(w, 6) for w in found.flatten().tolist()], round(share.item(), 6)


def test_token_mask_drops_tokens_outside_the_band_and_keeps_the_others_weight():
    assert weights(level="token") == ([3.0, 0.0], 0.5)


def test_token_clip_clamps_the_weight_into_the_band():
    assert weights(level="token", mode="clip", threshold=(0.5, 2.0)) == ([2.0, 0.5], 1.0)


def test_seq_level_gates_on_the_geometric_mean_and_keeps_token_weights():
    assert weights(level="seq") == ([3.0, 0.333333], 0.0)  # geometric mean 1: inside [0.5, 5]
    assert weights(level="seq", threshold=(1.5, 5.0)) == ([0.0, 0.0], 1.0)


def test_tv_gating_is_an_upper_bound_on_the_probability_gap():
    # p_rollout = 1/3 and 3 (clamped to 1 - 1e-6), p_train = 1 (clamped): gaps 2/3 and ~0
    assert weights(level="token", gating="tv", threshold=(0.0, 0.5)) == ([0.0, 0.333333], 0.5)


def test_identical_rollouts_weigh_one():
    found, share = is_weights(OLD, OLD, MASK, ISCorrection(level="token"))
    assert found.tolist() == [[1.0, 1.0]] and share.item() == 0.0


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"level": "seq", "mode": "clip"}, "clip needs level=token and gating=ratio"),
        ({"level": "token", "gating": "binary_kl"}, "gating=binary_kl is bounded from above only"),
        ({"threshold": (5.0, 0.5)}, "needs 0 <= low < high"),
    ],
)
def test_settings_openrlhf_refuses_are_refused(settings, message):
    from pydantic import ValidationError

    with pytest.raises((ValidationError, ConfigError), match=message):
        ISCorrection(**settings)
