"""The common case composes without Hydra (a third of a cold launch): it must give exactly what Hydra gives, and
hand everything else to Hydra."""

import json

import pytest

from yulan import compose

SHIPPED = sorted(path.stem for path in (compose.SHIPPED_EXPERIMENTS / "experiment").glob("*.yaml"))
OVERRIDES = [
    [],
    ["model=tiny", "seed=7"],
    ["cluster=local", "launcher=slurm", "dry_run=true", "ppo.kl.target=0.1", "sft.learning_rate=2e-5"],
    ["reward_model=tiny", "run_root=/tmp/x", "name=other", "curation.shards=3", "tracking.mode=disabled"],
    ["cluster.env.MY_VARIABLE=1", "eval.backend=transformers", "ppo.reward.clip_range.0=-5"],
]


def both(overrides: list[str]) -> tuple:
    plain = compose._plain_composition(overrides)
    assert plain is not None, overrides
    compose.check_overrides(overrides)
    return plain, compose._hydra_config(overrides)


@pytest.mark.parametrize("experiment", SHIPPED)
@pytest.mark.parametrize("overrides", OVERRIDES, ids=lambda o: " ".join(o) or "none")
def test_every_shipped_experiment_composes_as_hydra_composes_it(experiment, overrides):
    (tree, choices), (hydra_tree, hydra_choices) = both([f"experiment={experiment}", *overrides])
    assert choices == hydra_choices
    assert json.dumps(tree, sort_keys=True) == json.dumps(hydra_tree, sort_keys=True)


def test_includes_self_placement_and_group_overrides_as_hydra_orders_them(tmp_path, monkeypatch):
    tree = tmp_path / "mine"
    (tree / "experiment").mkdir(parents=True)
    (tree / "model").mkdir()
    (tree / "model" / "small.yaml").write_text("name_or_path: tiny:policy\ncontext_length: 512\nvocab_size: 4096\n")
    (tree / "experiment" / "base.yaml").write_text(
        "# @package _global_\ndefaults:\n  - _self_\n  - ppo_yulan\n  - override /model: small\nseed: 1\n"
        "ppo:\n  gamma: 0.5\n"
    )
    (tree / "experiment" / "top.yaml").write_text(
        "# @package _global_\ndefaults:\n  - _self_\n  - base\nseed: 2\nppo:\n  lambd: 0.9\n  num_episodes: 3\n"
    )
    (tree / "experiment" / "last.yaml").write_text(
        "# @package _global_\ndefaults:\n  - base\nseed: 3\nmodel:\n  context_length: 256\nppo:\n  kl: {target: 1e-2}\n"
    )
    monkeypatch.setenv("YULAN_EXPERIMENTS", str(tree))
    for overrides in (["experiment=top"], ["experiment=last"], ["experiment=last", "model=tiny"]):
        (plain, choices), (hydra_tree, hydra_choices) = both(overrides)
        assert choices == hydra_choices and json.dumps(plain, sort_keys=True) == json.dumps(hydra_tree, sort_keys=True)
    (tree / "experiment" / "misordered.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: small\n  - ppo_yulan\n"
    )
    assert compose._plain_composition(["experiment=misordered"]) is None  # Hydra refuses it, and says why
    last, _ = compose._plain_composition(["experiment=last"])
    assert last["seed"] == 3 and last["ppo"]["kl"]["target"] == 0.01  # `1e-2` is a float, as Hydra reads it


@pytest.mark.parametrize(
    "overrides",
    [
        ["experiment=smoke", "+extra=1"],  # Hydra's own operators
        ["experiment=smoke", "~seed"],
        ["experiment=smoke", "seed=1,2"],  # a sweep
        ["experiment=smoke", "tracking.group='a b'"],  # quoting
        ["experiment=smoke", "run_root=${oc.env:HOME}"],  # an interpolation
        ["experiment=smoke", "ppo.reward.clip_range=[-5,5]"],  # a list
        ["experiment=smoke", "seed=inf"],  # values where the grammars could part
        ["experiment=smoke", "seed=1_000"],
        ["experiment=nosuch"],  # errors are Hydra's path's to name
        ["experiment=smoke", "ppo.no_such_key=1"],
    ],
)
def test_anything_else_is_left_to_hydra(overrides):
    assert compose._plain_composition(overrides) is None


def test_a_cold_launch_does_not_import_hydra(tmp_path):
    from tests.conftest import run

    code = (
        "import io, contextlib, sys\n"
        "from yulan.cli import launch\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert launch.main(['experiment=ppo_yulan', 'dry_run=true']) == 0\n"
        "print(sorted(m for m in ('hydra',) if m in sys.modules))\n"
    )
    import os

    result = run("-c", code, env=dict(os.environ, YULAN_COMPOSE_CACHE="0"))
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr[-2000:]


def test_list_items_are_set_and_no_composition_changes_the_next():
    """Both paths set a list item (`clip_range.0`) on the whole tree, and copy what they change: the schema's
    defaults are shared between the compositions of one process (a sweep, validate --all)."""
    default = compose.schema_defaults()["ppo"]["reward"]["clip_range"]
    for overrides in (["ppo.reward.clip_range.0=-5"], ["ppo.reward.clip_range.0=-5", "+cluster.env.X=a"]):
        composed = compose._compose_with_hydra(["experiment=ppo_yulan", *overrides])
        assert composed.config["ppo"]["reward"]["clip_range"] == [-5, default[1]]
    assert compose._compose_with_hydra(["experiment=ppo_yulan"]).config["ppo"]["reward"]["clip_range"] == default
    assert compose.schema_defaults()["ppo"]["reward"]["clip_range"] == default
