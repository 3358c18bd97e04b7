"""What the native trainers share: devices, loading, chat tokenisation, packing, schedules, checkpoints, logging."""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
import transformers

from schema.experiment import Experiment, stage_output
from yulan.native import tiny
from yulan.stages import REQUEUE_STATUS, stop_requested

transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()

IGNORE = -100


# -- devices and models ---------------------------------------------------------------------------------
def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def dtype(param_dtype: str) -> torch.dtype:
    """bf16/fp16 only where the device supports them; a CPU run trains in fp32."""
    if device().type == "cpu":
        return torch.float32
    if param_dtype == "bf16" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[param_dtype]


def model_path(experiment: Experiment, path: str, spec_name: str = "model") -> str:
    """Stage outputs and hub ids load as they are; `tiny:*` names are built into the cache first."""
    spec = getattr(experiment, spec_name)
    return tiny.resolve(path, spec.vocab_size, spec.context_length)


def load_tokenizer(path: str):
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(path: str, param_dtype: str, attention: str = "sdpa"):
    attention = attention if device().type == "cuda" else "sdpa"  # flash-attention needs CUDA
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype(param_dtype), attn_implementation=attention)
    return model.to(device())


def starting_point(experiment: Experiment, config) -> tuple[str, Any, Any]:
    """(path, tokenizer, model) a trainer starts from (`config.init_from`), after seeding every RNG."""
    seed_everything(experiment.seed)
    path = model_path(experiment, experiment.resolve(config.init_from))
    return path, load_tokenizer(path), load_causal_lm(path, config.param_dtype, config.attention)


def load_scorer(path: str, param_dtype: str):
    """A model with a scalar head (reward model or critic)."""
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype(param_dtype), num_labels=1)
    return model.to(device())


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path) as source:
        return [json.loads(line) for line in source if line.strip()]


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w") as sink:
        for record in records:
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


# -- chat tokenisation ----------------------------------------------------------------------------------
@dataclass
class Tokenized:
    input_ids: list[int]
    labels: list[int]  # IGNORE where no loss is taken


def tokenize_chat(tokenizer, messages: list[dict], max_length: int, loss_on: str = "assistant") -> Tokenized:
    """Loss only on assistant turns: their character spans come from rendering growing prefixes of the
    conversation with the model's own template, then token offsets say which tokens fall inside them."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            start = len(tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True))
            end = len(tokenizer.apply_chat_template(messages[: i + 1], tokenize=False))
            spans.append((start, end))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"][:max_length]
    offsets = encoded["offset_mapping"][:max_length]
    labels = [
        token if loss_on == "all" or any(start <= begin < end for start, end in spans) else IGNORE
        for token, (begin, _) in zip(ids, offsets)
    ]
    return Tokenized(ids, labels)


def prompt_ids(tokenizer, messages: list[dict], max_length: int) -> list[int]:
    """A rendered prompt ending in the assistant header; over-long prompts keep their end (left-truncated)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"][-max_length:]


# -- batches ----------------------------------------------------------------------------------------------
def pack(samples: list[Tokenized], max_length: int) -> list[list[Tokenized]]:
    """Samples into rows of at most max_length tokens, in order (first fit keeps it simple and deterministic)."""
    rows: list[list[Tokenized]] = []
    sizes: list[int] = []
    for sample in samples:
        for i, size in enumerate(sizes):
            if size + len(sample.input_ids) <= max_length:
                rows[i].append(sample)
                sizes[i] += len(sample.input_ids)
                break
        else:
            rows.append([sample])
            sizes.append(len(sample.input_ids))
    return rows


