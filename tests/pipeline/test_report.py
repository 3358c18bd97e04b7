"""`yulan report`: the page a user opens, rendered in a real headless browser."""

import json
import re

import pytest

from tests.conftest import render_in_browser, run

pytest.importorskip("torch")


@pytest.mark.slow
def test_a_two_point_sweep_side_by_side_with_the_best_marked(tmp_path):
    result = run(
        "launch.py",
        "-m",
        "experiment=smoke",
        "stages=[sft]",
        "sft.data=yulan/data/sft_samples.jsonl",
        "sft.max_steps=4",
        "sft.learning_rate=1e-3,1e-6",
        f"run_root={tmp_path}",
        "tracking.mode=disabled",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "smoke"
    page = run("-m", "yulan.cli", "report", str(sweep))
    assert page.returncode == 0, page.stderr
    html = (sweep / "report.html").read_text()
    losses = [json.loads((sweep / p / "sft" / "metrics.jsonl").read_text().splitlines()[-1])["sft/loss"] for p in "01"]
    best = min((0, 1), key=lambda i: losses[i])
    assert losses[0] < losses[1] and best == 0  # lr 1e-3 learns in 4 steps, 1e-6 does not
    assert re.search(rf'<tr class="best"><td><a href="#point-{best}">{best}</a> ★', html)
    assert "sft.learning_rate=0.001" in html and "sft.learning_rate=1e-06" in html
    assert 'id="point-0"' in html and 'id="point-1"' in html and "Curves side by side" in html
    shown = render_in_browser(sweep / "report.html", tmp_path / "sweep.png")
    assert shown["errors"] == [] and shown["images"] and all(i["complete"] and i["width"] > 0 for i in shown["images"])
    assert shown["title"] == "smoke: sweep report (2 points)"

    # the same point seen while it runs: no DONE yet, a metrics line half written
    point = sweep / "1"
    (point / "sft" / "DONE").unlink()
    with (point / "sft" / "metrics.jsonl").open("a") as sink:
        sink.write('{"step": 5, "sft/lo')
    assert run("-m", "yulan.cli", "report", str(point)).returncode == 0
    running = (point / "report.html").read_text()
    assert '<span class="started">started</span>' in running and "Training curves: sft" in running
    status = run("-m", "yulan.cli", "status", str(sweep))
    assert status.returncode == 0 and "not started: 0  started: 1  done: 1" in status.stdout, status.stdout


def test_a_directory_that_is_no_run_is_refused(tmp_path):
    result = run("-m", "yulan.cli", "report", str(tmp_path))
    assert result.returncode == 1 and "neither a run directory" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "report.html").exists()
