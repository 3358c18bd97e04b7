"""Data files as users have them: benchmark items in the training data, broken records, outputs that would
destroy an input. Every curation step that reads samples is run the way users run it (`yulan curate`)."""

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.conftest import run
from yulan.stages.tasks import read_records
from yulan.stages.tasks.humaneval import data_path as humaneval_path

GOOD = {
    "id": "a",
    "category": "general_en",
    "messages": [
        {"role": "user", "content": "Name three primary colours, please."},
        {"role": "assistant", "content": "Red, yellow and blue are the traditional primary colours."},
    ],
}
# Steps that read curation samples, with settings that keep a good sample.
SAMPLE_STEPS = {
    "dedup": [],
    "decontaminate": [],
    "heuristics": [],
    "mix": ["categories={general_en: {count: 10, ratio: 1.0}}"],
}
BROKEN = {  # content of the second line -> words the message must contain
    "malformed_json": (b'{"id": "b", "messages": [\n', "not valid JSON"),
    "not_an_object": (b'["a", "list"]\n', "a JSON list, expected a JSON object"),
    "messages_wrong_type": (b'{"id": "b", "messages": "hello"}\n', '`messages` is "hello"'),
    "message_without_content": (b'{"id": "b", "messages": [{"role": "user"}]}\n', "messages[0]"),
    "invalid_utf8": (b'{"id": "b", "messages": [{"role": "user", "content": "\xff\xfe"}]}\n', "not valid UTF-8"),
    "truncated_last_line": (b'{"id": "b", "messages": [{"role": "user", "content": "cut', "truncated"),
    # valid JSON, not text: a lone UTF-16 surrogate escape (cut emoji) cannot be encoded or written
    "unpaired_surrogate": (b'{"id": "b", "messages": [{"role": "user", "content": "ok \\ud83d"}]}\n', "\\ud83d"),
}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def curate(step: str, source: Path, output: Path, *settings: str):
    return run("-m", "yulan.cli", "curate", step, "--input", str(source), "--output", str(output), *settings)


def sample(i: int, user: str, assistant: str = "Sure.") -> dict:
    return {
        "id": str(i),
        "category": "general_en",
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
    }


# -- decontamination ------------------------------------------------------------------------------------------
def test_benchmark_items_are_removed_and_name_only_overlaps_kept(tmp_path):
    humaneval = read_records(humaneval_path())
    gsm_like = {
        "id": "q1",
        "question": "A baker sells 24 loaves of bread every morning and 17 more every afternoon; "
        "after a week of this, how many loaves has the baker sold if Sunday is a rest day for the shop?",
        "answer": "He sells 41 a day for 6 days, so 246.",
    }
    items = tmp_path / "private_eval.jsonl"
    items.write_text(json.dumps(gsm_like) + "\n")
    edited = humaneval[2]["prompt"].replace("Given", "For").replace("decomposed", "split")
    samples = [
        sample(0, humaneval[0]["prompt"]),  # verbatim question
        sample(
            1, "Write me something useful.", "Here you go:\n" + humaneval[1]["prompt"] + "\n    pass"
        ),  # in a response
        sample(2, edited),  # lightly edited
        sample(
            3,
            f"Write a Python function {humaneval[0]['entry_point']}(values, limit) that returns the largest "
            "value below the limit, or None when there is none.",
        ),  # only the function's name
        sample(4, gsm_like["question"].replace("24", "25")),  # the user's own file of items
        sample(5, "Explain how photosynthesis works in a few sentences for a ten-year-old who likes plants."),
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(s) + "\n" for s in samples))
    before = digest(source)
    done = curate("decontaminate", source, tmp_path / "out.jsonl", f"files=[{items}]")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [json.loads(l)["id"] for l in (tmp_path / "out.jsonl").read_text().splitlines()] == ["3", "5"]
    dropped = {
        json.loads(l)["id"]: json.loads(l)["dropped"] for l in (tmp_path / "out.dropped.jsonl").read_text().splitlines()
    }
    assert set(dropped) == {"0", "1", "2", "4"}
    assert dropped["1"]["matches"][0]["item"] == "HumanEval/1"
    assert report["dropped"] == {"contaminated": 4}
    row = report["benchmarks"]["humaneval_pass10"]
    assert (row["checked"], row["matched_samples"], row["items_matched"]) == (
        True,
        3,
        ["HumanEval/0", "HumanEval/1", "HumanEval/2"],
    )
    assert row["items"] == 164 and row["examples"][0]["item"] == "HumanEval/0"
    assert report["benchmarks"][f"file:{items}"]["matched_samples"] == 1
    assert report["benchmarks"]["gsm8k_8shot"]["checked"] is False  # no local data: said, not silently passed
    assert "data_path" in report["benchmarks"]["gsm8k_8shot"]["why"]
    assert digest(source) == before
    # flag instead of drop: everything kept, the contaminated samples marked
    done = curate("decontaminate", source, tmp_path / "flagged.jsonl", f"files=[{items}]", "action=flag")
    kept = [json.loads(l) for l in (tmp_path / "flagged.jsonl").read_text().splitlines()]
    assert len(kept) == 6 and sum("contamination" in s for s in kept) == 4


