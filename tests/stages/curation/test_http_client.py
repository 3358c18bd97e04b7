"""The jobs' HTTP client against a stand-in of a hosted OpenAI-compatible API: a bearer token it demands, 429 with
Retry-After, 5xx, bad replies; and the judge step going through it."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from tests.conftest import chat_reply
from yulan.runtime.http import JsonClient, ServerError, chat, openai_client, retry_after_s
from yulan.schema.curation import JudgeConfig
from yulan.stages.curation import judge

KEY = "test-key-123"


class HostedApi:
    """Answers POST /v1/chat/completions only with `Authorization: Bearer KEY`; `script` lists what the next requests
    get (a status and headers) before the normal answer; every request is recorded."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list[tuple[int, dict]] = []
        self.reply = lambda body: chat_reply("hello")
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.requests.append(
                    {
                        "time": time.monotonic(),
                        "auth": self.headers.get("Authorization"),
                        "body": body,
                        "connection": self.client_address,
                    }
                )
                if self.headers.get("Authorization") != f"Bearer {KEY}":
                    return self.answer(401, {"error": {"message": "Incorrect API key provided"}})
                if api.script:
                    status, headers = api.script.pop(0)
                    return self.answer(status, {"error": {"message": "slow down"}}, headers)
                self.answer(200, api.reply(body))

            def answer(self, status, data, headers=None):
                payload = json.dumps(data).encode()
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()


@pytest.fixture()
def api():
    with HostedApi() as server:
        yield server


def test_the_key_is_read_from_the_named_variable_and_sent_as_a_bearer_token(api, monkeypatch):
    monkeypatch.setenv("YULAN_TEST_API_KEY", KEY)
    config = JudgeConfig(backend="openai", endpoint=api.url, api_key_env="YULAN_TEST_API_KEY")
    with openai_client(api.url, config, "curation.judge") as client:
        assert chat(client, "judge", "hi", 0.0, 8) == ["hello"]
    assert api.requests[0]["auth"] == f"Bearer {KEY}"


def test_a_refused_key_fails_at_once_and_says_which_setting_names_it(api):
    with JsonClient(api.url, api_key="wrong", max_retries=3) as client, pytest.raises(ServerError) as caught:
        chat(client, "judge", "hi", 0.0, 8)
    assert len(api.requests) == 1  # a 401 is not retried
    assert "HTTP 401" in str(caught.value) and "api_key_env" in str(caught.value)


def test_a_named_variable_that_is_unset_is_an_error_not_an_anonymous_request(api, monkeypatch):
    monkeypatch.delenv("YULAN_TEST_API_KEY", raising=False)
    config = JudgeConfig(backend="openai", endpoint=api.url, api_key_env="YULAN_TEST_API_KEY")
    with pytest.raises(ServerError) as caught:
        openai_client(api.url, config, "curation.judge")
    assert "curation.judge.api_key_env names the environment variable YULAN_TEST_API_KEY" in str(caught.value)
    assert api.requests == []


def test_a_key_pasted_into_the_config_is_refused(api):
    with pytest.raises(ValidationError) as caught:
        JudgeConfig(backend="openai", endpoint=api.url, api_key_env="sk-proj-abc123")
    assert "api_key_env" in str(caught.value)


def test_429_waits_the_servers_retry_after_then_succeeds_on_the_same_connection_pool(api):
    api.script = [(429, {"Retry-After": "1"}), (503, {})]
    with JsonClient(api.url, api_key=KEY, max_retries=3) as client:
        assert chat(client, "judge", "hi", 0.0, 8) == ["hello"]
    first, second, third = api.requests
    assert second["time"] - first["time"] >= 0.95  # Retry-After: 1 was honoured
    assert third["time"] - second["time"] < 1.0  # a 503 without Retry-After backs off (at most 0.5 s at first)


