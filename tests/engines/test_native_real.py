"""The native engine on what users bring: bf16 on CPU, a Qwen2 checkpoint in the real Hugging Face layout (tied
embeddings, a tokenizer without a pad token, ChatML whose end of turn is not the eos token), PPO in OpenRLHF's
conventions, memory that follows the micro-batch, and the inputs it must refuse."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests.conftest import REPO, run, write_jsonl  # noqa: E402
from yulan.cli.job import run_stage  # noqa: E402
from yulan.compose import load  # noqa: E402
from yulan.engines.native import dpo, loop, ppo, sft  # noqa: E402
from yulan.runtime import batches, models, tiny  # noqa: E402
from yulan.runtime.generation import TransformersGenerator, sampling_for  # noqa: E402
from yulan.schema.errors import ConfigError  # noqa: E402
from yulan.schema.models import ModelSpec  # noqa: E402
from yulan.schema.ppo import KLController  # noqa: E402

CHATML = tiny.CHAT_TEMPLATE


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory) -> Path:
    """A Qwen2 checkpoint saved from a config: tied embeddings, a BPE tokenizer whose eos is <|endoftext|>, no pad
    token, and a ChatML template whose turns end with <|im_end|>."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as bpe_models
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    directory = tmp_path_factory.mktemp("qwen2")
    texts = [m["content"] for line in open(REPO / "yulan/data/sft_samples.jsonl") for m in json.loads(line)["messages"]]
    bpe = Tokenizer(bpe_models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=1024,
            special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", chat_template=CHATML)
    assert tokenizer.pad_token is None
    config = Qwen2Config(
        vocab_size=1024,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def qwen_model(qwen_dir) -> list[str]:
    return [
        f"model.name_or_path={qwen_dir}",
        "model.tokenizer=test/qwen2-bpe",
        "model.vocab_size=1024",
        "model.context_length=1024",
        "model.num_parameters=130000",
    ]


def pairs(n=8):
    return [
        {
            "prompt": [{"role": "user", "content": f"What is {i} + {i}?"}],
            "chosen": [{"role": "assistant", "content": f"The answer is {2 * i}."}],
            "rejected": [{"role": "assistant", "content": "I hope this helps!"}],
        }
        for i in range(n)
    ]


def smoke(tmp_path, *overrides):
    return load(["experiment=smoke", f"run_dir={tmp_path}", "tracking.mode=disabled", *overrides])


# -- precision ----------------------------------------------------------------------------------------------
def test_bf16_on_cpu_computes_in_bf16_and_keeps_small_updates(tmp_path):
    """A DPO step at the report's lr 5e-7: bf16 compute with fp32 master weights changes the weights as an fp32
    step does; the same update applied to bf16 weights would round away."""
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs())
    start = models.load_causal_lm(tiny.resolve("tiny:policy", 4096, 1024), torch.float32).state_dict()
    final = {}
    for dtype in ("fp32", "bf16"):
        experiment = smoke(
            tmp_path / dtype,
            "stages=[dpo]",
            "dpo.init_from=tiny:policy",
            f"dpo.data={data}",
            f"dpo.param_dtype={dtype}",
            "dpo.learning_rate=5e-7",
            "dpo.warmup_ratio=0",
            "dpo.lr_scheduler=constant",
            "dpo.max_steps=1",
        )
        assert dpo.train(experiment, str(tmp_path / dtype / "dpo")) == 0
        final[dtype] = models.load_causal_lm(str(tmp_path / dtype / "dpo" / "model"), torch.float32).state_dict()
    weights = [k for k in start if start[k].dim() == 2]
    changed = {
        d: sum((final[d][k] != start[k]).sum().item() for k in weights) / sum(start[k].numel() for k in weights)
        for d in final
    }
    assert changed["fp32"] > 0.95 and changed["bf16"] > 0.95
    update = {d: torch.cat([(final[d][k] - start[k]).flatten() for k in weights]) for d in final}
    agree = (update["fp32"].sign() == update["bf16"].sign()).float().mean().item()
    assert agree > 0.9
    naive = sum(
        (start[k].bfloat16() + (final["bf16"][k] - start[k]).bfloat16() != start[k].bfloat16()).sum().item()
        for k in weights
    ) / sum(start[k].numel() for k in weights)
    assert naive < 0.1  # what a bf16 weight would have kept of the same update

    model = models.load_causal_lm(tiny.resolve("tiny:policy", 4096, 1024), torch.float32)
    trained = loop.Trained(model, 1e-3, "bf16", 1.0, "constant", 1, 0.0, 0.0)
    flat = batches.layout([[batches.Tokenized([5, 6, 7, 8], [5, 6, 7, 8])]])
    with trained.autocast():
        hidden = batches.hidden_states(model, flat)
        logits = model.get_output_embeddings()(hidden)
    assert logits.dtype == torch.bfloat16 and next(model.parameters()).dtype == torch.float32


def test_fp16_scales_the_loss():
    model = models.load_causal_lm(tiny.resolve("tiny:policy", 4096, 1024), torch.float32)
    trained = loop.Trained(model, 1e-3, "fp16", 1.0, "constant", 1, 0.0, 0.0)
    assert trained.scaler.is_enabled() and trained.scaler.get_scale() > 1


def test_schedules_are_transformers_schedules():
    import transformers

    for kind in ("constant", "constant_with_warmup", "linear", "cosine_with_min_lr"):
        ours = loop.Trained(torch.nn.Linear(2, 2), 1.0, "fp32", 1.0, kind, 20, 0.1, 0.1)
        optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=1.0)
        theirs = transformers.get_scheduler(
            kind,
            optimizer,
            num_warmup_steps=2,
            num_training_steps=20,
            scheduler_specific_kwargs={"min_lr_rate": 0.1} if kind == "cosine_with_min_lr" else None,
        )
        got, want = [], []
        for _ in range(20):
            got.append(ours.scheduler.get_last_lr()[0])
            want.append(theirs.get_last_lr()[0])
            ours.optimizer.step(), ours.scheduler.step(), optimizer.step(), theirs.step()
        assert got == pytest.approx(want)
    constant = loop.Trained(torch.nn.Linear(2, 2), 1.0, "fp32", 1.0, "constant", 20, 0.5, 0.1)
    assert constant.scheduler.get_last_lr()[0] == 1.0  # 'constant' never warms up, as in transformers


