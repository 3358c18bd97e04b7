"""The README's main command: the whole pipeline on the tiny model, on CPU, through launch.py."""

import json

import pytest

from tests.conftest import render_in_browser, run

pytest.importorskip("torch")


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_smoke_pipeline_runs_end_to_end_and_each_stage_feeds_the_next(tmp_path):
    result = run("launch.py", "experiment=smoke", f"run_root={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "smoke"
    plan = json.loads((run_dir / "plan.json").read_text())
    jobs = {job["stage"]: job for job in plan["jobs"]}
    assert list(jobs) == ["curation", "sft", "preference", "dpo", "ppo", "eval"]

    curated = lines(run_dir / "curation" / "data" / "sft.jsonl")
    report = json.loads((run_dir / "curation" / "report.json").read_text())["steps"]
    assert report["dedup"]["dropped"] == {"exact_duplicate": 5, "near_duplicate": 4}
    assert (
        sum(report["heuristics"]["dropped"].values()) >= 5 and report["complexity"]["dropped"]["hardest_fraction"] >= 1
    )
    assert {c: sum(s["category"] == c for s in curated) for c in ("general_en", "general_zh", "math", "code")} == {
        "general_en": 39,
        "general_zh": 36,
        "math": 22,
        "code": 3,
    }

    assert jobs["sft"]["inputs"]["sft.data"] == jobs["curation"]["outputs"]["curation"]
    assert (run_dir / "sft" / "model" / "model.safetensors").exists()
    sft_metrics = lines(run_dir / "sft" / "metrics.jsonl")
    assert len(sft_metrics) == 13  # 100 samples / global batch 8, one epoch
    assert sft_metrics[-1]["sft/loss"] < sft_metrics[0]["sft/loss"]

    assert jobs["preference"]["inputs"]["preference.policy"] == jobs["sft"]["outputs"]["sft"]
    pairs = lines(run_dir / "preference" / "data" / "pairs.jsonl")
    assert len(pairs) == 32 and all(p["chosen"] != p["rejected"] for p in pairs)
    assert {p["source"] for p in pairs} == {"on_policy/verified", "on_policy/scored"}

    assert jobs["dpo"]["inputs"] == {
        "dpo.init_from": jobs["sft"]["outputs"]["sft"],
        "dpo.data": jobs["preference"]["outputs"]["preference"],
    }
    assert (run_dir / "dpo" / "model" / "model.safetensors").exists()

    assert jobs["ppo"]["inputs"]["ppo.actor.init_from"] == jobs["dpo"]["outputs"]["dpo"]
    prompts = lines(run_dir / "ppo" / "data" / "prompts.jsonl")
    stats = {s["id"]: s for s in lines(run_dir / "preference" / "data" / "prompt_stats.jsonl")}
    assert len(prompts) == 16 and max(stats[p["id"]]["mean_reward"] for p in prompts) <= min(
        s["mean_reward"] for i, s in stats.items() if i not in {p["id"] for p in prompts}
    )
    ppo_metrics = lines(run_dir / "ppo" / "metrics.jsonl")
    assert len(ppo_metrics) == 4 and ppo_metrics[0]["ppo/actor_frozen"] == 1.0
    assert (run_dir / "ppo" / "model" / "model.safetensors").exists()

    table = (run_dir / "eval" / "results" / "table.md").read_text()
    assert "| title | sft | dpo | ppo | YuLan-Mini-Instruct |" in table and "| GSM8K (0 shot, CoT) |" in table
    assert (run_dir / "eval" / "results" / "table.png").exists()
    assert list((run_dir / "sft" / "wandb").glob("offline-run-*"))  # tracked offline
    health = ppo_metrics[-1]
    assert (
        0 <= health["health/truncation_rate"] <= 1
        and health["health/response_length_p10"] <= health["health/response_length_p90"]
    )

    page = run("-m", "yulan.cli", "report", str(run_dir))
    assert page.returncode == 0, page.stderr
    html = (run_dir / "report.html").read_text()
    for section in (
        "Stages",
        "Training curves: sft",
        "Training curves: dpo",
        "Training curves: ppo",
        "Curation",
        "Category mix against its targets",
        "Evaluation (beside the report's numbers)",
        "YuLan-Mini-Instruct",
    ):
        assert section in html, section
    assert "http://" not in html and "https://" not in html  # self-contained: nothing to fetch
    shown = render_in_browser(run_dir / "report.html", tmp_path / "report.png")
    assert shown["errors"] == [], shown["errors"]
    assert [i["alt"] for i in shown["images"]] == [
        "sft training curves",
        "dpo training curves",
        "ppo training curves",
        "curation funnel: samples in and kept per step",
        "evaluation table",
    ]
    assert all(i["complete"] and i["width"] > 0 for i in shown["images"]), shown["images"]

    again = run("launch.py", "experiment=smoke", f"run_root={tmp_path}", "launcher.on_existing_run=resume")
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stderr.count("already done") == 6  # a resumed run redoes nothing that finished
