"""Training health: the statistics of every rollout, the rules that warn or stop, alerts, and what `yulan status`
shows, on a real (tiny) PPO run whose reward pays for shortness, as the report's length collapse did."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import REPO, run
from yulan.compose import load
from yulan.rewards.health import Monitor, SharedWatch, health_samples, read_alerts, sample_statistics, stops
from yulan.schema.errors import ConfigError
from yulan.schema.health import SAMPLE_STATISTICS, HealthConfig, HealthRule, key
from yulan.schema.reward import Penalties

torch = pytest.importorskip("torch")

ASSISTANT = "assistant<|end_header_id|>\n\n"  # where the response starts in the reward model's format


@pytest.fixture(scope="module")
def shortness_server():
    """A reward server (openrlhf.cli.serve_rm's protocol) whose score falls with the response's length: the
    reward hacking that collapses length."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            texts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["query"]
            body = json.dumps({"rewards": [5.0 - len(t.rsplit(ASSISTANT, 1)[-1]) / 10 for t in texts]}).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def talkative_policy(tmp_path_factory) -> Path:
    """The tiny policy with its end-of-turn logit raised so that it ends ~7% of its tokens: responses of every
    length up to the limit, which a reward for shortness can collapse."""
    from yulan.runtime import models, tiny

    path = tmp_path_factory.mktemp("talkative") / "policy"
    shutil.copytree(tiny.resolve("tiny:policy", 4096, 1024), path)
    tokenizer = models.load_tokenizer(str(path))
    model = models.load_causal_lm(str(path), torch.float32).eval()
    batch = tokenizer(
        ["Tell me about the number 3. It is a nice number and", "What is the capital"],
        return_tensors="pt",
        padding=True,
    )
    with torch.no_grad():
        direction = model.model(**batch).last_hidden_state.reshape(-1, model.config.hidden_size).mean(0)
        model.lm_head.weight[tokenizer.convert_tokens_to_ids("<|im_end|>")] = direction / direction.norm() ** 2 * 4.5
    model.save_pretrained(path)
    return path


def collapse_overrides(tmp_path, policy, server, *extra):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"id": str(i), "prompt": f"Tell me about the number {i}.", "mean_reward": 0.0}) + "\n"
            for i in range(8)
        )
    )
    return [
        "experiment=smoke_grpo",
        f"run_root={tmp_path}/runs",
        "name=collapse",
        "stages=[ppo]",
        "tracking.mode=disabled",
        f"ppo.actor.init_from={policy}",
        f"ppo.prompts.source={prompts}",
        "ppo.prompts.count=8",
        "ppo.max_steps=14",
        "ppo.generate_max_length=32",
        "ppo.save_every_steps=100",
        "ppo.reward.verifier.enabled=false",
        f"ppo.reward.server_url={server}",
        "ppo.reward.penalties.incomplete=0",
        "ppo.actor.learning_rate=3e-4",
        *extra,
    ]


def metrics_of(job_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (job_dir / "metrics.jsonl").read_text().splitlines()]


# -- a real collapse ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_length_collapse_is_stopped_with_an_alert_and_a_resumable_checkpoint(
    tmp_path, talkative_policy, shortness_server
):
    overrides = collapse_overrides(tmp_path, talkative_policy, shortness_server)
    env = dict(os.environ, YULAN_PROGRESS="0")
    result = run("launch.py", *overrides, env=env)
    job_dir = tmp_path / "runs" / "collapse" / "ppo"
    assert result.returncode == 3, result.stderr[-3000:]
    assert "stopped by a health rule" in result.stderr and "failed with exit status 3" in result.stderr

    metrics = metrics_of(job_dir)
    lengths = [m[key("response_length_mean")] for m in metrics]
    assert lengths[0] > 25 and lengths[-1] < 8  # the policy learnt to stop talking
    stops = [a for a in read_alerts(job_dir) if a["action"] == "stop"]
    assert [(a["rule"], a["rollout"]) for a in stops] == [("length_collapse", len(metrics))]
    assert stops[0]["value"] < 0.5 and all(m[key("response_length_vs_early")] < 0.5 for m in metrics[-3:])
    assert not (job_dir / "model").exists() and not (job_dir / "DONE").exists()  # nothing later reads this policy
    state = torch.load(job_dir / "checkpoints" / f"step-{len(metrics)}" / "state.pt", weights_only=False)
    assert len(state["extra"]["health"]["early"]) == 3

    status = run("-m", "yulan.cli", "status", str(tmp_path / "runs" / "collapse"))
    assert status.returncode == 0 and "STOP  health rule 'length_collapse'" in status.stdout, status.stdout
    page = run("-m", "yulan.cli", "report", str(tmp_path / "runs" / "collapse"))
    assert page.returncode == 0, page.stderr
    html = (tmp_path / "runs" / "collapse" / "report.html").read_text()
    assert "Health alerts: ppo" in html and "length_collapse" in html and '<span class="stop">stop</span>' in html

    # resumable: the run continues from the checkpoint with the same early level, and (still collapsed) is
    # stopped again three rollouts later
    again = run("launch.py", *overrides, "launcher.on_existing_run=resume", env=env)
    assert again.returncode == 3 and f"resumed from {job_dir}/checkpoints/step-{len(metrics)}" in again.stderr
    resumed = metrics_of(job_dir)
    assert [m["step"] for m in resumed] == list(range(1, len(metrics) + 4))
    assert [a["rollout"] for a in read_alerts(job_dir) if a["action"] == "stop"] == [len(metrics), len(metrics) + 3]


