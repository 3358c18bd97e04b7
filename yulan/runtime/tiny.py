"""The tiny model family, built offline: a byte-level BPE tokenizer trained on the shipped sample data and
random-initialised Llama-architecture models (YuLan-Mini's family), deterministic and cached.

`tiny:<name>` in `model.name_or_path` / `reward_model.name_or_path` resolves here: `tiny:reward` is a reward
model (a value head, like Skywork's), any other name a causal LM.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
# ChatML, as many small instruct models use; the assistant turn ends with <|im_end|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# head_dim 32: the smallest that vLLM's CPU attention serves (same parameter count as 4 heads of 16)
SHAPE = dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "yulan" / "tiny"


def _training_texts() -> list[str]:
    texts = []
    for name in ("sft_samples.jsonl", "preference_prompts.jsonl"):
        for line in (DATA / name).read_text().splitlines():
            record = json.loads(line)
            texts += [m["content"] for m in record.get("messages", [])] + [
                record.get("prompt", ""),
                record.get("solution", ""),
            ]
    return [text for text in texts if text]


def _publish(build_dir: Path, final: Path) -> Path:
    """Concurrent builders (sweep points on one machine) race safely: the first rename wins."""
    try:
        build_dir.rename(final)
    except OSError:
        import shutil

        shutil.rmtree(build_dir, ignore_errors=True)
    return final


def tokenizer_dir(vocab_size: int) -> Path:
    texts = _training_texts()
    key = hashlib.sha256(json.dumps([vocab_size, CHAT_TEMPLATE, texts]).encode()).hexdigest()[:12]
    final = cache_root() / f"bpe-{vocab_size}-{key}"
    if final.exists():
        return final
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        bos_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )
    build = final.with_name(f"{final.name}.build-{os.getpid()}")
    tokenizer.save_pretrained(build)
    return _publish(build, final)


def model_dir(name: str, vocab_size: int, context_length: int) -> Path:
    """`tiny:reward` -> a sequence-scoring model; others -> a causal LM. Weights depend only on the name."""
    tokens = tokenizer_dir(vocab_size)
    seed = zlib.crc32(name.encode())
    shape = hashlib.sha256(json.dumps(SHAPE, sort_keys=True).encode()).hexdigest()[:8]  # a new shape, a new model
    final = (
        cache_root() / f"{name.replace(':', '-')}-{vocab_size}-{context_length}-{tokens.name.rsplit('-', 1)[1]}-{shape}"
    )
    if final.exists():
        return final
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tokens)
    config = LlamaConfig(
        vocab_size=vocab_size,
        max_position_embeddings=context_length,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        num_labels=1,
        **SHAPE,
    )
    torch.manual_seed(seed)
    model = (LlamaForSequenceClassification if name == "tiny:reward" else LlamaForCausalLM)(config)
    build = final.with_name(f"{final.name}.build-{os.getpid()}")
    model.save_pretrained(build)
    tokenizer.save_pretrained(build)
    return _publish(build, final)


def resolve(name_or_path: str, vocab_size: int, context_length: int) -> str:
    """A loadable path or hub id; `tiny:*` names are built (once) into the cache."""
    if name_or_path.startswith("tiny:"):
        return str(model_dir(name_or_path, vocab_size, context_length))
    return name_or_path
