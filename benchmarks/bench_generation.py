"""Benchmark: the generation layer on vLLM next to transformers, the same prompts and sampling settings, each run in
its own process and the backends interleaved A/B; then one native GRPO rollout + update step on each backend.

    python benchmarks/bench_generation.py [--rounds 2] [--prompts 64] [--samples 4] [--tokens 128] [--shape tiny|0.5b]
                                         [--only generate,grpo] [--override generation.vllm.KEY=VALUE ...]

generate: rollout tokens/s (completion tokens over the time of one generate call, median of 3 calls after a warm-up
call), start-up (engine or model load), peak RSS of the process and of its largest child (vLLM's engine core).
grpo: wall time of a native GRPO step (rollout of prompts x samples x tokens, scoring, update, and on vLLM the weight
push), the second of two steps (the first pays start-up). Settings on both backends: temperature 1, top_p 1, no top-k,
the model's stop tokens, fp32 on CPU (bf16 on a GPU), `generation.vllm.enforce_eager=true`.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHAPES = ("tiny", "0.5b")  # tiny = the smoke family; 0.5b = bench_native's Qwen2.5-0.5B-bodied Llama
BACKENDS = ("vllm", "transformers")


def build_model(shape: str, directory: Path) -> str:
    from benchmarks.bench_native import build_model as build_llama
    from yulan.runtime import tiny

    if shape == "tiny":
        return tiny.resolve("tiny:policy", 4096, 1024)
    return str(build_llama(directory, shape))


def prompts_of(tokenizer, count: int) -> list[list[int]]:
    from yulan.runtime.batches import prompt_ids

    records = [json.loads(line) for line in (REPO / "yulan" / "data" / "preference_prompts.jsonl").open()]
    texts = [r["prompt"] if isinstance(r["prompt"], str) else r["prompt"][-1]["content"] for r in records]
    return [prompt_ids(tokenizer, [{"role": "user", "content": texts[i % len(texts)]}], 256) for i in range(count)]


def peak_rss_mb() -> tuple[float, float]:
    """(this process, its largest child) peak resident memory in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def generate_worker(args) -> dict:
    from yulan.compose import load
    from yulan.runtime import models
    from yulan.runtime.generation import open_generator, sampling_for

    experiment = load(
        ["experiment=smoke", "generation.vllm.enforce_eager=true", "model.context_length=1024", *args.override]
    )
    tokenizer = models.load_tokenizer(args.model)
    prompts = prompts_of(tokenizer, args.prompts)
    started = time.perf_counter()
    generator = open_generator(experiment, args.model, args.backend, tokenizer)
    startup = time.perf_counter() - started
    sampling = sampling_for(
        tokenizer, models.generation_config_of(args.model), args.tokens, 1.0, n=args.samples, seed=1
    )
    generator.generate(prompts[:4], sampling)  # warm-up
    rates = []
    for call in range(3):
        began = time.perf_counter()
        completions = generator.generate(prompts, replace(sampling, seed=call))
        rates.append(sum(len(c.token_ids) for c in completions) / (time.perf_counter() - began))
    generator.close()
    own, child = peak_rss_mb()
    return {"tokens_per_s": statistics.median(rates), "startup_s": startup, "rss_mb": own, "child_rss_mb": child}


def grpo_worker(args) -> dict:
    from yulan.cli.job import run_stage
    from yulan.compose import load

    work = Path(args.work)
    prompts = work / "prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"id": str(i), "prompt": f"What is {i} + {i}?", "label": str(2 * i)}) + "\n"
            for i in range(args.prompts)
        )
    )
    experiment = load(
        [
            "experiment=smoke_grpo",
            f"run_dir={work / args.backend}",
            "stages=[ppo]",
            "tracking.mode=disabled",
            f"generation.backend={args.backend}",
            "generation.vllm.enforce_eager=true",
            f"ppo.actor.init_from={args.model}",
            f"ppo.prompts.source={prompts}",
            f"ppo.prompts.count={args.prompts}",
            f"ppo.rollout_batch_size={args.prompts}",
            f"ppo.train_batch_size={args.prompts * args.samples}",
            f"ppo.samples_per_prompt={args.samples}",
            f"ppo.generate_max_length={args.tokens}",
            "ppo.micro_rollout_batch_size=16",
            "ppo.max_steps=2",
            *args.override,
        ]
    )
    job_dir = work / args.backend / "ppo"
    started = time.perf_counter()
    assert run_stage(experiment, "ppo", str(job_dir)) == 0
    total = time.perf_counter() - started
    steps = [json.loads(line) for line in (job_dir / "metrics.jsonl").read_text().splitlines()]
    second = steps[-1]
    push = second.get("rollout/weight_push_s", 0.0)
    return {
        "step_s": second["ppo/step_time_s"] + push,
        "sampling_s": second["rollout/sampling_s"],
        "sampled_tokens_per_s": second["rollout/sampled_tokens_per_s"],
        "rollout_and_rewards_s": second["ppo/generation_time_s"],
        "weight_push_s": push,
        "job_s": total,
        "logprob_diff": second.get("rollout/logprob_diff"),
    }


def in_process(kind: str, backend: str, args, model: str, work: str) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--backend",
        backend,
        "--model",
        model,
        "--work",
        work,
        "--prompts",
        str(args.prompts),
        "--samples",
        str(args.samples),
        "--tokens",
        str(args.tokens),
        *(f"--override={override}" for override in args.override),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{kind} on {backend} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict]) -> dict[str, float]:
    """Each measure's median over the rounds (measures a backend does not have, like vLLM's mismatch on the
    transformers path, are left out)."""
    keys = [key for key in runs[0] if runs[0][key] is not None]
    return {key: statistics.median(run[key] for run in runs) for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--shape", choices=SHAPES, default="tiny")
    parser.add_argument("--only", default="generate,grpo")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        help="a setting for both backends' runs, e.g. generation.vllm.dtype=bfloat16 (repeatable)",
    )
    parser.add_argument("--worker", choices=("generate", "grpo"))
    parser.add_argument("--backend", choices=BACKENDS)
    parser.add_argument("--model")
    parser.add_argument("--work")
    args = parser.parse_args()
    if args.worker:
        worker = generate_worker if args.worker == "generate" else grpo_worker
        print(json.dumps(worker(args)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        model = build_model(args.shape, Path(scratch) / "model")
        print(f"shape {args.shape}: {args.prompts} prompts x {args.samples} samples x {args.tokens} tokens")
        for kind in args.only.split(","):
            results: dict[str, list[dict]] = {backend: [] for backend in BACKENDS}
            for round_ in range(args.rounds):  # A/B, the order alternating per round
                order = BACKENDS if round_ % 2 == 0 else BACKENDS[::-1]
                for backend in order:
                    work = Path(scratch) / f"{kind}-{round_}-{backend}"
                    work.mkdir()
                    results[backend].append(in_process(kind, backend, args, model, str(work)))
            print(f"\n{kind} (median of {args.rounds} rounds)")
            medians = {backend: median_of(runs) for backend, runs in results.items()}
            for backend, values in medians.items():
                print(f"  {backend:12s} " + "  ".join(f"{key}={value:.4g}" for key, value in values.items()))
            if kind == "generate":
                ratio = medians["vllm"]["tokens_per_s"] / medians["transformers"]["tokens_per_s"]
                print(f"  vllm / transformers tokens/s: {ratio:.2f}x")
            else:
                ratio = medians["transformers"]["step_s"] / medians["vllm"]["step_s"]
                print(f"  GRPO step, transformers time / vllm time: {ratio:.2f}x")


if __name__ == "__main__":
    main()
