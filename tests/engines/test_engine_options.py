"""Engine options the native engine carries: full determinism (torch's deterministic kernels), two runs equal."""

import json

import pytest

torch = pytest.importorskip("torch")

from yulan.compose import load  # noqa: E402
from yulan.engines.native import sft  # noqa: E402
from yulan.runtime import models  # noqa: E402


def test_full_determinism_switches_torch_to_deterministic_kernels_and_back():
    models.seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    models.seed_everything(0)
    assert not torch.are_deterministic_algorithms_enabled()


def test_a_deterministic_native_sft_run_repeats_exactly(tmp_path):
    samples = [json.loads(line) for line in open("yulan/data/sft_samples.jsonl")][:8]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    weights = []
    for run in ("a", "b"):
        experiment = load(
            [
                "experiment=smoke",
                f"run_dir={tmp_path / run}",
                "tracking.mode=disabled",
                "stages=[sft]",
                "sft.init_from=tiny:policy",
                f"sft.data={tmp_path / 'data.jsonl'}",
                "sft.global_batch_size=4",
                "sft.max_steps=2",
                "sft.engine_options.full_determinism=true",
            ]
        )
        assert sft.train(experiment, str(tmp_path / run / "sft")) == 0
        assert torch.are_deterministic_algorithms_enabled()
        weights.append(models.load_causal_lm(str(tmp_path / run / "sft" / "model"), torch.float32).state_dict())
    models.seed_everything(0)  # leave the process as other tests expect it
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