def test_retries_end_with_an_error_naming_the_url_and_the_last_failure(api):
    api.script = [(429, {"Retry-After": "0"})] * 3
    with JsonClient(api.url, api_key=KEY, max_retries=2) as client, pytest.raises(ServerError) as caught:
        chat(client, "judge", "hi", 0.0, 8)
    assert len(api.requests) == 3 and "HTTP 429" in str(caught.value) and "after 3 attempts" in str(caught.value)
    assert f"{api.url}/chat/completions" in str(caught.value)


def test_a_server_asking_to_wait_for_longer_than_the_cap_is_not_waited_for(api):
    api.script = [(429, {"Retry-After": "3600"})]
    started = time.monotonic()
    with JsonClient(api.url, api_key=KEY, max_retries=3) as client, pytest.raises(ServerError) as caught:
        chat(client, "judge", "hi", 0.0, 8)
    assert time.monotonic() - started < 5 and "asks to wait 3600 s" in str(caught.value)


def test_a_reply_without_choices_is_asked_again():
    replies = iter([{"unexpected": True}, chat_reply("fine")])
    with HostedApi() as api:
        api.reply = lambda body: next(replies)
        with JsonClient(api.url, api_key=KEY, max_retries=1) as client:
            assert chat(client, "judge", "hi", 0.0, 8) == ["fine"]


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_s("7") == 7.0 and retry_after_s(None) is None and retry_after_s("soon") is None
    assert 50 < retry_after_s(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))) <= 60


def test_the_judge_step_authenticates_asks_for_structured_output_and_runs_concurrently(api, tmp_path, monkeypatch):
    monkeypatch.setenv("YULAN_TEST_API_KEY", KEY)
    in_flight, peak, lock = [0], [0], threading.Lock()

    def scored(body):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.05)
        with lock:
            in_flight[0] -= 1
        return chat_reply(json.dumps({"instruction_following": 4, "informativeness": 4, "truthfulness": 5}))

    api.reply = scored
    api.script = [(429, {"Retry-After": "0"})]
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(
            json.dumps(
                {
                    "id": str(i),
                    "category": "general_en",
                    "messages": [{"role": "user", "content": f"Q{i}?"}, {"role": "assistant", "content": f"A{i}."}],
                }
            )
            + "\n"
            for i in range(12)
        )
    )
    config = JudgeConfig(
        backend="openai", endpoint=api.url, api_key_env="YULAN_TEST_API_KEY", concurrency=4, cache=False
    )
    report = judge.run(source, tmp_path / "out.jsonl", config)
    assert report["judge_calls"] == 12 and report["unjudged"] == 0 and len(api.requests) == 13  # one 429, retried
    assert 2 <= peak[0] <= 4  # concurrency is the setting, not a constant
    schema = api.requests[-1]["body"]["response_format"]["json_schema"]["schema"]
    assert schema["required"] == list(config.dimensions)
    assert schema["properties"]["truthfulness"] == {"type": "integer", "minimum": 1, "maximum": 5}


def test_an_unusable_judgement_is_asked_again_sampled_with_a_seed_of_its_own():
    """Asked greedily again, the judge would repeat its unusable reply: each retry samples at retry_temperature with
    its own seed, and the first usable reply counts."""
    from tests.conftest import json_server

    bodies = []

    def reply(body):
        bodies.append(body)
        usable = len(bodies) == 3
        return chat_reply(
            json.dumps({"instruction_following": 4, "informativeness": 5, "truthfulness": 3}) if usable else "   "
        )

    config = JudgeConfig(backend="openai", endpoint="http://unused/v1", max_retries=3, retry_temperature=0.6)
    sample = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    with json_server(reply) as url, openai_client(url, config, "curation.judge") as client:
        assert judge.judge_one(sample, config, client) == {
            "scores": {"instruction_following": 4, "informativeness": 5, "truthfulness": 3},
            "mean": 4.0,
        }
    assert [(b["temperature"], b["seed"]) for b in bodies] == [(0.0, 0), (0.6, 1), (0.6, 2)]
