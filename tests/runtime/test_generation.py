"""The generation layer on both backends: real vLLM (the CPU build) against transformers on the tiny model — same
tokens in greedy mode, same log-probabilities, stop tokens honoured, per-request seeds, weight pushes into a running
engine, one engine at a time, and what vLLM cannot serve refused before an engine starts."""

import os
from pathlib import Path

import pytest

from yulan.runtime.generation import GenerationError, Sampling, TransformersGenerator, request_seed, sampling_for
from yulan.runtime.vllm_engine import servable_problems
from yulan.schema.generation import VllmEngine

torch = pytest.importorskip("torch")
ENGINE = VllmEngine(enforce_eager=True)  # quicker start; generation equal
SECOND_ENGINE = VllmEngine(enforce_eager=True, max_live_engines=2)  # beside the module's engine, where it is alive
PROMPTS = [[1, 5, 9, 33, 44], [7, 8, 9], [7, 8, 9]]  # a repeated prompt: its samples must still differ


@pytest.fixture(scope="module")
def tiny():
    from yulan.runtime import models, tiny

    path = tiny.model_dir("tiny:policy", 512, 512)
    model = models.load_causal_lm(str(path), torch.float32)
    return model, models.load_tokenizer(str(path))


@pytest.fixture(scope="module")
def engine(tiny, tmp_path_factory):
    """One engine for the module, over a copy of the tiny model (tied embeddings) that tests push weights into."""
    pytest.importorskip("vllm")
    from yulan.runtime.vllm_engine import VllmGenerator

    model, tokenizer = tiny
    generator = VllmGenerator.for_training(model, tokenizer, tmp_path_factory.mktemp("engine"), ENGINE, 0, 512)
    yield generator
    generator.close()


def engine_processes() -> list[str]:
    """Names of this process's children that are vLLM's (EngineCore, its workers)."""
    names = []
    for child in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for pid in child.read_text().split():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            name, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
            if state != "Z":
                names.append(name)
    return [name for name in names if "Engine" in name or "Worker" in name or "VLLM" in name]


def test_request_seeds_differ_per_request_and_repeat():
    assert request_seed(42, 0) == request_seed(42, 0)
    assert len({request_seed(42, i) for i in range(1000)}) == 1000
    assert request_seed(42, 3) != request_seed(43, 3)
    assert request_seed(42, 0) == 901809044142535273  # stable across processes and releases


@pytest.mark.slow
def test_greedy_tokens_and_logprobs_equal_transformers(tiny, engine):
    model, tokenizer = tiny
    sampling = sampling_for(tokenizer, model.generation_config, 24, 0.0, logprobs=True)
    ours = TransformersGenerator(model, tokenizer).generate(PROMPTS, sampling)
    theirs = engine.generate(PROMPTS, sampling)
    assert [c.token_ids for c in theirs] == [c.token_ids for c in ours]
    assert [c.finish_reason for c in theirs] == [c.finish_reason for c in ours]
    assert [c.text for c in theirs] == [c.text for c in ours]
    for a, b in zip(ours, theirs):
        assert b.logprobs == pytest.approx(a.logprobs, abs=1e-4)


@pytest.mark.slow
def test_stop_token_ids_end_a_completion_and_are_kept(tiny, engine):
    """A completion ends at any stop id (the chat template's end of turn among them), the stop token kept."""
    model, tokenizer = tiny
    free = engine.generate(PROMPTS[:1], sampling_for(tokenizer, model.generation_config, 12, 0.0))[0]
    stop = free.token_ids[3]
    stopped = engine.generate(PROMPTS[:1], Sampling(max_new_tokens=12, temperature=0.0, stop_token_ids=(stop,)))[0]
    assert stopped.token_ids == free.token_ids[: free.token_ids.index(stop) + 1]
    assert stopped.finish_reason == "stop" and free.finish_reason == "length"


@pytest.mark.slow
def test_samples_differ_across_requests_and_runs_repeat(tiny, engine):
    model, tokenizer = tiny
    sampling = sampling_for(tokenizer, model.generation_config, 16, 1.0, n=3, seed=7)
    first = [c.token_ids for c in engine.generate(PROMPTS, sampling)]
    assert len(first) == 9 and len({tuple(ids) for ids in first}) == 9  # the repeated prompt included
    assert [c.token_ids for c in engine.generate(PROMPTS, sampling)] == first
    other = sampling_for(tokenizer, model.generation_config, 16, 1.0, n=3, seed=8)
    assert [c.token_ids for c in engine.generate(PROMPTS, other)] != first


@pytest.mark.slow
def test_a_batch_of_seeded_requests_larger_than_one_step_runs_on_the_cpu_build(tiny, engine):
    """64 prompts x 4 seeded samples: more prefill than one step's token budget. Split prefills made the CPU
    engine rewind a seeded generator, which it cannot ("CPU Generator does not use offset"), and die."""
    model, tokenizer = tiny
    prompts = [[1] + [(7 * i + j) % 500 + 4 for j in range(40)] for i in range(64)]
    sampling = sampling_for(tokenizer, model.generation_config, 8, 1.0, n=4, seed=3)
    completions = engine.generate(prompts, sampling)
    assert len(completions) == 256 and all(c.token_ids for c in completions)


