"""Benchmark: the native SFT and DPO trainers next to TRL's SFTTrainer / DPOTrainer and a plain padded Hugging Face
loop, on the same ~28M-parameter Llama, the same ragged chats (50-1,000 tokens) and the same global batch, each run
in its own process and the runs interleaved A/B; then the PPO rollout's scoring memory at 64 and 512 sequences.

    python benchmarks/bench_native.py [--rounds 2] [--steps 4] [--shape 28m|0.5b|2.4b] [--only sft,dpo,ppo]

Prints real-token throughput (tokens of the training forward passes, padding excluded, over the time from the first
training forward to the end of training), peak RSS of each process, and the ratios against native. On a CUDA machine
it also prints MFU (6 x parameters x tokens/s over the GPU's bf16 peak given by --peak-tflops). TRL is `pip install
trl==1.16.0` (the `bench` extra); its columns are skipped without it. TRL's gradient checkpointing and bf16 are turned
off on CPU, as in every trainer here, and TRL trains on every token (its assistant-only loss needs a template with
generation markers).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHAPES = {  # hidden, intermediate, layers, heads, kv heads, vocab (28m uses the tiny BPE tokenizer's 4096)
    "28m": (512, 1376, 8, 8, 4, 4096),
    "0.5b": (896, 4864, 24, 14, 2, 4096),
    "2.4b": (1920, 4800, 56, 30, 6, 4096),
}
SFT_TRAINERS = ("native", "trl", "padded")
DPO_TRAINERS = ("native", "trl")


# -- the shared setting ---------------------------------------------------------------------------------------
def build_model(directory: Path, shape: str) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from yulan.runtime import tiny

    target = directory / f"llama-{shape}"
    if target.exists():
        return target
    tokenizer = AutoTokenizer.from_pretrained(tiny.tokenizer_dir(4096))
    hidden, intermediate, layers, heads, kv, vocab = SHAPES[shape]
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def ragged_chats(path: Path, count: int, tokenizer_dir: Path, seed: int = 0) -> None:
    """Chats of 50-1,000 tokens (uniform), made of the shipped samples' texts."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    texts = [m["content"] for line in open(REPO / "yulan/data/sft_samples.jsonl") for m in json.loads(line)["messages"]]
    rng = random.Random(seed)
    with path.open("w") as sink:
        for _ in range(count):
            target = rng.randint(50, 1000)
            question, answer = rng.choice(texts)[:200], ""
            while len(tokenizer(answer)["input_ids"]) < target - 30:
                answer += " " + rng.choice(texts)
            answer = tokenizer.decode(tokenizer(answer)["input_ids"][: target - 30])
            chat = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            sink.write(
                json.dumps(
                    {
                        "messages": chat,
                        "prompt": chat[:1],
                        "chosen": chat[1:],
                        "rejected": [{"role": "assistant", "content": answer[::-1]}],
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )


class TokenCounter:
    """Counts the real tokens of training forward passes and times from the first one."""

    def __init__(self, backbone):
        self.tokens, self.started = 0, None
        backbone.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        import torch

        if not torch.is_grad_enabled() or not module.training:
            return
        self.started = self.started or time.perf_counter()
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.tokens += int(mask.sum()) if mask is not None and mask.dim() == 2 else ids.numel()

    def result(self) -> dict:
        elapsed = time.perf_counter() - self.started
        return {
            "tokens": self.tokens,
            "seconds": elapsed,
            "tokens_per_s": self.tokens / elapsed,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


def counting(load):
    """Wraps a model loader so that every loaded trainable model gets a TokenCounter; returns (loader, counters)."""
    counters = []

    def wrapped(*args, **kwargs):
        model = load(*args, **kwargs)
        counters.append(TokenCounter(model.base_model))
        return model

    return wrapped, counters


# -- one trainer run (a child process) -----------------------------------------------------------------------
def run_native(stage: str, model: Path, data: Path, work: Path, steps: int, batch: int, device: str) -> dict:
    from yulan.compose import load
    from yulan.engines.native import dpo, loop, sft

    loop.load_trained, counters = counting(loop.load_trained)
    gpu = (
        [
            "cluster.gpus_per_node=1",
            f"{stage}.resources.gpus_per_node=1",
            f"{stage}.attention=flash_attention_2",
            f"{stage}.param_dtype=bf16",
        ]
        if device == "cuda"
        else [f"{stage}.param_dtype=fp32", f"{stage}.attention=sdpa"]
    )
    experiment = load(
        [
            "experiment=smoke",
            f"run_dir={work}",
            "tracking.mode=disabled",
            f"stages=[{stage}]",
            f"{stage}.init_from={model}",
            f"{stage}.data={data}",
            f"{stage}.max_steps={steps}",
            f"{stage}.global_batch_size={batch}",
            f"{stage}.micro_batch_size=1",
            f"{stage}.max_length=1024",
            f"{stage}.gradient_checkpointing=false",
            f"{stage}.save_every_steps=100000",
            "model.vocab_size=4096",
            "model.context_length=2048",
            *gpu,
        ]
    )
    os.environ["YULAN_PROGRESS"] = "0"
    status = (sft if stage == "sft" else dpo).train(experiment, str(work / stage))
    assert status == 0
    result = counters[0].result()  # its token count includes padding where rows are padded: count real tokens
    metrics = [json.loads(line) for line in (work / stage / "metrics.jsonl").read_text().splitlines()]
    result["tokens"] = sum(m[f"{stage}/tokens"] for m in metrics)
    result["tokens_per_s"] = result["tokens"] / result["seconds"]
    return result


def run_trl(stage: str, model: Path, data: Path, work: Path, steps: int, batch: int, device: str) -> dict:
    import datasets
    import torch
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    policy = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    counter = TokenCounter(policy.base_model)
    records = [json.loads(line) for line in data.open()]
    common = dict(
        output_dir=str(work / "trl"),
        max_steps=steps,
        per_device_train_batch_size=1,
        gradient_accumulation_steps=batch,
        learning_rate=1e-5,
        lr_scheduler_type="constant",
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        gradient_checkpointing=device == "cuda",
        bf16=device == "cuda",
        use_cpu=device == "cpu",
        max_length=1024,
        dataloader_num_workers=0,
        seed=0,
    )
    if stage == "sft":
        dataset = datasets.Dataset.from_list([{"messages": r["messages"]} for r in records])
        trainer = trl.SFTTrainer(
            model=policy, processing_class=tokenizer, train_dataset=dataset, args=trl.SFTConfig(packing=True, **common)
        )
    else:
        dataset = datasets.Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in records])
        trainer = trl.DPOTrainer(
            model=policy, processing_class=tokenizer, train_dataset=dataset, args=trl.DPOConfig(beta=0.1, **common)
        )
    trainer.train()
    return counter.result()


def run_padded(stage: str, model: Path, data: Path, work: Path, steps: int, batch: int, device: str) -> dict:
    """A plain loop: micro-batches of 2 samples padded to the longest, loss on assistant tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from yulan.runtime.batches import IGNORE, tokenize_chat

    tokenizer = AutoTokenizer.from_pretrained(model)
    policy = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).to(device).train()
    counter = TokenCounter(policy.base_model)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-5)
    samples = [tokenize_chat(tokenizer, json.loads(line)["messages"], 1024) for line in data.open()]
    order = list(range(len(samples)))
    random.Random(0).shuffle(order)
    for step in range(steps):
        chosen = [samples[i] for i in order[step * batch : (step + 1) * batch]]
        for start in range(0, batch, 2):
            micro = chosen[start : start + 2]
            width = max(len(s.input_ids) for s in micro)
            ids = torch.tensor([s.input_ids + [tokenizer.pad_token_id] * (width - len(s.input_ids)) for s in micro])
            labels = torch.tensor([s.labels + [IGNORE] * (width - len(s.labels)) for s in micro])
            mask = torch.tensor([[1] * len(s.input_ids) + [0] * (width - len(s.input_ids)) for s in micro])
            loss = policy(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
            (loss / (batch // 2)).backward()
        optimizer.step()
        optimizer.zero_grad()
    return counter.result()


def child(args) -> None:
    runner = {"native": run_native, "trl": run_trl, "padded": run_padded}[args.trainer]
    result = runner(args.stage, Path(args.model), Path(args.data), Path(args.work), args.steps, args.batch, args.device)
    print("RESULT " + json.dumps(result))


# -- PPO rollout scoring memory ------------------------------------------------------------------------------
PPO_MEMORY = """
import resource, sys, torch
from contextlib import nullcontext
from yulan.engines.native import ppo
from yulan.runtime import models, tiny
from yulan.runtime.batches import IGNORE, Tokenized
path = tiny.resolve("tiny:policy", 4096, 1024)
actor, reference = (models.load_causal_lm(path, torch.float32).eval() for _ in range(2))
critic = models.load_scorer(tiny.resolve("tiny:reward", 4096, 1024), torch.float32, 3).eval()
count, micro = int(sys.argv[1]), int(sys.argv[2])
sequences = [Tokenized(list(range(1, 513)), [IGNORE] * 256 + list(range(257, 513))) for _ in range(count)]
ppo.score_sequences(sequences[:1], actor, reference, critic, 1, nullcontext)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ppo.score_sequences(sequences, actor, reference, critic, micro, nullcontext)
print("RESULT", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""


def ppo_memory() -> None:
    print("\nPPO rollout scoring (actor, reference, critic log-probabilities/values; tiny model, 512-token sequences):")
    print(f"{'sequences':>10} {'micro':>6} {'peak RSS above start, MiB':>28}")
    for count, micro in ((64, 8), (512, 8), (64, 64)):
        done = subprocess.run(
            [sys.executable, "-c", PPO_MEMORY, str(count), str(micro)], cwd=REPO, capture_output=True, text=True
        )
        value = next(
            (line.split()[1] for line in done.stdout.splitlines() if line.startswith("RESULT")), done.stderr[-300:]
        )
        print(f"{count:>10} {micro:>6} {value:>28}")


# -- the driver ------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per run")
    parser.add_argument("--batch", type=int, default=8, help="global batch (samples or pairs)")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--shape", choices=SHAPES, default="28m")
    parser.add_argument("--only", default="sft,dpo,ppo")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="GPU bf16 peak for MFU (H100/H200 dense)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("trainer", "stage", "model", "data", "work", "device"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    import importlib.util

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model = build_model(scratch, args.shape)
        parameters = sum(
            p.numel() for p in __import__("transformers").AutoModelForCausalLM.from_pretrained(model).parameters()
        )
        data = scratch / "chats.jsonl"
        ragged_chats(data, args.samples, model)
        print(
            f"model {args.shape} ({parameters / 1e6:.1f}M parameters), {args.samples} chats of 50-1000 tokens, "
            f"global batch {args.batch}, {args.steps} steps per run, {args.rounds} rounds, device {device}"
        )
        has_trl = importlib.util.find_spec("trl") is not None
        stages = args.only.split(",")
        for stage, trainers in (("sft", SFT_TRAINERS), ("dpo", DPO_TRAINERS)):
            if stage not in stages:
                continue
            trainers = [t for t in trainers if t != "trl" or has_trl]
            results: dict[str, list[dict]] = {t: [] for t in trainers}
            for round_ in range(args.rounds):
                for trainer in trainers if round_ % 2 == 0 else reversed(trainers):  # A/B interleaved
                    work = scratch / f"{stage}-{trainer}-{round_}"
                    done = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--child",
                            "--trainer",
                            trainer,
                            "--stage",
                            stage,
                            "--model",
                            str(model),
                            "--data",
                            str(data),
                            "--work",
                            str(work),
                            "--steps",
                            str(args.steps),
                            "--batch",
                            str(args.batch),
                            "--device",
                            device,
                        ],
                        cwd=REPO,
                        capture_output=True,
                        text=True,
                        env=dict(os.environ, YULAN_PROGRESS="0"),
                    )
                    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
                    if line is None:
                        raise SystemExit(f"{stage} {trainer} failed:\n{done.stderr[-3000:]}")
                    results[trainer].append(json.loads(line[7:]))
            report(stage, results, parameters, device, args.peak_tflops)
        if "ppo" in stages:
            ppo_memory()


def report(stage: str, results: dict, parameters: int, device: str, peak_tflops: float) -> None:
    native_rate = statistics.median(r["tokens_per_s"] for r in results["native"])
    native_rss = statistics.median(r["peak_rss_mb"] for r in results["native"])
    print(
        f"\n{stage.upper()}: {'trainer':<8} {'tokens/s (median)':>18} {'runs':>24} {'peak RSS MB':>12} "
        f"{'native speed x':>15} {'RSS / native':>13}" + ("   MFU" if device == "cuda" else "")
    )
    for trainer, runs in results.items():
        rate = statistics.median(r["tokens_per_s"] for r in runs)
        rss = statistics.median(r["peak_rss_mb"] for r in runs)
        each = ", ".join(f"{r['tokens_per_s']:.0f}" for r in runs)
        mfu = f"  {6 * parameters * rate / (peak_tflops * 1e12):.1%}" if device == "cuda" else ""
        print(
            (
                f"     {trainer:<8} {rate:>18.0f} {each:>24} {rss:>12.0f} {native_rate / rate:>15.2f} "
                f"{rss / native_rss:>13.2f}{mfu}"
            )
        )


if __name__ == "__main__":
    main()
