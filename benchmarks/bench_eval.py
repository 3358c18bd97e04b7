"""Benchmark: multiple-choice scoring (ARC layout) natively next to lm-evaluation-harness, same model, same data.

    python benchmarks/bench_eval.py [--questions 400] [--model tiny:policy | PATH]

Prints wall time and log-likelihood requests per second of each (model loading included, as a user waits for it),
and the largest difference between their per-choice log-likelihoods.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from yulan.runtime import models, tiny
from yulan.schema.evaluation import Benchmark
from yulan.stages import tasks
from yulan.stages.evaluation import choice, harness

WORDS = (
    "energy",
    "water",
    "plant",
    "light",
    "rock",
    "heat",
    "sound",
    "magnet",
    "cell",
    "planet",
    "force",
    "gas",
    "liquid",
    "solid",
    "motion",
    "friction",
    "gravity",
    "orbit",
    "circuit",
    "mineral",
    "weather",
    "cloud",
)


def arc_file(path: Path, count: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w") as sink:
        for i in range(count):
            question = "Which " + " ".join(rng.choices(WORDS, k=rng.randint(6, 30))) + "?"
            choices = [" ".join(rng.choices(WORDS, k=rng.randint(1, 6))) for _ in range(4)]
            sink.write(
                json.dumps(
                    {
                        "id": f"q{i}",
                        "question": question,
                        "answerKey": rng.choice("ABCD"),
                        "choices": {"text": choices, "label": list("ABCD")},
                    }
                )
                + "\n"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=400)
    parser.add_argument("--model", default="tiny:policy")
    args = parser.parse_args()
    path = tiny.resolve(args.model, 4096, 1024)
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "arc.jsonl"
        arc_file(data, args.questions)
        settings = dict(
            title="ARC",
            skill="Reasoning",
            num_fewshot=0,
            chain_of_thought=False,
            metric="acc_norm",
            data_path=str(data),
        )
        requests = 4 * args.questions

        start = time.perf_counter()
        model, tokenizer = models.load_causal_lm(path, models.inference_dtype()), models.load_tokenizer(path)
        items = tasks.load(Benchmark(harness="native", task="arc", **settings))
        ours = choice.loglikelihoods(model, tokenizer, choice.requests_of(items), 1024)
        native = choice.score(items, ours)
        native_s = time.perf_counter() - start

        start = time.perf_counter()
        theirs_metrics = harness.run_lm_eval(
            Benchmark(harness="lm_eval", task="arc_challenge", **settings),
            path,
            "transformers",
            1024,
            Path(scratch) / "lm_eval",
        )
        lm_eval_s = time.perf_counter() - start
        samples = [
            json.loads(line) for line in (Path(scratch) / "lm_eval" / "arc_challenge.lm_eval.samples.jsonl").open()
        ]
        by_id = {s["doc"]["id"]: [float(r[0]) for r in s["filtered_resps"]] for s in samples}
        theirs = [ll for item in items for ll in by_id[item["id"]]]

    print(
        f"{args.questions} questions, {requests} log-likelihood requests, model {args.model}, device {models.device()}"
    )
    print(f"{'scorer':<26}{'wall s':>9}{'requests/s':>12}{'acc':>8}{'acc_norm':>10}")
    for name, seconds, metrics in (
        ("native (this project)", native_s, native),
        ("lm-evaluation-harness", lm_eval_s, theirs_metrics),
    ):
        print(f"{name:<26}{seconds:>9.2f}{requests / seconds:>12.0f}{metrics['acc']:>8.3f}{metrics['acc_norm']:>10.3f}")
    print(f"largest |log-likelihood difference|: {max(abs(a - b) for a, b in zip(ours, theirs)):.2e}")


if __name__ == "__main__":
    main()