def test_the_eval_table_says_what_training_data_was_decontaminated(tmp_path):
    from yulan.compose import load
    from yulan.stages.evaluation import table
    from yulan.stages.evaluation.stage import decontamination

    humaneval = read_records(humaneval_path())
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(sample(0, humaneval[0]["prompt"])) + "\n" + json.dumps(GOOD) + "\n")
    done = curate("decontaminate", source, tmp_path / "out.jsonl")
    experiment = load(["experiment=smoke", f"run_dir={tmp_path / 'run'}"])
    (tmp_path / "run" / "curation").mkdir(parents=True)
    (tmp_path / "run" / "curation" / "report.json").write_text(
        json.dumps({"steps": {"decontaminate": json.loads(done.stdout)}})
    )
    marks = decontamination(experiment)
    assert marks["humaneval_pass10"] == "sft data (1 matched)" and "gsm8k_0shot_cot" not in marks
    rows = {row["benchmark"]: row for row in table.rows(experiment.eval, {}, marks)}
    assert rows["humaneval_pass10"][table.DECONTAMINATED] == "sft data (1 matched)"
    assert rows["gsm8k_0shot_cot"][table.DECONTAMINATED] == "no"


# -- bad records ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("step", SAMPLE_STEPS)
@pytest.mark.parametrize("broken", BROKEN)
def test_a_bad_record_stops_the_step_naming_file_and_line_and_nothing_is_written(tmp_path, step, broken):
    content, words = BROKEN[broken]
    source = tmp_path / "in.jsonl"
    source.write_bytes(json.dumps(GOOD).encode() + b"\n" + content)
    before = digest(source)
    done = curate(step, source, tmp_path / "out" / "kept.jsonl", *SAMPLE_STEPS[step])
    assert done.returncode == 1
    assert f"{source}:2:" in done.stderr and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not list((tmp_path / "out").iterdir())  # no output, no side file, no partial file
    assert digest(source) == before


@pytest.mark.parametrize("step", SAMPLE_STEPS)
def test_skip_sets_bad_records_aside_with_line_and_reason(tmp_path, step):
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        json.dumps(GOOD).encode()
        + b"\n"
        + BROKEN["not_an_object"][0]
        + b"\n\n"
        + BROKEN["invalid_utf8"][0]
        + json.dumps({**GOOD, "id": "z"}).encode()
        + b"\n"
    )
    done = curate(step, source, tmp_path / "kept.jsonl", "on_bad_record=skip", *SAMPLE_STEPS[step])
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["bad_records"] == 2 and report["input"] == 2
    bad = [json.loads(l) for l in (tmp_path / "kept.bad.jsonl").read_text().splitlines()]
    assert [(b["line"], b["file"]) for b in bad] == [(2, str(source)), (5, str(source))]  # blank lines counted
    assert "expected a JSON object" in bad[0]["reason"] and "UTF-8" in bad[1]["reason"]
    assert json.loads((tmp_path / "kept.report.json").read_text())["bad_records"] == 2