def test_a_warn_rule_alerts_each_time_it_holds_and_the_run_goes_on():
    """length_collapse as a warn rule: a length at a sixth of its early level warns every 3 rollouts it holds (the
    streak starts over after each alert), and no rollout's alerts end the run."""
    rule = HealthRule(metric="response_length_vs_early", below=0.5, for_rollouts=3, action="warn")
    monitor = Monitor(HealthConfig(early_rollouts=3, rules={"length_collapse": rule}), SAMPLE_STATISTICS)
    alerts = []
    for rollout, length in enumerate([30.0, 30.0, 30.0, 29.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 40.0, 5.0], 1):
        derived, fired = monitor.observe(rollout, {key("response_length_mean"): length})
        assert not stops(fired)
        alerts += fired
    assert [(a.rollout, a.action, round(a.value, 4)) for a in alerts] == [(7, "warn", 0.1667), (10, "warn", 0.1667)]
    assert derived == {key("response_length_vs_early"): 5.0 / 30.0}
    stop = HealthRule(metric="response_length_vs_early", below=0.5, for_rollouts=1, action="stop")
    _, fired = Monitor(HealthConfig(early_rollouts=1, rules={"x": stop}), SAMPLE_STATISTICS).observe(1, {})
    assert fired == [] and not stops(fired)
    stopping = Monitor(HealthConfig(early_rollouts=1, rules={"x": stop}), SAMPLE_STATISTICS)
    stopping.observe(1, {key("response_length_mean"): 30.0})
    assert stops(stopping.observe(2, {key("response_length_mean"): 5.0})[1])


# -- the statistics and the rules ---------------------------------------------------------------------------
def sample(prompt="p", response="An answer.", length=10, truncated=False, rm=1.0, reward=1.0, **fired):
    """One sample as the reward function's output describes it."""
    logs = {"rm_score": [rm]} | {
        f"penalty_{rule}": [float(fired.get(rule, rule == "truncated" and truncated))]
        for rule in ("truncated", "incomplete", "mixed_language", "generic")
    }
    (made,) = health_samples(
        [prompt], [response], [length], [truncated], {"rewards": [reward], "extra_logs": logs}, Penalties()
    )
    return made


def test_statistics_of_a_rollout():
    samples = [
        sample(length=4),
        sample(response="An   answer.", length=8),
        sample(prompt="q", length=12),
        sample(prompt="q", response="I hope this helps", length=40, truncated=True, rm=3.0, reward=-2.0, generic=True),
    ]
    stats = sample_statistics(samples)
    assert stats[key("response_length_mean")] == 16 and stats[key("response_length_p10")] == pytest.approx(5.2)
    assert stats[key("response_length_p90")] == pytest.approx(31.6)
    assert stats[key("duplicate_share")] == 0.25  # the same answer twice to "p" (whitespace aside); "q"'s differ
    assert stats[key("truncation_rate")] == 0.25 and stats[key("penalty_rate/generic")] == 0.25
    assert stats[key("generic_phrase_rate")] == 0.25
    assert stats[key("rm_score_mean")] == 1.5 and stats[key("reward_rm_gap")] == pytest.approx(0.25 - 1.5)


