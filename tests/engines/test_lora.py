"""LoRA on OpenRLHF: its adapters (peft's layout, saved alone in the stage's model directory) are merged into the
base after the stage, so later stages and the evaluation load a full model; the adapters are kept beside it."""

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from yulan.compose import load  # noqa: E402
from yulan.engines.openrlhf.driver import merge_stage_adapters  # noqa: E402
from yulan.runtime import models, tiny  # noqa: E402


def trained_adapters(base: str, directory) -> torch.Tensor:
    """Adapters as OpenRLHF saves them, with non-zero weights (a fresh adapter's B is zero: a no-op), and the logits
    the base with them gives on a fixed input."""
    model = models.load_causal_lm(base, torch.float32)
    adapted = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, weight in adapted.named_parameters():
            if "lora_" in name:
                weight.normal_(std=0.05)
    adapted.save_pretrained(directory)
    models.load_tokenizer(base).save_pretrained(directory)
    with torch.no_grad():
        return adapted(input_ids=torch.tensor([[5, 17, 230, 41, 9]])).logits


def test_a_lora_stage_leaves_a_full_merged_model_and_keeps_its_adapters(tmp_path):
    base = tiny.resolve("tiny:policy", 4096, 1024)
    job_dir = tmp_path / "sft"
    expected = trained_adapters(base, job_dir / "model")
    experiment = load(
        [
            "experiment=sft_yulan",
            f"sft.init_from={base}",
            "sft.lora.rank=8",
            "sft.param_dtype=bf16",
            "model=tiny",
            "sft.max_length=1024",
        ]
    )
    merge_stage_adapters(experiment, "sft", str(job_dir))
    assert (job_dir / "adapter" / "adapter_config.json").exists()
    assert not (job_dir / "model" / "adapter_config.json").exists()
    merged = models.load_causal_lm(str(job_dir / "model"), torch.float32)  # a plain transformers model
    with torch.no_grad():
        found = merged(input_ids=torch.tensor([[5, 17, 230, 41, 9]])).logits
    assert (found - expected).abs().max().item() < 0.05  # merged in bf16, as OpenRLHF's lora_combiner does
    base_logits = models.load_causal_lm(base, torch.float32)(input_ids=torch.tensor([[5, 17, 230, 41, 9]])).logits
    assert (found - base_logits).abs().max().item() > 0.05  # the adapters changed the model
    merge_stage_adapters(experiment, "sft", str(job_dir))  # a resumed job: merged already, nothing to do
    assert (job_dir / "adapter" / "adapter_config.json").exists() and (job_dir / "model" / "config.json").exists()
