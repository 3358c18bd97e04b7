"""The native engine's promises, on the real tiny model family built locally."""

import json
import shutil
import typing

import pytest

torch = pytest.importorskip("torch")

from yulan.cli.job import run_stage  # noqa: E402
from yulan.compose import load  # noqa: E402
from yulan.engines.native import dpo, estimators, ppo, sft  # noqa: E402
from yulan.runtime import batches, models, tiny  # noqa: E402
from yulan.schema.ppo import KLController  # noqa: E402
from yulan.schema.training import DPOConfig, PreferenceLoss  # noqa: E402


@pytest.fixture(scope="module")
def tiny_path() -> str:
    return tiny.resolve("tiny:policy", 4096, 1024)


@pytest.fixture(scope="module")
def tokenizer(tiny_path):
    return models.load_tokenizer(tiny_path)


CHAT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is 2 + 3?"},
    {"role": "assistant", "content": "2 + 3 = 5. The answer is 5."},
    {"role": "user", "content": "And 4 + 4?"},
    {"role": "assistant", "content": "The answer is 8."},
]


def test_tiny_models_are_deterministic_and_cached(tiny_path):
    again = tiny.resolve("tiny:policy", 4096, 1024)
    assert again == tiny_path
    first = models.load_causal_lm(tiny_path, torch.float32).state_dict()
    shutil.rmtree(tiny_path)  # rebuilt from its seed: the same weights
    rebuilt = models.load_causal_lm(tiny.resolve("tiny:policy", 4096, 1024), torch.float32).state_dict()
    assert all(torch.equal(first[k], rebuilt[k]) for k in first)
    reward = models.load_scorer(tiny.resolve("tiny:reward", 4096, 1024), torch.float32, 3)
    assert reward.config.num_labels == 1


def test_loss_only_on_assistant_tokens(tokenizer):
    sample = batches.tokenize_chat(tokenizer, CHAT, 512)
    trained = tokenizer.decode([t for t, label in zip(sample.input_ids, sample.labels) if label != batches.IGNORE])
    assert "The answer is 5." in trained and "The answer is 8." in trained
    assert "What is 2 + 3?" not in trained and "helpful assistant" not in trained and "And 4 + 4?" not in trained
    everything = batches.tokenize_chat(tokenizer, CHAT, 512, loss_on="all")
    assert all(label != batches.IGNORE for label in everything.labels)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packing_does_not_change_a_samples_loss(tiny_path, tokenizer, attention):
    """Position-id packing: no 4-D mask is built by us; the samples of one row do not see each other."""
    model = models.load_causal_lm(tiny_path, torch.float32, attention).eval()
    a = batches.tokenize_chat(tokenizer, CHAT[:3], 512)
    b = batches.tokenize_chat(
        tokenizer,
        [{"role": "user", "content": "什么是黑洞？"}, {"role": "assistant", "content": "黑洞是引力极强的天体。"}],
        512,
    )
    with torch.no_grad():
        alone = [batches.token_logprobs(model, batches.layout([[s]])).sum().item() for s in (a, b)]
        packed_row = batches.layout([[a, b]], model)
        packed = [row.sum().item() for row in packed_row.per_sample(batches.token_logprobs(model, packed_row))]
        padded_rows = batches.layout([[b], [a]], model)  # one sample per row, the shorter one padded
        padded = [row.sum().item() for row in padded_rows.per_sample(batches.token_logprobs(model, padded_rows))]
    assert len(batches.pack([a, b], 512)) == 1
    assert packed_row.position_ids[0, len(a.input_ids)].item() == 0  # positions restart at the second sample
    assert packed == pytest.approx(alone, abs=1e-4)
    assert padded == pytest.approx(alone[::-1], abs=1e-4)