def test_a_rule_fires_after_its_rollouts_in_a_row_and_again_after_as_many():
    config = HealthConfig(
        early_rollouts=2,
        rules={"short": HealthRule(metric="response_length_vs_early", below=0.5, for_rollouts=2, action="stop")},
    )
    produced = ("response_length_mean", "response_length_vs_early")
    monitor = Monitor(config, produced)
    fired = []
    for rollout, length in enumerate([20, 20, 9, 12, 9, 8, 7, 6], start=1):
        derived, alerts = monitor.observe(rollout, {key("response_length_mean"): length})
        fired += [a.rollout for a in alerts]
        if rollout == 5:  # as a resumed run does, from the checkpoint's state
            monitor = Monitor(config, produced, json.loads(json.dumps(monitor.state())))
    assert fired == [6, 8]  # 9 then 12 breaks the streak; 9, 8 fire; 7, 6 fire again
    assert derived == {key("response_length_vs_early"): 0.3}


# -- OpenRLHF: the reward function's statistics ------------------------------------------------------------------
CALLER = textwrap.dedent("""
    import importlib.util, json, sys
    from concurrent.futures import ThreadPoolExecutor
    spec = importlib.util.spec_from_file_location("reward_func", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # as OpenRLHF's SingleTurnExecutor loads it in every vLLM actor
    samples = json.loads(open(sys.argv[2]).read())
    with ThreadPoolExecutor(4) as pool:  # and calls it with one sample at a time, from threads (asyncio.to_thread)
        list(pool.map(lambda s: module.reward_func([s["query"]], [s["prompt"]], [s["label"]]), samples))
""")


def test_the_openrlhf_reward_function_writes_the_native_engines_statistics(tmp_path, shortness_server):
    from yulan.engines.native import ppo
    from yulan.rewards.health import watch_settings
    from yulan.rewards.reward import YulanReward, write_reward_file
    from yulan.runtime import models, tiny
    from yulan.runtime.batches import prompt_ids

    experiment = load(
        [
            "experiment=ppo_yulan",
            "model=tiny",
            "reward_model=tiny",
            "ppo.generate_max_length=16",
            "ppo.prompt_max_length=128",
            "ppo.rollout_batch_size=3",
            "ppo.samples_per_prompt=4",
            "ppo.train_batch_size=4",
            "ppo.micro_train_batch_size=2",
            "ppo.placement.actor_gpus=1",
            "ppo.actor.init_from=tiny:policy",
            f"ppo.reward.server_url={shortness_server}",
            "ppo.placement.reward_gpus=0",
            "ppo.health.rules.length_collapse.action=warn",
        ]
    )
    policy = tiny.resolve("tiny:policy", 4096, 1024)
    tokenizer = models.load_tokenizer(policy)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    answers = {
        "What is 2 + 3?": [
            "2 + 3 = 5.",
            "2 + 3 = 5.",
            "The answer is 5. I hope this helps!",
            "Five is the sum of two and three, which we write as 5 and read",
        ],
        "Explain gravity.": [
            "Gravity pulls masses together.",
            "Gravity 是一种力。",
            "Masses attract.",
            "Gravity is the force by which everything with mass or energy is brought toward",
        ],
        "Name a colour.": ["Blue.", "Red.", "Blue.", "I hope this helps"],
    }
    prompts, responses, labels = [], [], []
    for question, texts in answers.items():
        for text in texts:
            prompts.append(prompt_ids(tokenizer, [{"role": "user", "content": question}], 128))
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            responses.append(ids[:16] if len(ids) >= 16 else ids + [end])  # the long ones are cut at the limit
            labels.append(json.dumps({"messages": [{"role": "user", "content": question}]}))
    truncated = [r[-1] != end for r in responses]
    assert 0 < sum(truncated) < len(responses)
    reward = YulanReward(experiment.ppo.reward, shortness_server)
    scored, health = ppo.score_responses(tokenizer, reward, prompts, responses, labels, truncated)
    native = sample_statistics(health)

    job_dir = tmp_path / "ppo"
    path = write_reward_file(
        experiment.ppo.reward,
        shortness_server,
        str(job_dir),
        health=watch_settings(experiment, str(job_dir)) | {"tokenizer_path": policy},
    )
    calls = [
        {"query": tokenizer.decode(p + r, skip_special_tokens=False), "prompt": tokenizer.decode(p), "label": label}
        for p, r, label in zip(prompts, responses, labels)
    ]
    halves = [tmp_path / "first.json", tmp_path / "second.json"]
    halves[0].write_text(json.dumps(calls[::2]))
    halves[1].write_text(json.dumps(calls[1::2]))
    callers = [subprocess.Popen([sys.executable, "-c", CALLER, str(path), str(half)], cwd=REPO) for half in halves]
    assert [caller.wait(timeout=120) for caller in callers] == [0, 0]  # two processes at once, one lock

    (line,) = metrics_of(job_dir)
    assert line["step"] == 1 and set(line) == {"step", *native}
    assert {k: line[k] for k in native} == pytest.approx(native)
    assert native[key("duplicate_share")] == pytest.approx(2 / 12) and native[key("penalty_rate/mixed_language")] > 0
    assert native[key("generic_phrase_rate")] == pytest.approx(2 / 12)


