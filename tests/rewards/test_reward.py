"""The YuLan reward: penalties on realistic English and Chinese responses, and the reward server's failure paths."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from yulan.rewards.penalties import judge
from yulan.rewards.reward import YulanReward, for_openrlhf, write_reward_file
from yulan.schema.reward import Penalties, RewardConfig

RULES = Penalties()

# (prompt, response) pairs that must NOT be penalised.
CLEAN = [
    ("What is 12 * 7?", "84"),
    ("What is the capital of France?", "Paris"),
    ("Solve x + 3 = 5.", "Subtract 3 from both sides: x = 2.\n\nThe answer is $\\boxed{2}$"),
    ("Compute the integral of 2x.", "$$\\int 2x\\,dx = x^2 + C$$"),
    (
        "Write a Python function that adds two numbers.",
        "Here is one:\n\n```python\ndef add(a, b):\n    return a + b\n```",
    ),
    (
        "Write a function to reverse a string in Python.",
        "```python\ndef reverse(s):\n    return s[::-1]\n```\nIt uses slicing.",
    ),
    ("List three primary colors.", "- Red\n- Blue\n- Yellow"),
    ("Give me steps to boil an egg.", "1. Boil water\n2. Add the egg\n3. Wait nine minutes"),
    ("Explain photosynthesis briefly.", "Plants turn light, water and carbon dioxide into sugar and oxygen."),
    (
        "Thanks for the explanation about gravity!",
        "You're welcome! Gravity is the attraction between masses. I hope this helps!",
    ),
    ("How do I print in Rust?", 'Use the `println!` macro: `println!("hi");` prints a line.'),
    ("Summarise the plot of Hamlet.", "Prince Hamlet avenges his father's murder, and nearly everyone dies."),
    ("Show a comparison table of two fruits.", "| Fruit | Colour |\n|---|---|\n| Apple | Red |\n| Banana | Yellow |"),
    ("Translate 'good morning' into Chinese.", "早上好 (zǎo shang hǎo)."),
    ("What does 你好 mean in English?", 'It means "hello".'),
    ("1+1等于几？", "1+1等于2。"),
    ("请解释什么是机器学习。", "机器学习是人工智能的一个分支，它让计算机从数据中学习规律。"),
    (
        "用Python写一个求和函数。",
        "可以这样写：\n\n```python\ndef total(xs):\n    return sum(xs)\n```\n这个函数返回列表的和。",
    ),
    ("中国的首都是哪里？", "北京"),
    ("列出三种水果。", "- 苹果\n- 香蕉\n- 橙子"),
    ("请计算 3 的平方。", "3 的平方是 $3^2 = 9$。"),
    ("解释一下 HTTP 协议。", "HTTP 是一种应用层协议，用于在 Web 浏览器和服务器之间传输数据，例如 GET 和 POST 请求。"),
    ("What is 2/3 as a decimal?", "About 0.667"),
    ("Name a prime number.", "7"),
]

# (prompt, response, the reasons that must fire)
BAD = [
    (
        "Explain how vaccines work.",
        "Vaccines train the immune system by exposing it to a harmless piece of the",
        {"incomplete"},
    ),
    ("Write code to sort a list.", "```python\ndef sort(xs):\n    return sorted(xs", {"incomplete"}),
    ("Describe the water cycle.", "", {"incomplete"}),
    (
        "请介绍一下长城的历史。",
        "长城始建于春秋战国时期，后来秦始皇统一六国以后将各国的长城连接起来并且不断",
        {"incomplete"},
    ),
    ("What is the boiling point of water?", "Water boils at 100 度 at sea level.", {"mixed_language"}),
    ("Explain recursion.", "Recursion is when a function calls itself. 这是一个重要的概念。", {"mixed_language"}),
    (
        "请解释什么是量子计算。",
        "Quantum computing uses qubits that can be in superposition of states.",
        {"mixed_language"},
    ),
    ("How do I learn to swim?", "I hope this helps!", {"generic"}),
    ("Can you explain black holes?", "Let me know if you have any other questions.", {"generic"}),
    ("怎样学习编程？", "希望对你有帮助！", {"generic"}),
    ("Tell me about Rome.", "I hope this helps. Let me know if you have any other questions.", {"generic"}),
    # cut off where the old end-mark rule saw a complete line
    ("List the steps.", "1. Open the box\n2. The second item is", {"incomplete"}),
    ("Explain it.", "The function returns the value (which is computed by", {"incomplete"}),
    ("Explain it.", "It uses the helper (see", {"incomplete"}),
    ("List tips.", "1. **Install Python**\n2. **Create a", {"incomplete"}),
    ("Explain vaccines.", "Vaccines work by training the immune system, and", {"incomplete"}),
    ("Tell me about cats.", "Cats are great. I hope this helps!", {"generic"}),
]

# Complete answers the old rule penalised (-5): math without a period, commands, prose after code, poems,
# Chinese without 。, English prompts naming a Chinese title or place.
FORMERLY_PENALISED = [
    ("Solve 2x + 1 = 5.", "Subtract 1 from both sides and divide by 2, which gives x = 2"),
    ("How do I install numpy?", "Use pip:\n\n    pip install numpy"),
    ("How do I install numpy?", "Run this in a terminal:\n$ pip install numpy --upgrade --user"),
    (
        "Show me hello world in Python.",
        "```python\nprint('hello')\n```\nThis prints hello to the screen when you run it",
    ),
    (
        "Write a short poem about autumn.",
        "Leaves fall slowly\nGolden light on quiet roads\nThe year breathes out its last warm sigh",
    ),
    ("介绍一下北京。", "北京是中国的首都，有着三千多年的历史和丰富的文化遗产"),
    ("Who wrote 红楼梦?", "红楼梦 was written by Cao Xueqin (曹雪芹) in the 18th century."),
    ("Where is 西湖?", "西湖 is a lake in Hangzhou, China."),
    ("Name three languages.", "1. Python\n2. Java\n3. C++"),
    ("What is f(1)?", "f(1) = 3 (from the definition)"),
    ("Give a bold tip.", "**Always test your code**"),
]


@pytest.mark.parametrize(("prompt", "response"), CLEAN, ids=[p[:30] for p, _ in CLEAN])
def test_good_responses_are_not_penalised(prompt, response):
    verdict = judge(prompt, response, RULES)
    assert verdict.penalty == 0, verdict.reasons


@pytest.mark.parametrize(("prompt", "response", "reasons"), BAD, ids=[p[:30] for p, _, _ in BAD])
def test_reward_hacking_patterns_are_penalised(prompt, response, reasons):
    verdict = judge(prompt, response, RULES)
    assert {name for name, hit in verdict.reasons.items() if hit} == reasons
    sizes = {"incomplete": RULES.incomplete, "mixed_language": RULES.mixed_language, "generic": RULES.generic}
    assert verdict.penalty == sum(sizes[name] for name in reasons)


@pytest.mark.parametrize(("prompt", "response"), FORMERLY_PENALISED, ids=[p[:30] for p, _ in FORMERLY_PENALISED])
def test_complete_answers_without_an_end_mark_are_not_penalised(prompt, response):
    verdict = judge(prompt, response, RULES)
    assert verdict.penalty == 0, verdict.reasons


def test_the_generation_signal_catches_truncation_the_text_cannot_see():
    cut = judge("Explain gravity.", "Gravity pulls masses together. The moon orbits", RULES, truncated=True)
    assert cut.fired == ["truncated"] and cut.penalty == RULES.incomplete
    both = judge("Explain gravity.", "Gravity pulls masses together and", RULES, truncated=True)
    assert set(both.fired) == {"truncated", "incomplete"} and both.penalty == RULES.incomplete  # charged once
    assert judge("Explain gravity.", "Gravity pulls masses together.", RULES, truncated=False).penalty == 0


def test_penalty_sizes_come_from_the_config():
    rules = Penalties(generic=-1.5, generic_phrases=("as always",))
    assert judge("Hi?", "As always, happy to help.", rules).penalty == -1.5
    assert judge("Hi?", "I hope this helps!", rules).penalty == 0


# -- a real reward server on loopback ---------------------------------------------------------------------
class RewardServer:
    """Serves POST /get_reward like `openrlhf.cli.serve_rm`, with switchable misbehaviour."""

    def __init__(self):
        self.mode, self.received, self.failures_left = "ok", [], 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                queries = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["query"]
                server.received.append(queries)
                if server.failures_left:
                    server.failures_left -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                if server.mode == "slow":
                    time.sleep(0.5)
                body = {
                    "ok": json.dumps({"rewards": [float(len(q) % 7) for q in queries]}),
                    "slow": json.dumps({"rewards": [1.0] * len(queries)}),
                    "garbage": "<html>502 Bad Gateway</html>",
                    "short": json.dumps({"rewards": []}),
                }[server.mode]
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body.encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.handle_error = lambda request, address: None  # clients hang up on the slow mode on purpose
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    srv = RewardServer()
    yield srv
    srv.httpd.shutdown()


def reward(url, **settings):
    return YulanReward(RewardConfig(max_retries=2, timeout_s=0.2, **settings), url)


PROMPT = "<|user|>What is 2+2?<|assistant|>"


def test_rewards_use_the_reward_models_format_and_add_penalties(server):
    fn = reward(server.url)
    out = fn(
        [PROMPT + "4<|endoftext|>", PROMPT + "I hope this helps!<|endoftext|>"],
        [PROMPT, PROMPT],
        ["What is 2+2?", "What is 2+2?"],
    )
    (sent,) = server.received
    assert sent[0] == fn.render([{"role": "user", "content": "What is 2+2?"}], "4")
    assert "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>" in sent[0]
    assert "<|endoftext|>" not in sent[0]
    scores = [float(len(q) % 7) for q in sent]
    assert out["scores"] == scores
    assert out["rewards"] == [scores[0], max(scores[1] + RULES.generic, -20)]
    assert out["extra_logs"]["penalty_generic"] == [0.0, 1.0] and out["extra_logs"]["rm_failed"] == [0.0, 0.0]


def test_penalties_are_added_after_the_clip_so_they_bite_on_high_scores():
    texts = {"clean": "The answer is 4.", "hack": "I hope this helps!"}
    fn = YulanReward(RewardConfig(), score_texts=lambda rendered: [25.0] * len(rendered))  # both above the clip
    out = fn([PROMPT + texts["clean"], PROMPT + texts["hack"]], [PROMPT, PROMPT], ["What is 2+2?"] * 2)
    assert out["rewards"] == [10.0, 10.0 + RULES.generic]  # before: both 10
    low = YulanReward(RewardConfig(), score_texts=lambda rendered: [-18.0] * len(rendered))
    assert low([PROMPT + texts["hack"]], [PROMPT], ["q"])["rewards"] == [
        -20.0
    ]  # the sum is floored at the clip's low end


def test_the_reward_model_sees_the_whole_conversation_in_its_format():
    seen = []
    fn = YulanReward(RewardConfig(), score_texts=lambda rendered: seen.extend(rendered) or [1.0] * len(rendered))
    conversation = [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hi {name}"},
        {"role": "assistant", "content": "Bonjour."},
        {"role": "user", "content": "And goodbye?"},
    ]
    fn([PROMPT + "Au revoir."], [PROMPT], [json.dumps({"messages": conversation})])
    assert seen == [
        "<|begin_of_text|>"
        "<|start_header_id|>system<|end_header_id|>\n\nAnswer in French.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi {name}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nBonjour.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nAnd goodbye?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nAu revoir.<|eot_id|>"
    ]
    chatml = YulanReward(RewardConfig(rm_chat_begin="", rm_chat_turn="<|im_start|>{role}\n{content}<|im_end|>\n"))
    assert (
        chatml.render([{"role": "user", "content": "q"}], "a")
        == "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na<|im_end|>\n"
    )


def verifier_reward(**weights):
    config = RewardConfig(verifier={"enabled": True, "allow_unisolated_code": True, **weights})
    return YulanReward(config, score_texts=lambda rendered: [2.0] * len(rendered))


def test_verifier_reward_on_math_answers():
    fn = verifier_reward()
    label = json.dumps({"messages": [{"role": "user", "content": "What is 1/2 + 1/4?"}], "answer": "\\frac{3}{4}"})
    out = fn([PROMPT + "So the answer is $\\boxed{0.75}$.", PROMPT + "The answer is 1."], [PROMPT] * 2, [label] * 2)
    assert out["rewards"] == [2.0 + 10.0, 2.0] and out["scores"] == [1.0, 0.0]
    assert out["extra_logs"]["reward_verifier"] == [10.0, 0.0] and out["extra_logs"]["verified"] == [1.0, 1.0]
    plain = fn([PROMPT + "Paris."], [PROMPT], ["Capital of France?"])  # no checker: the reward model alone
    assert plain["rewards"] == [2.0] and plain["extra_logs"]["verified"] == [0.0] and plain["scores"] == [0.5]
    weighted = verifier_reward(weights={"math": {"reward_model": 0.0, "verifier": 1.0}})
    assert weighted([PROMPT + "The answer is 0.75."], [PROMPT], [label])["rewards"] == [1.0]


def test_verifier_reward_on_code_runs_the_tests_in_the_sandbox():
    fn = verifier_reward()
    label = json.dumps(
        {
            "messages": [{"role": "user", "content": "Write add(a, b)."}],
            "tests": "assert add(2, 3) == 5\nassert add(-1, 1) == 0",
        }
    )
    good = "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```"
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    escape = "```python\nimport os\nos._exit(0)\n```"
    out = fn([PROMPT + good, PROMPT + wrong, PROMPT + escape], [PROMPT] * 3, [label] * 3)
    assert out["extra_logs"]["verifier_passed"] == [1.0, 0.0, 0.0]
    assert out["rewards"] == [12.0, 2.0, 2.0]


def test_rewards_are_clipped(server):
    fn = reward(server.url, clip_range=(-1.0, 0.5), fallback_reward=0.0)
    out = fn([PROMPT + "4", PROMPT + "I hope this helps!"], [PROMPT, PROMPT], ["q", "q"])
    assert all(-1.0 <= r <= 0.5 for r in out["rewards"]) and out["rewards"][1] == -1.0


@pytest.mark.parametrize("mode", ["garbage", "short", "slow"])
def test_bad_server_replies_fall_back_without_raising(server, mode):
    server.mode = mode
    out = reward(server.url, fallback_reward=-1.0)([PROMPT + "4"], [PROMPT], ["What is 2+2?"])
    assert out["rewards"] == [-1.0] and out["extra_logs"]["rm_failed"] == [1.0]
    assert len(server.received) == 3  # the first try and max_retries=2 retries


def test_server_down_falls_back(server):
    url = server.url
    server.httpd.shutdown()
    server.httpd.server_close()
    out = reward(url)([PROMPT + "The answer is 4."], [PROMPT], ["What is 2+2?"])
    assert out["rewards"] == [0.0] and out["extra_logs"]["rm_failed"] == [1.0]


def test_transient_errors_are_retried(server):
    server.failures_left = 2
    out = reward(server.url)([PROMPT + "4"], [PROMPT], ["What is 2+2?"])
    assert out["extra_logs"]["rm_failed"] == [0.0] and len(server.received) == 3


def test_never_raises_even_on_malformed_input(server):
    out = reward(server.url)([None], [PROMPT], [None])  # type: ignore[list-item]
    assert out["rewards"] == [0.0] and out["extra_logs"]["rm_failed"] == [1.0]


def test_openrlhf_file_loads_and_returns_scalars(server, tmp_path):
    import importlib.util

    path = write_reward_file(RewardConfig(), server.url, str(tmp_path))
    spec = importlib.util.spec_from_file_location("reward_func", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.reward_func([PROMPT + "4"], [PROMPT], ["What is 2+2?"])
    assert isinstance(out["rewards"], float) and isinstance(out["extra_logs"]["rm_failed"], float)
    assert (
        for_openrlhf(reward(server.url))([PROMPT + "4", PROMPT + "5"], [PROMPT] * 2, ["q"] * 2)["rewards"].__len__()
        == 2
    )


def test_reward_server_lifecycle_polls_until_it_answers(server):
    import subprocess
    import sys

    from yulan.engines.openrlhf.driver import split_gpus, stop, wait_until_serving

    assert split_gpus(["0", "1", "2", "3", "4", "5", "6", "7"], 1) == (["0", "1", "2", "3", "4", "5", "6"], ["7"])
    assert split_gpus(["0", "1"], 0) == (["0", "1"], [])
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        wait_until_serving(server.url + "/get_reward", sleeper, timeout_s=5, poll_s=0.05)
        assert server.received[-1] == ["ping"]
        with pytest.raises(TimeoutError):
            wait_until_serving("http://127.0.0.1:9/get_reward", sleeper, timeout_s=0.3, poll_s=0.05)
    finally:
        stop(sleeper)
    assert sleeper.returncode is not None
    crashed = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    crashed.wait()
    with pytest.raises(RuntimeError, match="status 3"):
        wait_until_serving("http://127.0.0.1:9/get_reward", crashed, timeout_s=5, poll_s=0.05)


def test_reward_score_cli_explains_each_sample_and_summarises(tmp_path, capsys):
    from yulan.cli import main

    samples = tmp_path / "samples.jsonl"
    samples.write_text(
        "\n".join(
            json.dumps(s)
            for s in [
                {"prompt": "What is 2+2?", "response": "The answer is 4.", "answer": "4"},
                {"prompt": "How do I swim?", "response": "I hope this helps!"},
                {
                    "prompt": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Explain gravity."},
                    ],
                    "response": "Gravity pulls masses together. The moon",
                    "truncated": True,
                },
            ]
        )
        + "\n"
    )
    assert main(["reward", "score", "--samples", str(samples)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["penalties"] for r in rows] == [[], ["generic"], ["truncated"]]
    assert rows[0]["verifier"] == {"kind": "math", "passed": True, "detail": ""} and rows[1]["verifier"] is None
    assert rows[1]["reward"] == pytest.approx(max(min(max(rows[1]["rm_score"], -20), 10) + RULES.generic, -20))
    assert main(["reward", "score", "--samples", str(samples), "--summary", "ppo.reward.verifier.enabled=true"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rule_rates"]["generic"] == pytest.approx(1 / 3) and summary["verifier_pass_rate"] == 1.0
    for bad, rule in (
        ('{"prompt": "x", "response": "y"}\n{"prompt": "x"}\n', "lacks response"),
        (
            '{"prompt": "x", "response": "y"}\n{"prompt": "x", "response": "y", "truncated": "yes"}\n',
            "truncated must be true or false",
        ),
    ):
        samples.write_text(bad)
        assert main(["reward", "score", "--samples", str(samples)]) == 1
        error = capsys.readouterr().err
        assert f"{samples}:2" in error and rule in error
