"""`yulan report` and `yulan status` on what a crashed, foreign or hostile run leaves behind: every line they cannot
use is skipped and counted, on the page and on stderr, and every value that reaches the page is text, never markup
(checked in a real browser)."""

import json

from tests.conftest import render_in_browser, run

# markup through text, through attributes (both quotes), a script, and TeX that matplotlib would try to parse
MARK = """<b class="pwn">x</b><img src=x onerror="window.pwned=1">'"><script>window.pwned=2</script>&amp;"""
TEX = r"$\notacommand{$"


def lines(path, *rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(row if isinstance(row, bytes) else (json.dumps(row) + "\n").encode() for row in rows))


def hostile_run(run_dir):
    """A run directory whose every file a page shows holds markup, wrong types and corrupt lines."""
    stages = ["curation", "sft", "ppo", "eval"]
    lines(run_dir / "config.json", {"name": MARK, "stages": stages, "launcher": {}, "model": {"name": MARK}})
    lines(
        run_dir / "manifest.json",
        {"experiment": MARK, "overrides": [f"name={MARK}", 5], "git": "not an object", "created": MARK, "host": None},
    )
    jobs = [{"stage": "sft", "engine": MARK}, "junk", {"stage": MARK}, {"stage": "../../etc"}]
    lines(run_dir / "plan.json", {"jobs": jobs + [{"stage": s} for s in stages]})
    lines(
        run_dir / "sft" / "metrics.jsonl",
        {"step": 1, "sft/loss": 2.0, "sft/tokens_per_s": 100},
        {"step": 2, "sft/loss": 1.5, "sft/tokens_per_s": None},
        [1, 2],  # skipped: not an object
        {"sft/loss": 3.0},  # skipped: no step
        b"\xff\xfe not UTF-8\n",  # skipped
        {"step": "three", "sft/loss": 1.0},  # skipped: a step that is not a number
        {"step": 3, "sft/loss": "NaN", "sft/tokens_per_s": True},  # kept; its values are not numbers
        b'{"step": 4, "sft/lo',  # still being written: left for the next read, not counted
    )
    lines(run_dir / "ppo" / "metrics.jsonl", {"step": 1, "ppo/reward": 0.5}, {"step": 2, "ppo/reward": None})
    lines(
        run_dir / "ppo" / "alerts.jsonl",
        {"rollout": 2, "rule": MARK + TEX, "action": "warn", "message": MARK},
        "an alert that is a string",  # skipped
        {"rollout": 1, "rule": "r", "action": '"><b class="pwn">x</b>', "message": "m"},  # skipped: no such action
        {"rule": "only a rule"},  # skipped
    )
    steps = {
        MARK + TEX: {"input": 10, "kept": 5, "dropped": {MARK: 5}},
        "not an object": 3,
        "mix": {"input": 5, "kept": None, "dropped": [1], "by_category": {MARK: {"target": 1, "selected": 1}, "x": 3}},
    }
    lines(run_dir / "curation" / "report.json", {"steps": steps})
    row = {"benchmark": MARK, "title": MARK, "YuLan-Mini-Instruct": 1.0, MARK: 0.5, "step-10": None}
    lines(run_dir / "eval" / "results" / "table.json", {"rows": [row, "junk", {"benchmark": "b", "step-10": "x"}]})


def test_a_hostile_run_is_shown_as_text_with_its_unusable_lines_counted(tmp_path):
    run_dir = tmp_path / "run"
    hostile_run(run_dir)
    result = run("-m", "yulan.cli", "report", str(run_dir))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "skipped 7 line(s) that could not be used" in result.stderr
    assert f"{run_dir}/sft/metrics.jsonl (4)" in result.stderr and f"{run_dir}/ppo/alerts.jsonl (3)" in result.stderr
    page = (run_dir / "report.html").read_text()
    assert "Skipped 7 line(s) that could not be used" in page
    assert 'class="pwn"' not in page and "<script>" not in page and "onerror=" not in page.replace("onerror=&quot;", "")
    shown = render_in_browser(
        run_dir / "report.html",
        tmp_path / "hostile.png",
        probe="return {pwned: window.pwned === undefined ? null : window.pwned, "
        "injected: document.querySelectorAll('.pwn, script, img:not([src^=\"data:\"])').length, "
        "text: document.body.innerText}",
    )
    assert shown["errors"] == [] and shown["probe"]["pwned"] is None and shown["probe"]["injected"] == 0
    assert shown["title"] == f"{MARK}: run report"
    # every field shows the markup as the characters it is: name, overrides, created, engine, alert rule and
    # message, curation step and reason, category, evaluation row and column
    assert shown["probe"]["text"].count(MARK) >= 10, shown["probe"]["text"]
    assert all(image["complete"] and image["width"] > 0 for image in shown["images"])  # charts drawn, TeX as text

    status = run("-m", "yulan.cli", "status", str(run_dir))
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    assert "skipped 3 line(s) that could not be used" in status.stderr and MARK in status.stdout
    assert "WARN" in status.stdout and "sft        started" in status.stdout


def test_report_targets_that_are_not_a_page_file(tmp_path):
    run_dir = tmp_path / "run"
    hostile_run(run_dir)
    (tmp_path / "folder").mkdir()
    for output, words in (
        (tmp_path / "folder", "is a directory; name a file to write (it is never replaced)"),
        (run_dir / "config.json", None),  # a regular file: replaced by the page, as asked
    ):
        result = run("-m", "yulan.cli", "report", str(run_dir), "--output", str(output))
        assert "Traceback" not in result.stderr, result.stderr
        if words:
            assert result.returncode == 1 and words in result.stderr, result.stderr
        else:
            assert result.returncode == 0 and output.read_text().startswith("<!DOCTYPE html>")
    as_file = run("-m", "yulan.cli", "report", str(run_dir / "plan.json"))
    assert as_file.returncode == 1 and "neither a run directory" in as_file.stderr
    streamed = run("-m", "yulan.cli", "report", str(tmp_path / "folder" / ".." / "run"), "--output", "-")
    assert streamed.returncode == 0 and streamed.stdout.startswith("<!DOCTYPE html>")
    assert streamed.stdout.rstrip().endswith("</html>")  # the page only: its path is not printed into it