# -- OpenRLHF: the job wrapper ends the run on a stop alert ------------------------------------------------------
ENGINE = textwrap.dedent("""
    # Stands in for OpenRLHF's driver: it calls the job's reward function as OpenRLHF does, a rollout of 4 samples
    # at a time, with responses that get shorter, then would go on for ever.
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location("reward_func", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for words in [40, 40, 40, 30, 10, 3, 2, 2, 2, 2, 2, 2]:
        for i in range(4):
            text = " ".join(["word"] * words) + "."
            module.reward_func([f"Q{i}?" + text + "<|im_end|>"], [f"Q{i}?"], [""])
        time.sleep(0.05)
    time.sleep(600)
""")


def test_the_job_wrapper_ends_an_openrlhf_run_on_a_stop_alert(tmp_path, shortness_server):
    from yulan.engines.openrlhf.driver import run_watched
    from yulan.rewards.health import watch_settings
    from yulan.rewards.reward import write_reward_file
    from yulan.runtime import tiny

    experiment = load(
        [
            "experiment=ppo_yulan",
            "model=tiny",
            "reward_model=tiny",
            "ppo.rollout_batch_size=2",
            "ppo.samples_per_prompt=2",
            "ppo.train_batch_size=4",
            "ppo.micro_train_batch_size=2",
            "ppo.placement.actor_gpus=1",
            f"ppo.reward.server_url={shortness_server}",
            "ppo.placement.reward_gpus=0",
            "ppo.prompt_max_length=256",
            "ppo.generate_max_length=512",
            "tracking.mode=offline",
            f"run_dir={tmp_path}",
        ]
    )
    job_dir = tmp_path / "ppo"
    settings = watch_settings(experiment, str(job_dir)) | {"tokenizer_path": tiny.resolve("tiny:policy", 4096, 1024)}
    path = write_reward_file(experiment.ppo.reward, shortness_server, str(job_dir), health=settings)
    status = run_watched(
        experiment, str(job_dir), [sys.executable, "-c", ENGINE, str(path)], dict(os.environ), poll_s=0.2
    )
    assert status == 3
    stop = [a for a in read_alerts(job_dir) if a["action"] == "stop"]
    assert {a["rule"] for a in stop} == {"length_collapse"} and stop[0]["rollout"] == 7  # 10, 3, 2 words of 40
    assert subprocess.run(["pgrep", "-f", "time.sleep\\(600\\)"], capture_output=True).returncode == 1  # gone
    assert [m["step"] for m in metrics_of(job_dir)][:7] == list(range(1, 8))
    assert (job_dir / "wandb_run_id.health").exists() and list((job_dir / "wandb").glob("offline-run-*"))
    SharedWatch(job_dir, experiment.ppo.health, 4).reset()
    assert not (job_dir / "health" / "pending.jsonl").exists()


