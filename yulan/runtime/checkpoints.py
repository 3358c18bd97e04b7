"""Checkpoints for an identical continuation, the checkpoint-or-stop decision, and the final stage output."""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import Any

import torch

from yulan.runtime.lifecycle import stop_requested
from yulan.runtime.models import device

log = logging.getLogger(__name__)


class Checkpoints:
    """`job_dir/checkpoints/step-N/`: weights of every trained model, the states of the optimizers, schedulers and
    loss scalers, the step (which fixes the data position, since data order depends only on seed and epoch) and all
    RNG states. A checkpoint becomes visible only once complete (written under a temporary name, then renamed)."""

    def __init__(self, job_dir: str):
        self.root = Path(job_dir) / "checkpoints"

    def latest(self) -> Path | None:
        steps = sorted(self.root.glob("step-*[0-9]"), key=lambda p: int(p.name.split("-")[1]))
        return steps[-1] if steps else None

    def save(self, step: int, models: dict[str, Any], states: dict[str, Any], extra: dict | None = None) -> Path:
        """`states`: objects with state_dict() / load_state_dict() (optimizers, schedulers, scalers)."""
        final = self.root / f"step-{step}"
        building = self.root / f"step-{step}.partial"
        shutil.rmtree(building, ignore_errors=True)  # left by a job killed while writing
        building.mkdir(parents=True)
        for name, model in models.items():
            torch.save(model.state_dict(), building / f"{name}.pt")
        torch.save(
            {
                "step": step,
                "states": {name: obj.state_dict() for name, obj in states.items()},
                "rng": {
                    "torch": torch.get_rng_state(),
                    "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                },
                "extra": extra or {},
            },
            building / "state.pt",
        )
        building.rename(final)
        return final

    def restore(self, models: dict[str, Any], states: dict[str, Any]) -> tuple[int, dict]:
        """Loads the latest checkpoint into the given objects; returns (step, extra), or (0, {}) without one."""
        path = self.latest()
        if path is None:
            return 0, {}
        for name, model in models.items():
            model.load_state_dict(torch.load(path / f"{name}.pt", map_location=device()))
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
        for name, obj in states.items():
            obj.load_state_dict(state["states"][name])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        if state["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        log.info(f"resumed from {path} (step {state['step']})")
        return state["step"], state["extra"]


def save_or_stop(
    checkpoints: Checkpoints, step: int, total: int, every: int, models: dict, states: dict, extra: dict | None = None
) -> bool:
    """The periodic checkpoint, or the one a stop request (preemption, time limit) asks for. True: stop now, the
    job is requeued and resumes from this checkpoint."""
    stopping = stop_requested() and step < total
    if stopping or (step % every == 0 and step < total):
        checkpoints.save(step, models, states, extra)
    return stopping


def save_final(model, tokenizer, path: str | Path) -> None:
    """The stage output later stages load: a plain transformers directory, written then renamed into place."""
    path = Path(path)
    building = path.with_name(path.name + ".partial")
    shutil.rmtree(building, ignore_errors=True)
    model.save_pretrained(building)
    tokenizer.save_pretrained(building)
    if path.exists():
        shutil.rmtree(path)
    building.rename(path)


def merge_adapter(base: str, adapters: str | Path, output: str | Path, dtype: torch.dtype) -> None:
    """A full model at `output`: the base with the low-rank adapters saved in `adapters` (peft's layout, as OpenRLHF
    writes them) merged into its weights, what later stages and the evaluation load; the tokenizer is the adapters'
    directory's (the stage saved it there), else the base's."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapters = Path(adapters)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    merged = PeftModel.from_pretrained(model, str(adapters)).merge_and_unload()
    has_tokenizer = (adapters / "tokenizer_config.json").exists()
    save_final(merged, AutoTokenizer.from_pretrained(str(adapters) if has_tokenizer else base), output)
