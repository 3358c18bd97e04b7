"""The category mix: targets met reproducibly, shortfalls reported, everything else dropped with a reason."""

import json

import pytest

from tests.conftest import run

COUNTS = {"general_en": 39, "general_zh": 36, "math": 22, "code": 3}


def corpus(path, available):
    lines = []
    for category, count in available.items():
        lines += [
            {"id": f"{category}-{i}", "category": category, "messages": [{"role": "user", "content": f"q{i}"}]}
            for i in range(count)
        ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def mix(tmp_path, *settings, seed="42", name="out.jsonl"):
    result = run(
        "-m",
        "yulan.cli",
        "curate",
        "mix",
        "--input",
        str(tmp_path / "in.jsonl"),
        "--output",
        str(tmp_path / name),
        "--seed",
        seed,
        *settings,
    )
    return result


def counts(settings=COUNTS):
    return [f"categories.{category}.count={count}" for category, count in settings.items()]


def kept_ids(path):
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_targets_are_met_reproducibly(tmp_path):
    corpus(tmp_path / "in.jsonl", {"general_en": 100, "general_zh": 100, "math": 50, "code": 10, "poetry": 5})
    first = mix(tmp_path, *counts())
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert {c: row["selected"] for c, row in report["by_category"].items()} == COUNTS
    assert report["kept"] == 100 and report["short"] == [] and report["not_in_mix"] == {"poetry": 5}
    again = mix(tmp_path, *counts(), name="again.jsonl")
    assert again.returncode == 0, again.stderr
    assert kept_ids(tmp_path / "out.jsonl") == kept_ids(tmp_path / "again.jsonl")
    other_seed = mix(tmp_path, *counts(), seed="7", name="other.jsonl")
    assert other_seed.returncode == 0 and kept_ids(tmp_path / "other.jsonl") != kept_ids(tmp_path / "out.jsonl")
    dropped = [
        json.loads(line)["dropped"]["reason"] for line in (tmp_path / "out.dropped.jsonl").read_text().splitlines()
    ]
    assert dropped.count("category_not_in_mix") == 5 and dropped.count("over_target") == 160


def test_short_category_keeps_everything_and_is_reported(tmp_path):
    corpus(tmp_path / "in.jsonl", {"general_en": 100, "general_zh": 100, "math": 50, "code": 1})
    report = json.loads(mix(tmp_path, *counts()).stdout)
    assert report["short"] == ["code"]
    assert report["by_category"]["code"] == {
        "target": 3,
        "available": 1,
        "selected": 1,
        "short_by": 2,
        "target_ratio": 0.03,
        "ratio": round(1 / 98, 4),
    }


def test_zero_count_leaves_a_category_out(tmp_path):
    corpus(tmp_path / "in.jsonl", {"general_en": 10, "code": 10})
    settings = [
        "categories.general_en.count=10",
        "categories.general_en.ratio=1.0",
        "categories.general_zh.count=0",
        "categories.general_zh.ratio=0",
        "categories.math.count=0",
        "categories.math.ratio=0",
        "categories.code.count=0",
        "categories.code.ratio=0",
    ]
    result = mix(tmp_path, *settings)
    assert result.returncode == 0, result.stderr
    assert all(i.startswith("general_en") for i in kept_ids(tmp_path / "out.jsonl"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["categories.code.count=900"], "curation.mix.categories.general_zh.ratio = 0.36"),
        (["categories.code.count=-1"], "greater than or equal to 0"),
        (["categories.code.ratio=[1]"], "valid number"),
        (["ratio_tolerance=0.5"], "less than or equal to 0.1"),
    ],
)
def test_bad_mix_settings_write_nothing(tmp_path, settings, message):
    corpus(tmp_path / "in.jsonl", {"general_en": 3})
    result = mix(tmp_path, *settings)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
