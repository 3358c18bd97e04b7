"""Chat tokenisation and batches without a mask of our own: samples are laid end to end in rows with positions
restarting at each sample. That is how transformers recognises packed sequences: flash-attention 2 takes its
varlen path (one row, no padding), and sdpa and eager get a block-causal mask built from the positions, so no
sample attends to another and a packed sample's loss equals its loss alone. Log-probabilities are computed a chunk
of tokens at a time, so memory follows the chunk, not tokens x vocabulary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch.utils.checkpoint import checkpoint

IGNORE = -100
LOGIT_ELEMENTS_PER_CHUNK = 1 << 25  # 32M logits (128 MB in fp32) at a time, whatever the vocabulary


@dataclass
class Tokenized:
    input_ids: list[int]
    labels: list[int]  # IGNORE where no loss is taken

    @property
    def loss_tokens(self) -> int:
        """Tokens that are predicted with loss (the first token is never predicted)."""
        return sum(label != IGNORE for label in self.labels[1:])


def tokenize_chat(tokenizer, messages: list[dict], max_length: int, loss_on: str = "assistant") -> Tokenized:
    """Loss only on assistant turns: their character spans come from rendering growing prefixes of the
    conversation with the model's own template, then token offsets say which tokens fall inside them. The
    newlines a template puts after the last end of turn are not part of the sample (OpenRLHF strips them too)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False).rstrip("\n")
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


@dataclass
class Flat:
    """A micro-batch without attention across samples: `input_ids`, `position_ids` and `labels` of shape (rows,
    width), each row holding samples end to end with positions restarting at each (padding, if any, is one more
    segment with its own positions and no labels). labels[t] is the token position t predicts within its own
    sample. `rows`: the sample lengths of each row."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor
    rows: list[list[int]]

    def to(self, device) -> Flat:
        return Flat(self.input_ids.to(device), self.position_ids.to(device), self.labels.to(device), self.rows)

    @property
    def loss_mask(self) -> torch.Tensor:
        return self.labels != IGNORE

    def per_sample(self, values: torch.Tensor) -> list[torch.Tensor]:
        """(rows, width) -> each sample's slice, in the order the samples were given."""
        return [piece for row, lengths in zip(values, self.rows) for piece in row[: sum(lengths)].split(lengths)]


def one_per_row(samples: Sequence[Tokenized]) -> list[list[Tokenized]]:
    return [[sample] for sample in samples]


def layout(rows: Sequence[Sequence[Tokenized]], model=None) -> Flat:
    """Rows of samples, padded to the widest; or all of them in one row when that costs less. On flash-attention
    one row always does: its varlen path takes packed sequences only at batch size 1 and computes neither padding
    nor attention across samples. sdpa and eager compute attention over a whole row (masked by the block-causal
    mask transformers builds from the positions): one row of T tokens costs ~T² there, rows of width W cost padding
    instead, so the cheaper of the two is taken (a token's dense layers cost about 6 x hidden of attention width)."""
    merged = [[sample for row in rows for sample in row]]
    if model is not None and len(rows) > 1:
        if str(getattr(model.config, "_attn_implementation", "")).startswith("flash"):
            rows = merged
        else:
            per_token = 6 * model.config.hidden_size
            total = sum(len(s.input_ids) for s in merged[0])
            width = max(sum(len(s.input_ids) for s in row) for row in rows)
            if total * per_token + total**2 < len(rows) * (width * per_token + width**2):
                rows = merged
    width = max(sum(len(s.input_ids) for s in row) for row in rows)
    ids, labels, positions = [], [], []
    for row in rows:
        row_ids, row_labels, row_positions = [], [], []
        for sample in row:
            row_ids += sample.input_ids
            row_labels += sample.labels[1:] + [IGNORE]
            row_positions += range(len(sample.input_ids))
        padding = width - len(row_ids)
        ids.append(row_ids + [0] * padding)
        labels.append(row_labels + [IGNORE] * padding)
        positions.append(row_positions + list(range(padding)))
    return Flat(
        torch.tensor(ids),
        torch.tensor(positions),
        torch.tensor(labels),
        [[len(s.input_ids) for s in row] for row in rows],
    )


def hidden_states(model, flat: Flat) -> torch.Tensor:
    """The last hidden states (rows, width, hidden) of a causal LM or a scorer's backbone."""
    return model.base_model(input_ids=flat.input_ids, position_ids=flat.position_ids, use_cache=False).last_hidden_state


def token_logprobs(model, flat: Flat, temperature: float = 1.0) -> torch.Tensor:
    """log p(label_t | tokens <= t of its sample) at every position (0 where there is no label), (rows, width) fp32,
    under the policy that samples at `temperature` (logits divided by it, as OpenRLHF's actor and reference do).
    The vocabulary projection and log-softmax run a chunk of tokens at a time; with gradients and several chunks,
    each chunk is recomputed in the backward pass instead of keeping its logits."""
    states = hidden_states(model, flat)
    hidden = states.reshape(-1, states.shape[-1])
    head = model.get_output_embeddings()
    config = model.config
    chunk = max(1, LOGIT_ELEMENTS_PER_CHUNK // head.weight.shape[0])
    labels = flat.labels.reshape(-1)
    recompute = torch.is_grad_enabled() and hidden.shape[0] > chunk  # one chunk: keeping its logits costs no more
    pieces = []
    for start in range(0, hidden.shape[0], chunk):
        args = (
            head,
            hidden[start : start + chunk],
            labels[start : start + chunk],
            getattr(config, "logit_scale", None),
            getattr(config, "final_logit_softcapping", None),
            temperature,
        )
        pieces.append(checkpoint(_chunk_logprobs, *args, use_reentrant=False) if recompute else _chunk_logprobs(*args))
    return torch.cat(pieces).reshape(flat.labels.shape)


def _chunk_logprobs(head, hidden, labels, scale, softcap, temperature) -> torch.Tensor:
    logits = head(hidden).float()
    if scale:  # architectures that scale or soft-cap their logits (Cohere, Gemma 2) do it after the projection
        logits = logits * scale
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    if temperature != 1.0:  # after the model's own transforms: what the sampler draws from
        logits = logits / temperature
    picked = logits.gather(-1, labels.clamp(min=0)[:, None]).squeeze(-1) - torch.logsumexp(logits, -1)
    return picked * (labels != IGNORE)
