"""Devices, precisions and loading: tokenizers (with the configured chat template and a pad token), causal LMs
and scorers (reward models, critics), checked against the experiment's `model.*` description."""

from __future__ import annotations

import os
import random

import torch
import transformers

from yulan.runtime import tiny
from yulan.schema.errors import ConfigError, Problem
from yulan.schema.experiment import Experiment
from yulan.schema.models import ModelSpec, mismatches

# Progress bars of downloads and weight loading say nothing a job log needs; warnings stay visible.
transformers.utils.logging.disable_progress_bar()

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def compute_dtype(param_dtype: str) -> torch.dtype:
    """The dtype a trainer computes in: as configured, on CPU too (CPUs compute in bf16); fp16 on a GPU that has no
    bf16. The trainers keep fp32 weights and optimizer state whatever this is."""
    if param_dtype == "bf16" and device().type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return DTYPES[param_dtype]


def inference_dtype() -> torch.dtype:
    """Weights of models that are only evaluated (eval, complexity, preference sampling): bf16 where the GPU has
    it, fp16 on an older GPU, fp32 on CPU (where bf16 inference is slower and gains no memory that matters)."""
    if device().type == "cpu":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Every RNG from `seed`; `deterministic`: torch's deterministic kernels only (an op without one raises)."""
    random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs
    torch.use_deterministic_algorithms(deterministic)


def model_path(experiment: Experiment, path: str, spec_name: str = "model") -> str:
    """Stage outputs and hub ids load as they are; `tiny:*` names are built into the cache first."""
    spec = getattr(experiment, spec_name)
    return tiny.resolve(path, spec.vocab_size, spec.context_length)


def check_checkpoint(path: str, spec: ModelSpec, spec_name: str) -> None:
    """Refuses a checkpoint that is not the model `spec` describes, before its weights are loaded."""
    config = transformers.AutoConfig.from_pretrained(path).to_dict()
    problems = mismatches(spec, config, spec_name, path)
    if problems:
        raise ConfigError(f"the checkpoint at {path} does not match {spec_name}.*", problems)


def load_tokenizer(path: str, chat_template: str | None = None):
    """The checkpoint's tokenizer; `chat_template` (model.chat_template) replaces its template. A tokenizer without
    a pad token pads with its eos token: padding is masked everywhere, and end-of-turn tokens are found without it."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    if chat_template:
        tokenizer.chat_template = chat_template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def require_chat_template(tokenizer, path: str) -> None:
    if not tokenizer.chat_template:
        raise ConfigError(
            f"the tokenizer at {path} has no chat template",
            [
                Problem(
                    "model.chat_template",
                    "chat data and prompts are rendered with the model's chat template",
                    None,
                    (
                        "set model.chat_template to a Jinja template (e.g. ChatML), or start from a checkpoint "
                        "that has one"
                    ),
                )
            ],
        )


def load_causal_lm(path: str, dtype: torch.dtype, attention: str = "sdpa"):
    if attention.startswith("flash_attention") and device().type != "cuda":
        raise ConfigError(
            f"cannot load {path}",
            [
                Problem(
                    "attention", "flash-attention runs only on CUDA GPUs", attention, "set attention=sdpa for a CPU job"
                )
            ],
        )
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attention)
    return model.to(device())


def load_scorer(path: str, dtype: torch.dtype, pad_token_id: int, attention: str = "sdpa"):
    """A model with a scalar head (reward model or critic). Its config gets the tokenizer's pad id: sequence
    classifiers find each row's last token by it and refuse batches of more than one row without it."""
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        path, dtype=dtype, num_labels=1, attn_implementation=attention
    )
    model.config.pad_token_id = pad_token_id
    return model.to(device())


def generation_config_of(path: str):
    """The checkpoint's generation config (its eos ids) without loading its weights; None when it has none."""
    from transformers import AutoConfig, GenerationConfig

    try:
        return GenerationConfig.from_pretrained(path)
    except OSError:
        try:
            return GenerationConfig.from_model_config(AutoConfig.from_pretrained(path))
        except (OSError, ValueError):
            return None


def stop_token_ids(tokenizer, generation_config=None) -> list[int]:
    """Where a response ends: the model's generation config (its eos ids), the tokenizer's eos, and the special
    token that closes an assistant turn in the chat template (`<|im_end|>` for ChatML on a base tokenizer whose eos
    is `<|endoftext|>`)."""
    ids: list[int] = []
    configured = getattr(generation_config, "eos_token_id", None)
    ids += configured if isinstance(configured, list) else [configured]
    ids.append(tokenizer.eos_token_id)
    ids.append(end_of_turn_id(tokenizer))
    return list(dict.fromkeys(i for i in ids if i is not None))


def end_of_turn_id(tokenizer) -> int | None:
    """The special token the chat template writes right after an assistant message, if there is one."""
    if not tokenizer.chat_template:
        return None
    marker = "Zq7xMarker"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}], tokenize=False
    )
    after = text[text.rfind(marker) + len(marker) :]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    return ids[0] if ids and ids[0] in special else None


class RewardModel:
    """A local reward model: rendered texts -> scalar scores (the native engine's stand-in for the reward server)."""

    def __init__(self, path: str, batch_size: int = 16, max_length: int = 8192):
        self.tokenizer = load_tokenizer(path)
        self.model = load_scorer(path, inference_dtype(), self.tokenizer.pad_token_id).eval()
        self.batch_size, self.max_length = batch_size, max_length

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> list[float]:
        scores = []
        for start in range(0, len(texts), self.batch_size):
            encoded = self.tokenizer(
                texts[start : start + self.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
                add_special_tokens=False,
            )
            encoded = {key: value.to(device()) for key, value in encoded.items()}
            scores += self.model(**encoded).logits[:, 0].float().tolist()
        return scores


def reward_model(experiment: Experiment) -> RewardModel:
    spec = experiment.reward_model
    path = model_path(experiment, spec.name_or_path, "reward_model")
    check_checkpoint(path, spec, "reward_model")
    return RewardModel(path, max_length=experiment.ppo.reward.server_max_length)
