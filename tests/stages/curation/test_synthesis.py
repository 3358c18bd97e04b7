"""Math distillation against a local OpenAI-compatible server answering like a teacher model (right and wrong)."""

import importlib.util
import json
import re

import pytest

from tests.conftest import chat_reply, json_server
from yulan.compose import load
from yulan.schema.curation import MathSynthesis
from yulan.stages.curation import synthesis
from yulan.stages.curation.stage import run as run_curation


def teacher_reply(body: dict) -> dict:
    """n replies per question: the first n-1 wrong, the last right; 'impossible' questions are always wrong."""
    question = body["messages"][0]["content"]
    a, b = map(int, re.findall(r"\d+", question)[:2])
    last = a + b + (1 if "impossible" in question else 0)
    wrong = [f"{a} + {b} = {a + b + 1 + k}. So \\boxed{{{a + b + 1 + k}}}." for k in range(body["n"] - 1)]
    return chat_reply(*wrong, f"{a} + {b} = {last}. So \\boxed{{{last}}}.")


@pytest.fixture()
def teacher():
    with json_server(teacher_reply) as url:
        yield url


def seed_file(tmp_path, count=6):
    path = tmp_path / "seed.jsonl"
    rows = [
        {
            "problem": f"What is {i} + {i + 2}?" + (" (impossible)" if i == 0 else ""),
            "expected_answer": str(2 * i + 2),
            "problem_source": "augmented_math",
        }
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_only_responses_matching_the_ground_truth_are_kept(tmp_path, teacher):
    config = MathSynthesis(endpoint=teacher, seed_dataset=str(seed_file(tmp_path)), samples_per_question=3)
    report = synthesis.run_math(config, tmp_path / "math.jsonl", teacher)
    assert report == {"questions": 6, "kept": 5, "dropped": {"no_response_matches_ground_truth": 1}}
    kept = [json.loads(line) for line in (tmp_path / "math.jsonl").read_text().splitlines()]
    assert all(k["category"] == "math" and f"\\boxed{{{k['answer']}}}" in k["messages"][1]["content"] for k in kept)
    dropped = json.loads((tmp_path / "math.dropped.jsonl").read_text())
    assert "impossible" in dropped["question"]


def test_a_seed_dataset_that_is_not_a_local_file_is_named(tmp_path, teacher):
    with pytest.raises(FileNotFoundError, match="nvidia/OpenMathInstruct-2"):
        synthesis.run_math(MathSynthesis(endpoint=teacher), tmp_path / "math.jsonl", teacher)


def test_the_curation_stage_curates_distilled_math_with_its_inputs(tmp_path, teacher):
    experiment = load(
        [
            "experiment=smoke",
            f"run_dir={tmp_path}",
            "stages=[curation]",
            "curation.steps=[dedup,heuristics]",
            "curation.sources.synthesis=[math]",
            f"curation.sources.math.endpoint={teacher}",
            f"curation.sources.math.seed_dataset={seed_file(tmp_path)}",
        ]
    )
    assert run_curation(experiment, str(tmp_path / "curation")) == 0
    curated = [json.loads(line) for line in (tmp_path / "curation" / "data" / "sft.jsonl").read_text().splitlines()]
    assert sum(s.get("source") == "synthesis/math" for s in curated) == 5
    assert len(curated) > 100  # the shipped samples came through too
    report = json.loads((tmp_path / "curation" / "report.json").read_text())["steps"]
    assert report["synthesis/math"]["kept"] == 5


def test_synthesis_needing_a_server_it_cannot_start_is_refused_before_anything_runs(tmp_path):
    from tests.conftest import run

    if importlib.util.find_spec("vllm"):
        pytest.skip("vLLM is installed here")
    result = run("launch.py", "experiment=smoke", f"run_root={tmp_path}", "curation.sources.synthesis=[math,science]")
    assert result.returncode == 1
    assert "curation.sources.math.endpoint" in result.stderr and "starts vLLM, which is not installed" in result.stderr
    assert "curation.sources.science.documents" in result.stderr and "`text` field" in result.stderr
    assert list(tmp_path.iterdir()) == []


def science_reply(body: dict) -> dict:
    prompt = body["messages"][0]["content"]
    if prompt.startswith("Which scientific field"):
        field = "Biology." if "chlorophyll" in prompt.lower() else "physics" if "electron" in prompt else "Other"
        return chat_reply(field)
    if "photosynthesis" in prompt:
        pairs = [
            {"question": "What pigment absorbs light in photosynthesis?", "answer": "Chlorophyll absorbs it."},
            {
                "question": "What gas do plants take in for photosynthesis?",
                "answer": "Carbon dioxide, fixed with chlorophyll's energy.",
            },
        ]
        return chat_reply("Here you go:\n```json\n" + json.dumps(pairs) + "\n```")
    if "electron" in prompt:
        return chat_reply(
            json.dumps(
                [
                    {"question": "What charge does an electron carry?", "answer": "A negative charge."},
                    {"question": "", "answer": "missing question"},
                ]
            )
        )
    if "stock" in prompt:
        return chat_reply(json.dumps([{"question": "Why do stock prices move?", "answer": "Supply and demand."}]))
    return chat_reply("Sorry, I cannot help with that.")


def documents_file(tmp_path, name, rows):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return str(path)


def test_science_pairs_are_extracted_and_kept_only_inside_the_fields(tmp_path):
    texts = [
        "In photosynthesis, chlorophyll absorbs light.",
        "An electron is a subatomic particle.",
        "The stock market fell today.",
        "lorem ipsum",
    ]
    docs = documents_file(tmp_path, "science.jsonl", [{"text": t, "source": "wiki"} for t in texts])
    with json_server(science_reply) as url:
        config = synthesis.ScienceSynthesis(documents=(docs,), endpoint=url)
        report = synthesis.run_science(config, tmp_path / "science.jsonl", url)
    assert report == {"documents": 4, "kept": 3, "dropped": {"outside_fields": 1, "no_pairs_in_reply": 1}}
    kept = [json.loads(line) for line in (tmp_path / "science.jsonl").read_text().splitlines()]
    assert [k["field"] for k in kept] == ["biology", "biology", "physics"]
    assert kept[2]["messages"] == [
        {"role": "user", "content": "What charge does an electron carry?"},
        {"role": "assistant", "content": "A negative charge."},
    ]
    assert {k["source"] for k in kept} == {"synthesis/science"} and kept[0]["corpus"] == "wiki"


def zh_reply(body: dict) -> dict:
    prompt = body["messages"][0]["content"]
    if prompt.startswith("Classify this Chinese question"):
        return chat_reply("China specific")
    if prompt.startswith("请为下面回答的质量打分"):
        return chat_reply("1" if "不知道" in prompt else "5 分")
    if "百科条目" in prompt:
        return chat_reply("否，条目说是中国。" if "日本" in prompt else "是")
    if "春节" in prompt:
        return chat_reply(
            json.dumps(
                [
                    {"question": "春节有哪些习俗？", "answer": "贴春联、吃饺子。"},
                    {"question": "春节在哪个季节？", "answer": "我不知道。"},
                ],
                ensure_ascii=False,
            )
        )
    return chat_reply(
        json.dumps(
            [
                {"question": "请问，长城有多长？", "answer": "长城全长两万多公里。"},
                {"question": "长城有多长", "answer": "大约一万公里。"},
                {"question": "长城是哪个国家修建的？", "answer": "长城是日本修建的。"},
            ],
            ensure_ascii=False,
        )
    )


def test_chinese_commonsense_filters_relevance_quality_and_entity_claims_and_maps_answers(tmp_path):
    docs = documents_file(
        tmp_path,
        "baike.jsonl",
        [
            {"title": "春节", "text": "春节是中国最重要的传统节日，有贴春联、吃饺子的习俗。"},
            {"title": "量子计算", "text": "量子计算使用量子比特进行运算。"},
            {"title": "长城", "text": "长城是中国古代的军事防御工程，是著名的名胜古迹，历史悠久。"},
        ],
    )
    with json_server(zh_reply) as url:
        config = synthesis.ChineseCommonsenseSynthesis(documents=(docs,), endpoint=url, qa_pairs_per_document=3)
        report = synthesis.run_chinese_commonsense(config, tmp_path / "zh.jsonl", url)
    assert report == {
        "documents": 3,
        "relevant": 2,
        "kept": 3,
        "dropped": {"low_tfidf": 1, "low_quality": 1, "contradicts_entry": 1},
    }
    kept = [json.loads(line) for line in (tmp_path / "zh.jsonl").read_text().splitlines()]
    assert {k["category"] for k in kept} == {"general_zh"} and {k["cmmlu_category"] for k in kept} == {"China specific"}
    length = [k for k in kept if "多长" in k["messages"][0]["content"]]
    assert [k["messages"][1]["content"] for k in length] == [
        "长城全长两万多公里。"
    ] * 2  # the similar question shares the answer
    assert [k["answer_mapped"] for k in length] == [False, True]


def test_keyword_filter_alone_drops_documents_without_a_keyword(tmp_path):
    docs = documents_file(tmp_path, "baike.jsonl", [{"title": "量子计算", "text": "量子计算使用量子比特进行运算。"}])
    with json_server(zh_reply) as url:
        config = synthesis.ChineseCommonsenseSynthesis(documents=(docs,), endpoint=url, relevance_filters=("keywords",))
        report = synthesis.run_chinese_commonsense(config, tmp_path / "zh.jsonl", url)
    assert report["relevant"] == 0 and report["dropped"] == {"no_keyword": 1}


STAND_IN_SERVER = """
import json, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
time.sleep(1.0)  # a model loading
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404); self.end_headers()
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        data = json.dumps({"choices": [{"message": {"content": "served " + body["model"]}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        print("request", flush=True)
HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def test_a_model_server_is_started_waited_for_and_stopped(tmp_path):
    import sys

    from yulan.runtime.http import JsonClient, ServerError, chat
    from yulan.stages.curation.server import free_port, serving

    script = tmp_path / "server.py"
    script.write_text(STAND_IN_SERVER)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serving([sys.executable, str(script), str(port)], base, tmp_path / "server.log") as url:
        with JsonClient(url + "/v1") as client:
            assert chat(client, "judge-model", "hi", 0.0, 8) == ["served judge-model"]
    with pytest.raises(ServerError), JsonClient(base + "/v1", timeout_s=2, max_retries=0) as client:  # gone
        chat(client, "judge-model", "hi", 0.0, 8)
    assert "request" in (tmp_path / "server.log").read_text()


def test_a_model_server_that_dies_while_starting_is_reported_with_its_log(tmp_path):
    import sys
    import time

    from yulan.stages.curation.server import free_port, serving

    started = time.monotonic()
    command = [sys.executable, "-c", "import sys; print('torch.OutOfMemoryError: CUDA out of memory'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match="(?s)exited with status 3.*CUDA out of memory"):
        with serving(command, f"http://127.0.0.1:{free_port()}", tmp_path / "server.log"):
            pass
    assert time.monotonic() - started < 10


def test_a_classifier_the_job_started_server_does_not_serve_is_refused():
    """Without an endpoint the job serves only the generator: asking another model would fail for every pair."""
    from yulan.schema.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        load(["experiment=curation_yulan", "curation.sources.science.topic_classifier=other/classifier"])
    assert "curation.sources.science.topic_classifier" in str(caught.value)
    assert "set topic_classifier to the generator" in str(caught.value)
    endpoint = "curation.sources.science.endpoint=http://host:8000/v1"
    load(["experiment=curation_yulan", "curation.sources.science.topic_classifier=other/classifier", endpoint])