def test_flash_attention_gets_one_row_and_others_keep_their_rows(tiny_path, tokenizer):
    model = models.load_causal_lm(tiny_path, torch.float32)
    samples = [batches.Tokenized([1, 2, 3], [1, 2, 3]), batches.Tokenized([4, 5], [4, 5])]
    assert batches.layout(batches.one_per_row(samples)).input_ids.shape == (2, 3)  # as given
    ragged = [batches.Tokenized(list(range(900)), list(range(900))), batches.Tokenized([4] * 100, [4] * 100)]
    assert batches.layout(batches.one_per_row(ragged), model).input_ids.shape == (1, 1000)  # padding would cost more
    even = [batches.Tokenized(list(range(512)), list(range(512)))] * 8
    assert batches.layout(batches.one_per_row(even), model).input_ids.shape == (8, 512)  # one row: 8x the attention
    model.config._attn_implementation = "flash_attention_2"
    flat = batches.layout(batches.one_per_row(samples), model)
    assert flat.input_ids.tolist() == [[1, 2, 3, 4, 5]] and flat.position_ids.tolist() == [[0, 1, 2, 0, 1]]
    assert flat.labels.tolist() == [[2, 3, -100, 5, -100]]


def smoke(tmp_path, *overrides):
    return load(["experiment=smoke", f"run_dir={tmp_path}", "tracking.mode=disabled", *overrides])


def write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def test_dpo_loss_falls_and_margin_grows(tmp_path):
    pairs = [
        {
            "prompt": [{"role": "user", "content": f"What is {i} + {i}?"}],
            "chosen": [{"role": "assistant", "content": f"The answer is {2 * i}."}],
            "rejected": [{"role": "assistant", "content": "I hope this helps!"}],
        }
        for i in range(8)
    ]
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    experiment = smoke(
        tmp_path,
        "stages=[dpo]",
        "dpo.init_from=tiny:policy",
        f"dpo.data={tmp_path}/pairs.jsonl",
        "dpo.epochs=6",
        "dpo.global_batch_size=8",
        "dpo.learning_rate=3e-3",
        "dpo.save_every_steps=100",
    )
    assert dpo.train(experiment, str(tmp_path / "dpo")) == 0
    metrics = [json.loads(line) for line in (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["dpo/loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at the start
    assert metrics[-1]["dpo/loss"] < 0.5
    assert metrics[0]["dpo/lr"] == 0.0  # transformers' warmup starts at 0 (one warmup step of 6 x 0.1)
    assert metrics[-1]["dpo/reward_margin"] > metrics[2]["dpo/reward_margin"] > 0
    assert (tmp_path / "dpo" / "model" / "config.json").exists()


def test_dpo_loss_matches_the_closed_form():
    pair = (torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]))  # margin 2
    loss, chosen, rejected = dpo.dpo_loss(*pair, DPOConfig(beta=0.1))
    assert loss.item() == pytest.approx(-torch.nn.functional.logsigmoid(torch.tensor(0.1 * 2.0)).item())
    assert loss.item() == pytest.approx(0.598139, abs=1e-6)
    assert chosen.item() == pytest.approx(0.1) and rejected.item() == pytest.approx(-0.1)
    smoothed, _, _ = dpo.dpo_loss(*pair, DPOConfig(beta=0.1, label_smoothing=0.2))
    assert smoothed.item() == pytest.approx(0.8 * 0.598139 + 0.2 * 0.798139, abs=1e-6)  # -log σ(-0.2) = 0.798139
    assert set(dpo.LOSSES) == set(typing.get_args(PreferenceLoss))  # every setting has its loss, and no more


def sft_run(tmp_path, data, *overrides):
    return smoke(
        tmp_path,
        "stages=[sft]",
        "sft.init_from=tiny:policy",
        f"sft.data={data}",
        "sft.global_batch_size=4",
        "sft.save_every_steps=2",
        *overrides,
    )


def test_sft_killed_and_resumed_matches_an_uninterrupted_run(tmp_path):
    samples = [json.loads(line) for line in open("yulan/data/sft_samples.jsonl")][:24]
    write_jsonl(tmp_path / "data.jsonl", samples)
    whole = sft_run(tmp_path / "whole", tmp_path / "data.jsonl")
    assert sft.train(whole, str(tmp_path / "whole" / "sft")) == 0
    # the interrupted run: stop after step 3 (checkpoint at step 2), then resume in the same directory
    resumed_dir = tmp_path / "resumed"
    first_part = sft_run(resumed_dir, tmp_path / "data.jsonl")
    original_step = torch.optim.AdamW.step
    calls = {"n": 0}

    def dying_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("killed")
        return original_step(self, *args, **kwargs)

    torch.optim.AdamW.step = dying_step
    try:
        with pytest.raises(KeyboardInterrupt):
            sft.train(first_part, str(resumed_dir / "sft"))
    finally:
        torch.optim.AdamW.step = original_step
    assert (resumed_dir / "sft" / "checkpoints" / "step-2").exists()
    assert sft.train(first_part, str(resumed_dir / "sft")) == 0
    a = models.load_causal_lm(str(tmp_path / "whole" / "sft" / "model"), torch.float32).state_dict()
    b = models.load_causal_lm(str(resumed_dir / "sft" / "model"), torch.float32).state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    losses = lambda d: [json.loads(l)["sft/loss"] for l in (d / "sft" / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert losses(tmp_path / "whole")[-1] == pytest.approx(losses(resumed_dir)[-1], abs=1e-6)


def test_kl_controller_moves_toward_the_target():
    controller = ppo.AdaptiveKL(KLController(init_coef=0.01, target=0.06, horizon=1000))
    controller.update(kl=0.5, samples=100)  # too far from the reference: penalise more
    assert controller.value > 0.01
    high = controller.value
    controller.update(kl=0.0, samples=100)  # too close: penalise less
    assert controller.value < high
    fixed = ppo.AdaptiveKL(KLController(adaptive=False, init_coef=0.01))
    fixed.update(kl=5.0, samples=100)
    assert fixed.value == 0.01


def test_gae_matches_a_hand_computation():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.2, 0.1]])
    mask = torch.ones(1, 3)
    advantages, returns = estimators.gae(rewards, values, mask, gamma=1.0, lam=0.95)
    d2 = 1.0 - 0.1
    d1 = 0.0 + 0.1 - 0.2
    d0 = 0.0 + 0.2 - 0.5
    expected = [d0 + 0.95 * (d1 + 0.95 * d2), d1 + 0.95 * d2, d2]
    assert advantages[0].tolist() == pytest.approx(expected)
    assert returns[0].tolist() == pytest.approx([a + v for a, v in zip(expected, [0.5, 0.2, 0.1])])


