"""The tiny family's cache: a model built with another shape is never reused for this one."""

import json

import pytest

pytest.importorskip("torch")


def test_a_cached_model_of_another_shape_is_not_reused(monkeypatch):
    from yulan.runtime import tiny

    current = tiny.model_dir("tiny:policy", 512, 256)
    assert json.loads((current / "config.json").read_text())["num_attention_heads"] == tiny.SHAPE["num_attention_heads"]
    monkeypatch.setattr(tiny, "SHAPE", dict(tiny.SHAPE, num_attention_heads=4, num_key_value_heads=2))
    other = tiny.model_dir("tiny:policy", 512, 256)
    assert other != current and json.loads((other / "config.json").read_text())["num_attention_heads"] == 4