def collate(rows: list[list[Tokenized]], pad_id: int) -> dict[str, torch.Tensor]:
    """Rows of one or more samples -> padded tensors. Packed samples attend only within themselves: the mask is
    block-diagonal causal and positions restart at each sample, so a packed sample's loss equals its loss alone."""
    width = max(sum(len(s.input_ids) for s in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id)
    labels = torch.full((len(rows), width), IGNORE)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    segment = torch.full((len(rows), width), -1)
    for r, row in enumerate(rows):
        at = 0
        for s, sample in enumerate(row):
            n = len(sample.input_ids)
            ids[r, at:at + n] = torch.tensor(sample.input_ids)
            # labels are shifted here so that position t predicts token t+1 of the same sample only
            labels[r, at:at + n - 1] = torch.tensor(sample.labels[1:])
            positions[r, at:at + n] = torch.arange(n)
            segment[r, at:at + n] = s
            at += n
    causal = torch.tril(torch.ones(width, width, dtype=torch.bool))
    same = (segment[:, :, None] == segment[:, None, :]) & (segment[:, :, None] >= 0)
    mask = (same & causal)[:, None]
    mask |= torch.eye(width, dtype=torch.bool)[None, None]  # padding rows attend to themselves: no NaN
    return {"input_ids": ids, "labels": labels, "position_ids": positions, "attention_mask": mask}


def token_logprobs(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """log p(label_t | tokens <= t) at every position (0 where there is no label)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"]).logits.float()
    labels = batch["labels"]
    picked = torch.gather(logits.log_softmax(-1), 2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked * (labels != IGNORE)


def to_device(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.to(device()) for key, value in batch.items()}


# -- generation -------------------------------------------------------------------------------------------
@torch.no_grad()
def generate(model, tokenizer, prompts: list[list[int]], samples_per_prompt: int, temperature: float,
             max_new_tokens: int, batch_size: int = 16) -> list[list[int]]:
    """Completions (token ids, eos included when produced), prompt-major: samples of prompt 0, then 1, ..."""
    model.eval()
    jobs = [ids for ids in prompts for _ in range(samples_per_prompt)]
    out = []
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        width = max(map(len, chunk))
        ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(x)) + x for x in chunk], device=device())
        attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in chunk], device=device())
        sampled = model.generate(input_ids=ids, attention_mask=attention, max_new_tokens=max_new_tokens,
                                 do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
                                 top_k=0, top_p=1.0, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
        for row in sampled[:, width:].tolist():
            if tokenizer.eos_token_id in row:
                row = row[: row.index(tokenizer.eos_token_id) + 1]
            out.append([token for token in row if token != tokenizer.pad_token_id])
    return out


def decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


# -- schedules ------------------------------------------------------------------------------------------
def lr_lambda(kind: str, total_steps: int, warmup_ratio: float, min_lr_ratio: float):
    warmup = math.ceil(total_steps * warmup_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind in ("constant", "constant_with_warmup"):
            return 1.0
        progress = (step - warmup) / max(total_steps - warmup, 1)
        if kind == "linear":
            return max(1.0 - progress, 0.0)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def adamw(params, lr: float, betas=(0.9, 0.95), weight_decay: float = 0.0) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr, betas=tuple(betas), weight_decay=weight_decay)


# -- checkpoints: everything needed for an identical continuation -------------------------------------------
class Checkpoints:
    """`job_dir/checkpoints/step-N/`: weights of every trained model, optimizer and scheduler states, the step
    (which fixes the data position, since data order depends only on seed and epoch) and all RNG states.
    A checkpoint becomes visible only once complete (written under a temporary name, then renamed)."""

    def __init__(self, job_dir: str):
        self.root = Path(job_dir) / "checkpoints"

    def latest(self) -> Path | None:
        steps = sorted(self.root.glob("step-*[0-9]"), key=lambda p: int(p.name.split("-")[1]))
        return steps[-1] if steps else None

    def save(self, step: int, models: dict[str, Any], optimizers: dict[str, Any], schedulers: dict[str, Any],
             extra: dict | None = None) -> Path:
        final = self.root / f"step-{step}"
        building = self.root / f"step-{step}.partial"
        building.mkdir(parents=True, exist_ok=True)
        for name, model in models.items():
            torch.save(model.state_dict(), building / f"{name}.pt")
        torch.save({
            "step": step,
            "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
            "schedulers": {name: sched.state_dict() for name, sched in schedulers.items()},
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            "extra": extra or {},
        }, building / "state.pt")
        building.rename(final)
        return final

    def restore(self, models: dict[str, Any], optimizers: dict[str, Any], schedulers: dict[str, Any]) -> tuple[int, dict]:
        """Loads the latest checkpoint into the given objects; returns (step, extra), or (0, {}) without one."""
        path = self.latest()
        if path is None:
            return 0, {}
        for name, model in models.items():
            model.load_state_dict(torch.load(path / f"{name}.pt", map_location=device()))
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        if state["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        print(f"resumed from {path} (step {state['step']})", file=sys.stderr)
        return state["step"], state["extra"]


def save_or_stop(checkpoints: Checkpoints, step: int, total: int, every: int, models: dict, optimizers: dict,
                 schedulers: dict, extra: dict | None = None) -> bool:
    """The periodic checkpoint, or the one a stop request (preemption, time limit) asks for. True: stop now, the
    job is requeued and resumes from this checkpoint."""
    stopping = stop_requested() and step < total
    if stopping or (step % every == 0 and step < total):
        checkpoints.save(step, models, optimizers, schedulers, extra)
    return stopping


def batches_of_epoch(count: int, global_batch: int, seed: int, epoch: int) -> list[list[int]]:
    """Sample indices per optimizer step; the order depends only on (seed, epoch), so a resumed run finds its place."""
    order = list(range(count))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return [order[i:i + global_batch] for i in range(0, count, global_batch)]


def optimize(experiment: Experiment, stage: str, job_dir: str, model, tokenizer, count: int,
             step_gradients, shown: tuple[str, ...] = ("loss",)) -> int:
    """The optimizer loop SFT and DPO share, over `count` samples for the stage's epochs and global batch:
    `step_gradients(indices)` accumulates the gradients of one optimizer step's samples and returns
    (metrics without the stage prefix, tokens processed). Clipping, the optimizer and schedule, logging, the
    progress bar, checkpoints, resume, stop requests and the final save are done here.
    Returns 0, or REQUEUE_STATUS when it stopped at a checkpoint because it was asked to."""
    config = getattr(experiment, stage)
    steps_per_epoch = math.ceil(count / config.global_batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = adamw(model.parameters(), config.learning_rate, config.adam_betas, config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(config.lr_scheduler, total_steps, config.warmup_ratio, config.min_lr_ratio))
    state = ({"model": model}, {"model": optimizer}, {"model": scheduler})
    checkpoints = Checkpoints(job_dir)
    step, _ = checkpoints.restore(*state)
    tracker = Tracker(experiment, stage, job_dir)
    progress = Progress(total_steps, step, stage)
    model.train()
    while step < total_steps:
        epoch, index = divmod(step, steps_per_epoch)
        metrics, tokens = step_gradients(batches_of_epoch(count, config.global_batch_size, experiment.seed, epoch)[index])
        metrics |= {"grad_norm": torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm).item(),
                    "epoch": epoch}
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        metrics["lr"] = scheduler.get_last_lr()[0]
        if step % config.log_every_steps == 0 or step == total_steps:
            tracker.log(step, {f"{stage}/{key}": value for key, value in metrics.items()})
        progress.step(tokens, **{key: metrics[key] for key in shown})
        if save_or_stop(checkpoints, step, total_steps, config.save_every_steps, *state):
            tracker.finish()
            return REQUEUE_STATUS
    progress.close()
    tracker.finish()
    save_final(model, tokenizer, stage_output(experiment.output_dir, stage))
    return 0


def save_final(model, tokenizer, path: str | Path) -> None:
    """The stage output later stages load: a plain transformers directory, written then renamed into place."""
    path = Path(path)
    building = path.with_name(path.name + ".partial")
    model.save_pretrained(building)
    tokenizer.save_pretrained(building)
    if path.exists():
        import shutil

        shutil.rmtree(path)
    building.rename(path)


# -- tracking and progress ----------------------------------------------------------------------------------
class Tracker:
    """wandb (offline unless configured) with a run id kept in the job directory, so a resumed job continues the
    same tracking run; metrics also go to job_dir/metrics.jsonl, which tests and scripts can read."""

    def __init__(self, experiment: Experiment, stage: str, job_dir: str):
        Path(job_dir).mkdir(parents=True, exist_ok=True)
        self.metrics = Path(job_dir) / "metrics.jsonl"
        self.run = None
        tracking = experiment.tracking
        if tracking.backend != "wandb" or tracking.mode == "disabled":
            return
        os.environ.setdefault("WANDB_SILENT", "true")  # the progress bar and metrics.jsonl say enough
        import wandb

        id_file = Path(job_dir) / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        self.run = wandb.init(
            project=tracking.project, entity=tracking.entity, group=tracking.group or experiment.name,
            name=f"{experiment.name}-{stage}", tags=list(tracking.tags), mode=tracking.mode, id=run_id,
            resume="allow", dir=job_dir, config=json.loads(getattr(experiment, stage).model_dump_json()),
        )

    def log(self, step: int, values: dict[str, float]) -> None:
        with self.metrics.open("a") as sink:
            sink.write(json.dumps({"step": step, **values}) + "\n")
        if self.run is not None:
            self.run.log(values, step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


class Progress:
    """A progress bar with throughput (tokens/s), on stderr."""

    def __init__(self, total: int, start: int, description: str):
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=start, desc=description, file=sys.stderr, dynamic_ncols=True,
                        mininterval=0.1 if sys.stderr.isatty() else 30,  # job logs get a line every 30 s
                        disable=os.environ.get("YULAN_PROGRESS", "1") == "0")
        self.started, self.tokens = time.monotonic(), 0

    def step(self, tokens: int, **metrics: float) -> None:
        self.tokens += tokens
        rate = self.tokens / max(time.monotonic() - self.started, 1e-9)
        self.bar.set_postfix({"tok/s": f"{rate:,.0f}", **{k: f"{v:.4g}" for k, v in metrics.items()}})
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


# -- scoring with a reward model ------------------------------------------------------------------------------
class RewardModel:
    """A local reward model: rendered texts -> scalar scores (the native engine's stand-in for the reward server)."""

    def __init__(self, path: str, param_dtype: str, batch_size: int = 16, max_length: int = 8192):
        self.tokenizer = load_tokenizer(path)
        self.model = load_scorer(path, param_dtype).eval()
        self.batch_size, self.max_length = batch_size, max_length

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> list[float]:
        scores = []
        for start in range(0, len(texts), self.batch_size):
            encoded = self.tokenizer(texts[start:start + self.batch_size], return_tensors="pt", padding=True,
                                     truncation=True, max_length=self.max_length, add_special_tokens=False)
            scores += self.model(**to_device(dict(encoded))).logits[:, 0].float().tolist()
        return scores


def reward_model(experiment: Experiment, param_dtype: str) -> RewardModel:
    spec = experiment.reward_model
    return RewardModel(model_path(experiment, spec.name_or_path, "reward_model"), param_dtype,
                       max_length=experiment.ppo.reward.server_max_length)
