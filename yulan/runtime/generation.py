"""One generation layer for every stage that samples: the same sampling settings and the same result from
transformers (left-padded micro-batches) or vLLM (`yulan.runtime.vllm_engine`).

A completion that stopped ends with its stop token (kept: it is the policy's last action and where a sequence
reward lands); one that did not stop has max_new_tokens tokens and no stop token. Log-probabilities are those of the
model's raw distribution (before temperature), as the trainers compute them, so the two can be compared.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from yulan.runtime.progress import Progress

if TYPE_CHECKING:
    from yulan.schema.experiment import Experiment
    from yulan.schema.generation import GenerationBackend


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    temperature: float = 1.0
    n: int = 1  # samples per prompt
    top_p: float = 1.0
    top_k: int = 0  # 0 = every token
    stop_token_ids: tuple[int, ...] = ()
    seed: int = 0  # request i samples with request_seed(seed, i): prompts differ, runs repeat
    logprobs: bool = False


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (ends with a stop token) or "length"
    logprobs: list[float] | None = field(default=None)  # one per token, when asked for


class GenerationError(Exception):
    """A backend that cannot run here, or settings it cannot honour: the message names the field and the fix."""


class Generator(Protocol):
    backend: str
    tokenizer: object

    def generate(self, prompts: list[list[int]], sampling: Sampling, progress: str | None = None) -> list[Completion]:
        """Completions prompt-major: the n samples of prompt 0, then prompt 1, ..."""
        ...

    def close(self) -> None: ...


def request_seed(seed: int, index: int) -> int:
    """The seed of request `index` in a run seeded with `seed` (63 bits, stable across processes)."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def sampling_for(tokenizer, generation_config, max_new_tokens: int, temperature: float, **settings) -> Sampling:
    """Sampling that stops where a response ends for this model: its eos ids and the chat template's end of turn."""
    from yulan.runtime.models import stop_token_ids

    stops = tuple(stop_token_ids(tokenizer, generation_config))
    return Sampling(max_new_tokens=max_new_tokens, temperature=temperature, stop_token_ids=stops, **settings)


def decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def stopped(completion: list[int], stops) -> bool:
    return bool(completion) and completion[-1] in stops


def finish(tokenizer, ids: list[int], logprobs: list[float] | None, stops) -> Completion:
    return Completion(decode(tokenizer, ids), ids, "stop" if stopped(ids, stops) else "length", logprobs)


class TransformersGenerator:
    """Sampling with `model.generate`; the model may be a trainer's (native rollouts) or loaded for inference."""

    backend = "transformers"

    def __init__(self, model, tokenizer, batch_size: int = 16):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    def generate(self, prompts: list[list[int]], sampling: Sampling, progress: str | None = None) -> list[Completion]:
        import torch

        from yulan.runtime.models import device

        self.model.eval()
        stops = list(sampling.stop_token_ids)
        pad = self.tokenizer.pad_token_id
        jobs = [ids for ids in prompts for _ in range(sampling.n)]
        out: list[Completion] = []
        shown = Progress(progress, total=len(jobs), unit="completions") if progress else None
        where = device()
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start : start + self.batch_size]
            width = max(map(len, chunk))
            ids = torch.tensor([[pad] * (width - len(x)) + x for x in chunk], device=where)
            attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in chunk], device=where)
            greedy = sampling.temperature == 0
            # each batch its own seed: a run repeats, and what came before (training) does not change the samples
            with torch.random.fork_rng(devices=[where] if where.type == "cuda" else []), torch.no_grad():
                torch.manual_seed(request_seed(sampling.seed, start))
                result = self.model.generate(
                    input_ids=ids,
                    attention_mask=attention,
                    max_new_tokens=sampling.max_new_tokens,
                    do_sample=not greedy,
                    **(
                        {}
                        if greedy
                        else {"temperature": sampling.temperature, "top_k": sampling.top_k, "top_p": sampling.top_p}
                    ),
                    pad_token_id=pad,
                    eos_token_id=stops,
                    output_logits=sampling.logprobs,
                    return_dict_in_generate=True,
                )
            tokens = result.sequences[:, width:]
            logprobs = None
            if sampling.logprobs:  # raw logits per step -> the chosen token's log-probability
                steps = torch.stack(result.logits, dim=1).float().log_softmax(-1)
                logprobs = steps.gather(-1, tokens[:, : steps.shape[1], None]).squeeze(-1).tolist()
            for row, tokens_row in enumerate(tokens.tolist()):
                # after the first stop token there is only padding (pad may equal a stop token: cut, never filter)
                end = next((i + 1 for i, token in enumerate(tokens_row) if token in stops), len(tokens_row))
                out.append(finish(self.tokenizer, tokens_row[:end], logprobs[row][:end] if logprobs else None, stops))
            if shown:
                shown.advance(len(chunk))
        if shown:
            shown.close()
        return out

    def close(self) -> None:
        self.model = None


def backend_of(experiment: Experiment, override: GenerationBackend | None = None) -> str:
    """The backend a stage samples with here: the stage's override, else generation.backend; auto = vLLM where it
    is installed."""
    from yulan.runtime.packages import installed

    chosen = override or experiment.generation.backend
    if chosen == "auto":
        return "vllm" if installed("vllm") else "transformers"
    return chosen


def open_generator(experiment: Experiment, path: str, backend: str, tokenizer=None) -> Generator:
    """A generator for the checkpoint at `path`; close() it when the stage part ends."""
    from yulan.runtime import models

    tokenizer = tokenizer or models.load_tokenizer(path, experiment.model.chat_template)
    if backend == "vllm":
        from yulan.runtime.vllm_engine import VllmGenerator

        return VllmGenerator(
            path, tokenizer, experiment.generation.vllm, experiment.seed, experiment.model.context_length
        )
    model = models.load_causal_lm(path, models.inference_dtype())
    return TransformersGenerator(model, tokenizer, experiment.generation.transformers_batch_size)