# -- SFT: max_steps, throughput, the token cache, gradient checkpointing ----------------------------------------
def test_sft_max_steps_logs_time_and_throughput_and_caches_tokens(tmp_path):
    samples = [json.loads(line) for line in open(REPO / "yulan/data/sft_samples.jsonl")][:24]
    data = write_jsonl(tmp_path / "data.jsonl", samples)
    settings = [
        "stages=[sft]",
        "sft.init_from=tiny:policy",
        f"sft.data={data}",
        "sft.global_batch_size=4",
        "sft.max_steps=3",
        "sft.lr_scheduler=constant",
        "sft.warmup_ratio=0.3",
        "sft.gradient_checkpointing=true",
    ]
    experiment = smoke(tmp_path / "a", *settings)
    assert experiment.derived["sft"]["total_optimizer_steps"] == 3
    assert sft.train(experiment, str(tmp_path / "a" / "sft")) == 0
    metrics = [json.loads(line) for line in (tmp_path / "a" / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert all(m["sft/lr"] == 1e-3 for m in metrics)  # constant: no warmup
    assert all(m["sft/step_time_s"] > 0 and m["sft/tokens_per_s"] > 0 and m["sft/tokens"] > 0 for m in metrics)
    caches = list((tmp_path / "a" / "sft" / "tokens").iterdir())
    assert len(caches) == 1 and json.loads((caches[0] / "meta.json").read_text())["entries"] == 24
    built = (caches[0] / "ids.bin").stat().st_mtime_ns
    (tmp_path / "a" / "sft" / "model").rename(tmp_path / "a" / "first")
    assert sft.train(experiment, str(tmp_path / "a" / "sft")) == 0
    assert (caches[0] / "ids.bin").stat().st_mtime_ns == built  # read again, not rebuilt


def checkpointed(model) -> bool:
    return any(getattr(module, "gradient_checkpointing", False) for module in model.modules())


def test_every_trainer_honours_gradient_checkpointing():
    path = tiny.resolve("tiny:policy", 4096, 1024)
    assert checkpointed(loop.load_trained(path, "sdpa", True))
    assert not checkpointed(loop.load_trained(path, "sdpa", False))
    assert checkpointed(loop.load_trained(path, "sdpa", True, scorer=True, pad_token_id=3))


def test_a_bad_record_names_the_file_and_record(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text(
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
        + "\n"
        + json.dumps({"text": "no messages"})
        + "\n"
    )
    experiment = smoke(
        tmp_path,
        "stages=[sft]",
        "sft.init_from=tiny:policy",
        f"sft.data={data}",
        "sft.global_batch_size=2",
        "sft.micro_batch_size=1",
    )
    with pytest.raises(ValueError, match=rf"{data}: record 2: cannot be tokenised \(KeyError"):
        sft.train(experiment, str(tmp_path / "sft"))
    assert not list((tmp_path / "sft" / "tokens").glob("*/meta.json"))  # nothing half-built is left to be trusted


# -- PPO in OpenRLHF's conventions --------------------------------------------------------------------------
def test_kl_on_target_leaves_beta_alone():
    """400-token responses with a per-token KL of exactly the target: 312 rollouts later β has not moved."""
    logps = torch.zeros(512, 400)
    ref = logps - 0.06
    mask = torch.ones(512, 400)
    kl = logps - ref  # k1, the estimator of KL in the reward
    assert ppo.mean_kl(kl, mask) == pytest.approx(0.06)
    controller = ppo.AdaptiveKL(KLController(init_coef=0.01, target=0.06))
    for _ in range(312):
        controller.update(ppo.mean_kl(kl, mask), 512)
    assert controller.value == pytest.approx(0.01)
    ragged = mask.clone()
    ragged[:, 200:] = 0  # a sequence's mean is over its own tokens only
    assert ppo.mean_kl(kl, ragged) == pytest.approx(0.06)


def test_pad_equal_to_eos_keeps_the_eos_action(qwen_dir):
    tokenizer = models.load_tokenizer(str(qwen_dir))
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    model = models.load_causal_lm(str(qwen_dir), torch.float32)
    model.generation_config.sequence_bias = [[[tokenizer.eos_token_id], 100.0]]  # an immediate end of turn
    sampling = sampling_for(tokenizer, model.generation_config, 8, 1.0, n=2)
    out = TransformersGenerator(model, tokenizer, batch_size=2).generate([[5, 6, 7]], sampling)
    assert [c.token_ids for c in out] == [[tokenizer.eos_token_id]] * 2
    assert [c.finish_reason for c in out] == ["stop", "stop"]


def test_a_chatml_model_stops_at_im_end(qwen_dir):
    tokenizer = models.load_tokenizer(str(qwen_dir))
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end != tokenizer.eos_token_id
    assert im_end in models.stop_token_ids(tokenizer, None)
    model = models.load_causal_lm(str(qwen_dir), torch.float32)
    model.generation_config.sequence_bias = [[[im_end], 100.0]]
    sampling = sampling_for(tokenizer, None, 8, 1.0)
    out = TransformersGenerator(model, tokenizer).generate([[5, 6, 7], [8]], sampling)
    assert [c.token_ids for c in out] == [[im_end], [im_end]]


def test_ppo_with_a_frozen_actor_leaves_beta_alone_and_keeps_eos(tmp_path):
    prompts = [
        {"id": str(i), "prompt": f"Tell me a fact about the number {i}.", "mean_reward": float(i)} for i in range(8)
    ]
    source = write_jsonl(tmp_path / "prompts.jsonl", prompts)
    experiment = smoke(
        tmp_path,
        "stages=[ppo]",
        "ppo.actor.init_from=tiny:policy",
        f"ppo.prompts.source={source}",
        "ppo.prompts.count=8",
        "ppo.actor.frozen_steps=2",
        "ppo.max_steps=3",
        "ppo.generate_max_length=8",
        "ppo.kl.horizon=10",
    )
    assert experiment.ppo.total_rollouts == 3
    assert run_stage(experiment, "ppo", str(tmp_path / "ppo")) == 0
    metrics = [json.loads(line) for line in (tmp_path / "ppo" / "metrics.jsonl").read_text().splitlines()]
    assert [m["ppo/actor_frozen"] for m in metrics] == [1.0, 1.0, 0.0]
    assert [m["ppo/kl_coef"] for m in metrics[:2]] == [0.01, 0.01]  # frozen: no KL to steer by
    assert abs(metrics[0]["ppo/kl"]) < 1e-6  # the reference is computed exactly as the actor
    assert metrics[2]["ppo/kl_coef"] != 0.01
    assert all(0 <= m["health/truncation_rate"] <= 1 and m["ppo/step_time_s"] > 0 for m in metrics)


SCORE_MEMORY = textwrap.dedent("""
    import resource, sys, torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification
    from yulan.engines.native import ppo
    from yulan.runtime.batches import IGNORE, Tokenized
    from contextlib import nullcontext
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=0, num_labels=1)
    actor, reference = LlamaForCausalLM(config).eval(), LlamaForCausalLM(config).eval()
    critic = LlamaForSequenceClassification(config).eval()
    count = int(sys.argv[1])
    sequences = [Tokenized(list(range(1, 257)), [IGNORE] * 56 + list(range(57, 257))) for _ in range(count)]
    ppo.score_sequences(sequences[:1], actor, reference, critic, 4, nullcontext)  # warm up kernels and allocator
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ppo.score_sequences(sequences, actor, reference, critic, 4, nullcontext)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
""")


@pytest.mark.slow
def test_rollout_scoring_memory_follows_the_micro_batch():
    """4x and 16x the micro-batch of 4: the scoring passes' peak memory does not grow with the rollout."""
    peaks = {}
    for count in (4, 16):
        done = subprocess.run(
            [sys.executable, "-c", SCORE_MEMORY, str(count)], cwd=REPO, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        peaks[count] = int(done.stdout.split()[-1])  # MiB above the warm-up
    assert peaks[16] <= peaks[4] * 1.25 + 40, (
        peaks
    )  # a whole-rollout forward would hold 16 x 256 x 32000 logits (500 MiB)


# -- a real checkpoint through SFT -> DPO -> PPO ----------------------------------------------------------------
@pytest.mark.slow
def test_a_qwen2_checkpoint_runs_sft_dpo_ppo_in_bf16(qwen_dir, tmp_path):
    sft_data = write_jsonl(
        tmp_path / "sft.jsonl", [json.loads(line) for line in open(REPO / "yulan/data/sft_samples.jsonl")][:8]
    )
    pair_data = write_jsonl(tmp_path / "pairs.jsonl", pairs(4))
    prompt_data = write_jsonl(
        tmp_path / "prompts.jsonl", [{"id": str(i), "prompt": f"Name a colour, {i}."} for i in range(4)]
    )
    result = run(
        "launch.py",
        "experiment=smoke",
        "stages=[sft,dpo,ppo]",
        *qwen_model(qwen_dir),
        f"run_root={tmp_path}/runs",
        "tracking.mode=disabled",
        f"sft.data={sft_data}",
        f"dpo.data={pair_data}",
        f"ppo.prompts.source={prompt_data}",
        "ppo.prompts.count=4",
        "ppo.rollout_batch_size=2",
        "ppo.train_batch_size=4",
        "ppo.generate_max_length=8",
        "ppo.actor.frozen_steps=1",
        "ppo.critic.init_from=policy",
        "sft.max_steps=2",
        "dpo.max_steps=2",
        "sft.param_dtype=bf16",
        "dpo.param_dtype=bf16",
        "ppo.param_dtype=bf16",
        "sft.gradient_checkpointing=true",
        "dpo.gradient_checkpointing=true",
        "ppo.gradient_checkpointing=true",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "smoke"
    for stage, steps in (("sft", 2), ("dpo", 2), ("ppo", 2)):
        lines = (run_dir / stage / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == steps and (run_dir / stage / "model" / "config.json").exists()
    saved = json.loads((run_dir / "ppo" / "model" / "config.json").read_text())
    assert saved["model_type"] == "qwen2" and saved["tie_word_embeddings"] is True
    dpo_first = json.loads((run_dir / "dpo" / "metrics.jsonl").read_text().splitlines()[0])
    assert dpo_first["dpo/loss"] == pytest.approx(0.6931, abs=1e-3)  # the reference computes as the policy


# -- refused before anything runs ---------------------------------------------------------------------------
def test_a_checkpoint_that_is_not_the_described_model_is_refused_before_anything_is_written(qwen_dir, tmp_path):
    model = [*qwen_model(qwen_dir)[:2], "model.vocab_size=2048", *qwen_model(qwen_dir)[3:]]
    result = run(
        "launch.py",
        "experiment=smoke",
        "stages=[sft]",
        *model,
        f"run_root={tmp_path}",
        f"sft.init_from={qwen_dir}",
        "sft.data=yulan/data/sft_samples.jsonl",
    )
    assert result.returncode != 0
    assert "model.vocab_size = 2048" in result.stderr and "has vocab_size 1024" in result.stderr
    assert "set model.vocab_size=1024" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "smoke").exists()
    with pytest.raises(ConfigError, match=r"(?s)model.vocab_size = 2048.*model.context_length = 4096"):
        spec = ModelSpec(
            name_or_path=str(qwen_dir), tokenizer="t", vocab_size=2048, context_length=4096, num_parameters=1
        )
        models.check_checkpoint(str(qwen_dir), spec, "model")  # at job start, for checkpoints made by earlier stages


def test_flash_attention_without_a_gpu_or_the_package_is_refused(tmp_path):
    result = run(
        "launch.py",
        "experiment=smoke",
        "stages=[sft]",
        "sft.attention=flash_attention_2",
        f"run_root={tmp_path}",
        "sft.data=yulan/data/sft_samples.jsonl",
    )
    assert result.returncode != 0 and "sft.attention" in result.stderr and "set attention=sdpa" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "smoke").exists()
    from yulan.engines.native.checks import prerun_problems

    if __import__("importlib").util.find_spec("flash_attn") is None:
        gpu = load(
            [
                "experiment=smoke",
                "stages=[ppo]",
                "ppo.actor.init_from=tiny:policy",
                "ppo.prompts.source=p.jsonl",
                "cluster.gpus_per_node=1",
                "ppo.attention=flash_attention_2",
                "ppo.resources.gpus_per_node=1",
            ]
        )
        problems = prerun_problems(gpu, "ppo", here=True)
        assert [p.path for p in problems] == ["ppo.attention"] and "flash-attn" in problems[0].rule
        assert prerun_problems(gpu, "ppo", here=False) == []  # a login node without flash-attn may still submit


@pytest.mark.parametrize("override", ["sft.max_steps=0", "ppo.max_steps=0", "dpo.max_steps=-1"])
def test_max_steps_below_one_is_refused(override, tmp_path):
    result = run("launch.py", "experiment=smoke", override, f"run_root={tmp_path}")
    assert result.returncode != 0 and override.split("=")[0] in result.stderr and "Traceback" not in result.stderr


def test_max_steps_is_refused_for_openrlhf():
    result = run("launch.py", "experiment=sft_yulan", "sft.max_steps=10", "dry_run=true")
    assert result.returncode != 0 and "sft.max_steps" in result.stderr and "engine=native" in result.stderr


def test_a_base_model_without_a_chat_template_needs_model_chat_template(qwen_dir, tmp_path):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(qwen_dir, base)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    (base / "chat_template.jinja").unlink(missing_ok=True)
    data = write_jsonl(
        tmp_path / "sft.jsonl", [json.loads(line) for line in open(REPO / "yulan/data/sft_samples.jsonl")][:4]
    )
    settings = [
        "stages=[sft]",
        *qwen_model(base),
        f"sft.data={data}",
        "sft.global_batch_size=2",
        "sft.micro_batch_size=1",
        "sft.max_steps=1",
    ]
    with pytest.raises(ConfigError, match="model.chat_template"):
        sft.train(smoke(tmp_path / "a", *settings), str(tmp_path / "a" / "sft"))
    experiment = smoke(tmp_path / "b", *settings)
    experiment = experiment.model_copy(update={"model": experiment.model.model_copy(update={"chat_template": CHATML})})
    assert sft.train(experiment, str(tmp_path / "b" / "sft")) == 0
    saved = models.load_tokenizer(str(tmp_path / "b" / "sft" / "model"))
    assert saved.chat_template == CHATML  # later stages read the template the model was trained with