@pytest.mark.slow
def test_after_a_weight_push_vllm_logprobs_equal_the_trainers(tiny, engine, tmp_path):
    """Tied embeddings included: the engine's copy has its head untied, and the push writes the head out."""
    model, tokenizer = tiny
    trained = type(model)(model.config)
    trained.load_state_dict(model.state_dict())
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    sampling = sampling_for(tokenizer, None, 16, 1.0, seed=1, logprobs=True)
    before = engine.generate(PROMPTS[:1], sampling)[0]
    engine.push_weights(trained, engine_dir(engine))
    after = engine.generate(PROMPTS[:1], sampling)[0]
    ids = torch.tensor([PROMPTS[0] + after.token_ids])
    with torch.no_grad():
        logits = trained(ids).logits[0, len(PROMPTS[0]) - 1 : -1].float().log_softmax(-1)
    expected = logits.gather(-1, torch.tensor(after.token_ids)[:, None]).squeeze(-1).tolist()
    assert after.logprobs == pytest.approx(expected, abs=1e-4)
    assert after.token_ids != before.token_ids or after.logprobs != pytest.approx(before.logprobs, abs=1e-3)
    engine.push_weights(model, engine_dir(engine))  # the module's engine back to the tiny model


def engine_dir(engine) -> Path:
    return Path(engine.path)


@pytest.mark.slow
def test_a_second_engine_is_refused_while_one_is_alive(tiny, engine):
    from yulan.runtime.vllm_engine import VllmGenerator

    with pytest.raises(GenerationError, match="generation.vllm.max_live_engines = 1"):
        VllmGenerator(engine.path, tiny[1], ENGINE, 0, 512)


@pytest.mark.slow
def test_a_closed_engine_leaves_no_process(tiny, tmp_path):
    pytest.importorskip("vllm")
    from yulan.runtime.vllm_engine import VllmGenerator

    model, tokenizer = tiny
    before = engine_processes()  # the module's engine, where this worker started it
    generator = VllmGenerator.for_training(model, tokenizer, tmp_path, SECOND_ENGINE, 0, 512)
    assert len(engine_processes()) > len(before)
    generator.close()
    assert engine_processes() == before


def test_head_dim_16_is_refused_on_cpu_naming_the_fix(tmp_path):
    (tmp_path / "config.json").write_text(
        '{"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,'
        ' "max_position_embeddings": 512}'
    )
    [problem] = servable_problems(str(tmp_path), ENGINE, 512, cpu=True)
    assert "head_dim = 16" in problem and "generation.backend=transformers" in problem
    assert servable_problems(str(tmp_path), ENGINE, 512, cpu=False) == []  # GPUs have the kernel


def test_memory_and_length_that_cannot_fit_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(
        '{"hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8, "num_hidden_layers": 32,'
        ' "max_position_embeddings": 4096}'
    )
    problems = servable_problems(str(tmp_path), VllmEngine(cpu_kv_cache_gib=100_000), 4096, cpu=True)
    assert any("cpu_kv_cache_gib = 100000 GiB does not fit" in p for p in problems)
    problems = servable_problems(str(tmp_path), VllmEngine(max_model_len=8192), 4096, cpu=True)
    assert any("max_model_len = 8192 exceeds the model's max_position_embeddings = 4096" in p for p in problems)
    # 32 layers x 8 heads x 128 x 2 (k, v) x 4 bytes = 256 KiB a token: 4096 tokens need 1 GiB, 8192 do not fit
    small = VllmEngine(cpu_kv_cache_gib=1, max_model_len=4096, dtype="float32")
    assert servable_problems(str(tmp_path), small, 4096, cpu=True) == []
    (tmp_path / "config.json").write_text((tmp_path / "config.json").read_text().replace("4096}", "16384}"))
    problems = servable_problems(str(tmp_path), small.model_copy(update={"max_model_len": 8192}), 4096, cpu=True)
    assert any("cannot hold one sequence of max_model_len = 8192 tokens (2.00 GiB)" in p for p in problems)


@pytest.mark.slow
def test_a_qwen2_checkpoint_in_bf16_pushed_into_vllm_matches_the_trainer_within_bf16(tmp_path):
    """The real Hugging Face layout beyond the tiny family: Qwen2 (q/k/v biases, tied embeddings), a tokenizer
    without a pad token whose ChatML end of turn is not its eos, bf16 on both sides."""
    pytest.importorskip("vllm")
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as bpe_models
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    from yulan.runtime import models, tiny
    from yulan.runtime.vllm_engine import VllmGenerator

    bpe = Tokenizer(bpe_models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=special, show_progress=False)
    bpe.train_from_iterator(["What is two plus three?", "It is five."] * 50, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", chat_template=tiny.CHAT_TEMPLATE
    )
    source = tmp_path / "qwen2"
    config = Qwen2Config(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=512, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(source)
    tokenizer.save_pretrained(source)
    tokenizer = models.load_tokenizer(str(source))  # the product's loading: a pad token chosen
    model = models.load_causal_lm(str(source), torch.bfloat16)
    sampling = sampling_for(tokenizer, model.generation_config, 12, 1.0, seed=2, logprobs=True)
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in sampling.stop_token_ids
    bf16 = SECOND_ENGINE.model_copy(update={"dtype": "bfloat16"})
    engine = VllmGenerator.for_training(model, tokenizer, tmp_path / "engine", bf16, 0, 512)
    try:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.05)
        engine.push_weights(model, tmp_path / "engine")
        [completion] = engine.generate(PROMPTS[:1], sampling)
    finally:
        engine.close()
    ids = torch.tensor([PROMPTS[0] + completion.token_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, len(PROMPTS[0]) - 1 : -1].float().log_softmax(-1)
    expected = logits.gather(-1, torch.tensor(completion.token_ids)[:, None]).squeeze(-1).tolist()
    assert completion.logprobs == pytest.approx(expected, abs=0.05)  # bf16: about 3 significant digits