@pytest.mark.parametrize("step", SAMPLE_STEPS)
def test_integers_beyond_64_bits_come_out_exact(tmp_path, step):
    """JSON allows any integer: a step that rewrites a record must not round it into a float."""
    source, kept = tmp_path / "in.jsonl", tmp_path / "kept.jsonl"
    source.write_text(json.dumps({**GOOD, "seed": 2**70 + 1}) + "\n")
    done = curate(step, source, kept, *SAMPLE_STEPS[step])
    assert done.returncode == 0, done.stderr
    assert json.loads(kept.read_text())["seed"] == 2**70 + 1


@pytest.mark.parametrize("step", SAMPLE_STEPS)
@pytest.mark.parametrize("content", [b"", b"\n  \n\n"])
def test_an_empty_input_gives_an_empty_output_and_a_report(tmp_path, step, content):
    source = tmp_path / "in.jsonl"
    source.write_bytes(content)
    done = curate(step, source, tmp_path / "kept.jsonl", *SAMPLE_STEPS[step])
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "kept.jsonl").read_text() == ""
    assert json.loads((tmp_path / "kept.report.json").read_text())["input"] == 0


# -- outputs never destroy an input ---------------------------------------------------------------------------
@pytest.mark.parametrize("step", SAMPLE_STEPS)
def test_an_output_or_side_file_that_is_the_input_is_refused(tmp_path, step):
    data = tmp_path / "d"
    data.mkdir()
    source = data / "kept.dropped.jsonl"  # the step's own .dropped file for --output d/kept.jsonl
    source.write_text(json.dumps(GOOD) + "\n")
    linked = data / "linked.jsonl"
    os.link(source, linked)
    before = digest(source)
    for output in (data / "kept.jsonl", linked, data / "." / "kept.dropped.jsonl"):
        done = curate(step, source, output, *SAMPLE_STEPS[step])
        assert done.returncode == 1 and "the input is never overwritten" in done.stderr, done.stderr
    assert digest(source) == before and sorted(p.name for p in data.iterdir()) == ["kept.dropped.jsonl", "linked.jsonl"]


def test_outputs_that_cannot_be_written_are_named(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(GOOD) + "\n")
    (tmp_path / "plain").write_text("x")
    (tmp_path / "folder").mkdir()
    for output, words in (
        (tmp_path / "plain" / "out.jsonl", "is a file, not a directory"),
        (tmp_path / "folder", "is a directory"),
    ):
        done = curate("heuristics", source, output)
        assert done.returncode == 1 and words in done.stderr and "Traceback" not in done.stderr, done.stderr
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "locked").mkdir(mode=0o500)
        done = curate("heuristics", source, tmp_path / "locked" / "out.jsonl")
        assert done.returncode == 1 and "not writable" in done.stderr


def test_a_failed_step_leaves_an_earlier_output_untouched(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(GOOD) + "\n")
    assert curate("heuristics", source, tmp_path / "kept.jsonl").returncode == 0
    earlier = digest(tmp_path / "kept.jsonl")
    source.write_bytes(source.read_bytes() + BROKEN["malformed_json"][0])
    assert curate("heuristics", source, tmp_path / "kept.jsonl").returncode == 1
    assert digest(tmp_path / "kept.jsonl") == earlier


# -- Parquet and datasets folders -----------------------------------------------------------------------------
def test_parquet_with_the_wrong_columns_and_a_file_that_is_not_parquet_are_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    wrong = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"text": ["same", "same", "same"]}), wrong)
    fake = tmp_path / "fake.parquet"
    fake.write_text(json.dumps(GOOD) + "\n")
    for step in ("dedup", "heuristics"):
        done = curate(step, wrong, tmp_path / "out.jsonl")
        assert done.returncode == 1 and f"{wrong}:1: no `messages`" in done.stderr, done.stderr
        done = curate(step, fake, tmp_path / "out.jsonl")
        assert done.returncode == 1 and "not a Parquet file" in done.stderr, done.stderr
        assert not (tmp_path / "out.jsonl").exists()