# -- bad rules are refused before anything runs --------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        (
            ["ppo.health.rules.length_collapse.metric=response_lenght"],
            "ppo.health.rules.length_collapse.metric",
            ["must be one of", "did you mean"],
        ),
        (["ppo.health.rules.truncation.above=-0.1"], "ppo.health.rules.truncation.above", ["never fires", "share"]),
        (["ppo.health.rules.truncation.above=50"], "ppo.health.rules.truncation.above", ["[0, 1]", "above=0.5"]),
        (["ppo.health.rules.length_collapse.below=-1"], "ppo.health.rules.length_collapse.below", ["never negative"]),
        (
            ["ppo.health.rules.kl_runaway.action=stop"],
            "ppo.health.rules.kl_runaway.metric",
            ["engine=openrlhf does not produce kl_vs_target", "action=warn", "engine=native"],
        ),
        (
            [
                "ppo.reward.mode=local_model",
                "reward_model=tiny",
                "model=tiny",
                "ppo.prompt_max_length=512",
                "ppo.generate_max_length=512",
            ],
            "ppo.health.rules.length_collapse.metric",
            ["local_model", "action=warn"],
        ),
        (
            ["ppo.health.rules.lenght_collapse.action=warn"],
            "ppo.health.rules.lenght_collapse",
            ["did you mean the rule 'length_collapse'"],
        ),
        (
            ["ppo.health.rules.length_collapse.above=2"],
            "ppo.health.rules.length_collapse.below",
            ["exactly one of below and above"],
        ),
    ],
)
def test_bad_health_rules_are_refused_naming_the_field_and_the_fix(tmp_path, overrides, field, words):
    with pytest.raises(ConfigError) as caught:
        load(["experiment=ppo_yulan", *overrides])
    message = str(caught.value)
    assert f"  {field} = " in message and all(word in message for word in words), message
    result = run("launch.py", "experiment=ppo_yulan", *overrides, f"run_root={tmp_path}")
    assert result.returncode == 1 and field in result.stderr and "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_the_report_recipe_is_watched_by_default_and_native_watches_everything():
    experiment = load(["experiment=ppo_yulan"])
    assert experiment.ppo.health.rules["length_collapse"].action == "stop"
    assert experiment.ppo.health.unwatched(experiment.ppo.health_statistics) == ["kl_runaway"]
    native = load(["experiment=smoke"])
    assert native.ppo.health.unwatched(native.ppo.health_statistics) == []


# -- the shared files survive torn and foreign lines ---------------------------------------------------------------
def some_samples(count: int, length: int = 10):
    from yulan.rewards.health import HealthSample
    from yulan.schema.health import PENALTY_RULES

    return [
        HealthSample(f"p{i}", f"r{i}-{length}", length, False, dict.fromkeys(PENALTY_RULES, False), False, 0.5, 1.0)
        for i in range(count)
    ]


@pytest.mark.parametrize(
    "junk",
    [
        '{"prompt": "p9", "response": "r9", "len',  # a writer killed mid-line: the next line is glued to it
        "not json at all\n",
        '["a", "list"]\n',
        '{"prompt": 1}\n',
        '{"prompt": "p", "response": "r", "length": "ten", "truncated": false, "fired": {}, "generic_phrase": false, '
        '"rm_score": 0.5, "reward": 1.0}\n',
        '{"prompt": "p", "response": "r", "length": 3, "truncated": false, "fired": {}, "generic_phrase": false, '
        '"rm_score": 0.5, "reward": 1.0}\n',
        "\xff\xfe broken bytes\n",
    ],
)
def test_a_torn_or_foreign_pending_line_is_skipped_and_counted_never_switching_health_off(tmp_path, junk):
    watch = SharedWatch(tmp_path, HealthConfig(), samples_per_rollout=4)
    watch.reset()
    watch.add(some_samples(2))
    with (tmp_path / "health" / "pending.jsonl").open("a", encoding="utf-8", errors="surrogateescape") as sink:
        sink.write(junk)
    watch.add(some_samples(3))  # a torn line swallows the first of these
    glued = not junk.endswith("\n")
    watch.add(some_samples(4 if glued else 3))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2]
    assert [row[key("skipped_lines")] for row in rows] == [1, 1]
    assert rows[0][key("response_length_mean")] == 10.0


def test_an_unreadable_state_file_restarts_the_rules_and_keeps_watching(tmp_path):
    watch = SharedWatch(tmp_path, HealthConfig(), samples_per_rollout=2)
    watch.reset()
    watch.add(some_samples(2))
    (tmp_path / "health" / "state.json").write_text('{"rollouts": 1, "monitor": ')
    watch.add(some_samples(2))
    (tmp_path / "health" / "state.json").write_text('{"rollouts": "x", "monitor": [1, 2]}')
    watch.add(some_samples(2))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 1, 1] and key("skipped_lines") not in rows[0]
