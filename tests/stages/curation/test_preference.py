"""Preference pairs, PPO prompt selection and complexity selection."""

import json

import pytest

from tests.conftest import run
from yulan.compose import load
from yulan.schema.curation import ComplexityConfig
from yulan.stages.ppo_prompts import select
from yulan.stages.preference import pair_for

MATH = {
    "id": "m1",
    "prompt": "Ben has 3 apples and buys 4 more. How many now?",
    "answer": "7",
    "solution": "3 + 4 = 7. The answer is 7.",
}
OPEN = {"id": "o1", "prompt": "Why is the sky blue?"}


def test_verifiable_questions_pair_correct_against_incorrect():
    completions = ["3 + 4 = 7. The answer is 7.", "The answer is 8.", "It is 12.", "\\boxed{7}"]
    pair, stats = pair_for(MATH, completions, scores=[0.1, 5.0, 2.0, 0.3], min_margin=1.0)
    assert pair["chosen"][0]["content"] == "\\boxed{7}"  # the best-scored correct answer
    assert pair["rejected"][0]["content"] == "It is 12."  # the worst-scored incorrect one
    assert pair["source"] == "on_policy/verified" and stats["pass_rate"] == 0.5
    assert pair["prompt"] == [{"role": "user", "content": MATH["prompt"]}]


def test_no_correct_sample_uses_the_reference_solution_and_all_correct_gives_no_pair():
    pair, stats = pair_for(MATH, ["The answer is 8.", "The answer is 9."], [0.0, 1.0], 1.0)
    assert pair["chosen"][0]["content"] == MATH["solution"] and stats["pass_rate"] == 0.0
    pair, stats = pair_for(MATH, ["The answer is 7.", "7"], [0.0, 1.0], 1.0)
    assert pair is None and stats["pass_rate"] == 1.0
    pair, _ = pair_for({**MATH, "solution": None}, ["The answer is 8."] * 2, [0.0, 1.0], 1.0)
    assert pair is None


def test_other_questions_pair_highest_against_lowest_score_with_a_margin():
    pair, stats = pair_for(OPEN, ["a", "b", "c"], [0.5, 3.0, -1.0], min_margin=1.0)
    assert (pair["chosen"][0]["content"], pair["rejected"][0]["content"]) == ("b", "c")
    assert stats["mean_reward"] == pytest.approx(2.5 / 3) and "pass_rate" not in stats
    assert pair_for(OPEN, ["a", "b"], [0.5, 0.9], min_margin=1.0)[0] is None


def test_ppo_prompts_are_the_hardest_by_the_configured_signal(tmp_path):
    stats = [
        {"id": "easy", "prompt": "e", "mean_reward": 3.0, "pass_rate": 1.0},
        {"id": "hard", "prompt": "h", "mean_reward": 1.0, "pass_rate": 0.0},
        {"id": "open", "prompt": "o", "mean_reward": -2.0},
        {"id": "mid", "prompt": [{"role": "user", "content": "m"}], "mean_reward": 2.0, "pass_rate": 0.5},
    ]
    source = tmp_path / "stats.jsonl"
    source.write_text("".join(json.dumps(s) + "\n" for s in stats))
    base = [
        "experiment=smoke",
        "stages=[ppo]",
        "ppo.actor.init_from=tiny:policy",
        f"ppo.prompts.source={source}",
        "ppo.prompts.count=4",
        "ppo.rollout_batch_size=4",
        f"run_dir={tmp_path}",
    ]
    by_reward = [json.loads(l)["id"] for l in select(load(base), str(tmp_path / "a")).read_text().splitlines()]
    assert by_reward == ["open", "hard", "mid", "easy"]
    by_pass = (
        select(load(base + ["ppo.prompts.difficulty=lowest_pass_rate"]), str(tmp_path / "b")).read_text().splitlines()
    )
    records = [json.loads(line) for line in by_pass]
    assert [r["id"] for r in records] == ["hard", "mid", "easy", "open"]
    assert records[1] == {
        "id": "mid",
        "prompt": [{"role": "user", "content": "m"}],
        "label": json.dumps({"messages": [{"role": "user", "content": "m"}]}),
    }


def test_complexity_drops_the_hardest_fraction(tmp_path):
    pytest.importorskip("torch")
    from yulan.runtime import tiny
    from yulan.stages.curation import complexity

    model = tiny.resolve("tiny:policy", 4096, 1024)
    samples = [
        {
            "id": str(i),
            "category": "general_en",
            "messages": [
                {"role": "user", "content": "Say something."},
                {
                    "role": "assistant",
                    "content": "ok"
                    if i < 9
                    else "A much longer and far less predictable answer with many words, "
                    "numbers like 48213 and 99017, and symbols #@%.",
                },
            ],
        }
        for i in range(10)
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(s) + "\n" for s in samples))
    report = complexity.run(source, tmp_path / "out.jsonl", ComplexityConfig(discard_hardest_fraction=0.1), 0, model)
    assert report == {
        "input": 10,
        "kept": 9,
        "dropped": {"hardest_fraction": 1},
        "threshold": report["threshold"],
        "scored": 2,
        "bad_records": 0,
    }  # nine identical samples are scored once
    dropped = [json.loads(l) for l in (tmp_path / "out.dropped.jsonl").read_text().splitlines()]
    assert [d["id"] for d in dropped] == ["9"]  # the long response has by far the largest summed NLL
    kept = [json.loads(l) for l in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert all(k["complexity"] < dropped[0]["complexity"] for k in kept)
    # read a few records at a time: the same decisions and scores
    chunked = complexity.run(
        source, tmp_path / "chunked.jsonl", ComplexityConfig(discard_hardest_fraction=0.1), 0, model, chunk_records=3
    )
    assert chunked == report
    assert (tmp_path / "chunked.jsonl").read_text() == (tmp_path / "out.jsonl").read_text()
    again = complexity.run(source, tmp_path / "out.jsonl", ComplexityConfig(discard_hardest_fraction=0.1), 0, model)
    assert again["scored"] == 0 and again["kept"] == 9  # all from the cache


def test_ppo_prompts_runs_standalone_on_prompt_statistics(tmp_path):
    stats = tmp_path / "prompt_stats.jsonl"
    stats.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                {"id": "easy", "prompt": "What is 2+2?", "mean_reward": 0.9, "pass_rate": 1.0},
                {"id": "hard", "prompt": "Prove it.", "mean_reward": 0.5, "pass_rate": 0.0},
                {"id": "open", "prompt": "Write a poem.", "mean_reward": -0.2},
            ]
        )
    )
    result = run(
        "-m",
        "yulan.cli",
        "curate",
        "ppo_prompts",
        "--input",
        str(stats),
        "--output",
        str(tmp_path / "p.jsonl"),
        "count=2",
        "difficulty=lowest_pass_rate",
    )
    assert result.returncode == 0, result.stderr
    assert [json.loads(l)["id"] for l in (tmp_path / "p.jsonl").read_text().splitlines()] == ["hard", "easy"]
    bad = run(
        "-m",
        "yulan.cli",
        "curate",
        "ppo_prompts",
        "--input",
        str(stats),
        "--output",
        str(tmp_path / "q.jsonl"),
        "difficulty=hardest",
    )
    assert bad.returncode == 1 and "ppo.prompts.difficulty" in bad.stderr and not (tmp_path / "q.jsonl").exists()