def test_a_datasets_folder_is_an_input(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "saved"
    datasets.Dataset.from_list([GOOD, {**GOOD, "id": "b"}]).save_to_disk(str(folder))
    done = curate("dedup", folder, tmp_path / "out.jsonl")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["dropped"] == {"exact_duplicate": 1}


# -- PPO prompts ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "line, words",
    [
        ({"id": "x", "mean_reward": 0.1}, "no `prompt`"),
        ({"id": "x", "prompt": "Add 2 and 2.", "pass_rate": "0.5"}, '`pass_rate` is "0.5"'),
        ({"id": "x", "prompt": "Add 2 and 2.", "mean_reward": None}, "`mean_reward` is null"),
        ({"id": "x", "prompt": {"text": "hi"}}, "`prompt` is"),
    ],
)
def test_ppo_prompts_name_the_bad_record_and_keep_the_earlier_output(tmp_path, line, words):
    source = tmp_path / "stats.jsonl"
    source.write_text(
        json.dumps({"id": "ok", "prompt": "What is 3 + 4?", "mean_reward": 0.2}) + "\n" + json.dumps(line) + "\n"
    )
    output = tmp_path / "prompts.jsonl"
    output.write_text("earlier\n")
    done = curate("ppo_prompts", source, output, "count=1")
    assert done.returncode == 1 and f"{source}:2:" in done.stderr and words in done.stderr, done.stderr
    assert output.read_text() == "earlier\n"
    done = curate("ppo_prompts", source, output, "count=1", "on_bad_record=skip")
    assert done.returncode == 0 and json.loads(done.stdout)["bad_records"] == 1
    assert json.loads(output.read_text())["id"] == "ok"


# -- pipeline inputs are checked before anything is written -----------------------------------------------------
@pytest.mark.parametrize(
    "override, words",
    [
        ("curation.inputs=[/nowhere/raw.jsonl]", "curation.inputs"),
        ("preference.prompts=[/nowhere/prompts.jsonl]", "preference.prompts"),
        ("ppo.prompts.source=/nowhere/prompts.jsonl", "ppo.prompts.source"),
    ],
)
def test_missing_pipeline_inputs_are_refused_before_a_run_directory_exists(tmp_path, override, words):
    done = run("launch.py", "experiment=smoke", f"run_root={tmp_path}/runs", override)
    assert done.returncode != 0 and words in done.stderr and "/nowhere/" in done.stderr, done.stderr
    assert not (tmp_path / "runs").exists()


def test_stage_output_of_an_unknown_experiment_is_refused(tmp_path):
    done = run("launch.py", "experiment=smoke", f"run_root={tmp_path}/runs", "sft.data=${stage_output:smok,curation}")
    assert done.returncode != 0 and "did you mean 'smoke'" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_copies_that_change_only_presentation_are_found(tmp_path):
    """HTML-escaped, tagged, numbered-listing and numbered-code copies of benchmark items: the presentation is
    normalised away on both sides before matching."""
    import html as html_module

    humaneval = read_records(humaneval_path())
    question = (
        "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
        "friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck "
        "egg. How much in dollars does she make every day at the farmers' market?"
    )
    items = tmp_path / "private_eval.jsonl"
    items.write_text(json.dumps({"id": "janet", "question": question}) + "\n")
    sentences = [part.strip() + "." for part in question.split(".") if part.strip()]
    numbered_code = "\n".join(f"{n:>3} | {line}" for n, line in enumerate(humaneval[5]["prompt"].splitlines(), 1))
    samples = [
        sample(0, html_module.escape(question)),  # &#x27; for every apostrophe
        sample(1, "<p>" + "</p><p>".join(html_module.escape(s) for s in sentences) + "</p>"),
        sample(2, html_module.escape(html_module.escape(question))),  # escaped twice: &amp;#x27;
        sample(3, "\n".join(f"{n}. {s}" for n, s in enumerate(sentences, 1))),  # a numbered listing
        sample(4, "Here is the code:\n" + numbered_code),  # numbered code lines
        sample(5, html_module.escape(humaneval[7]["prompt"])),  # &gt; and &quot; in a docstring
        sample(6, "A <b>duck</b> farm: 1. feed the ducks 2. collect the eggs 3. sell them at the market."),
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(s) + "\n" for s in samples))
    done = curate("decontaminate", source, tmp_path / "out.jsonl", f"files=[{items}]")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()] == ["6"]
    report = json.loads(done.stdout)
    assert report["benchmarks"]["humaneval_pass10"]["items_matched"] == ["HumanEval/5", "HumanEval/7"]
    assert report["benchmarks"][f"file:{items}"]["matched_samples"] == 4