def test_ppo_freezes_the_actor_while_the_critic_learns_and_clips_rewards(tmp_path):
    prompts = [
        {"id": str(i), "prompt": f"Tell me a fact about the number {i}.", "mean_reward": float(i)} for i in range(8)
    ]
    write_jsonl(tmp_path / "prompts.jsonl", prompts)
    experiment = smoke(
        tmp_path,
        "stages=[ppo]",
        "ppo.actor.init_from=tiny:policy",
        f"ppo.prompts.source={tmp_path}/prompts.jsonl",
        "ppo.prompts.count=8",
        "ppo.actor.frozen_steps=1",
        "ppo.save_every_steps=1",
        "ppo.reward.clip_range=[-0.5,0.5]",
        "ppo.reward.fallback_reward=0.0",
        "ppo.generate_max_length=16",
    )
    job_dir = tmp_path / "ppo"
    actor0 = models.load_causal_lm(tiny.resolve("tiny:policy", 4096, 1024), torch.float32).state_dict()
    assert run_stage(experiment, "ppo", str(job_dir)) == 0
    after_1 = torch.load(job_dir / "checkpoints" / "step-1" / "actor.pt")
    critic0 = models.load_scorer(tiny.resolve("tiny:reward", 4096, 1024), torch.float32, 3).state_dict()
    critic_1 = torch.load(job_dir / "checkpoints" / "step-1" / "critic.pt")
    assert all(torch.equal(actor0[k], after_1[k]) for k in actor0)  # frozen: bit-identical
    assert any(not torch.equal(critic0[k], critic_1[k]) for k in critic0)  # the critic learned
    final = models.load_causal_lm(str(job_dir / "model"), torch.float32).state_dict()
    assert any(not torch.equal(actor0[k], final[k]) for k in actor0)  # after the frozen steps the actor moves
    metrics = [json.loads(line) for line in (job_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["ppo/actor_frozen"] for m in metrics] == [1.0, 0.0]
    assert all(-0.5 <= m["ppo/reward"] <= 0.5 for m in metrics)
    selected = [json.loads(line) for line in (job_dir / "data" / "prompts.jsonl").read_text().splitlines()]
    assert [r["id"] for r in selected] == [str(i) for i in range(8)]  # lowest mean reward first
    assert json.loads(selected[0]["label"]) == {
        "messages": [{"role": "user", "content": "Tell me a fact about the number 0."}]
    }
