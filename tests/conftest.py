import json
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


# `pytest` alone is the fast inner loop; these run with `pytest --all` (CI) or when named by `-m`
LEFT_OUT_BY_DEFAULT = ("slow", "slurm")


def pytest_addoption(parser):
    parser.addoption(
        "--all", action="store_true", help=f"also the tests marked {' and '.join(LEFT_OUT_BY_DEFAULT)} (as CI runs)"
    )


def pytest_collection_modifyitems(config, items):
    """A test that needs the OpenRLHF wheel downloads it unless $OPENRLHF_WHEEL names a local copy. Without --all or
    -m, the slow and SLURM tests are left out."""
    if not os.environ.get("OPENRLHF_WHEEL"):
        for item in items:
            if "openrlhf_wheel" in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.network)
    if config.getoption("--all") or config.getoption("markexpr"):
        return
    left_out = [item for item in items if any(item.get_closest_marker(name) for name in LEFT_OUT_BY_DEFAULT)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]


@pytest.fixture(autouse=True, scope="session")
def isolated_compose_cache(tmp_path_factory):
    """Tests never read or write the user's compose cache."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def openrlhf_wheel(tmp_path_factory) -> Path:
    """The real OpenRLHF 0.11.2 wheel (pure Python): $OPENRLHF_WHEEL, or downloaded from PyPI without dependencies."""
    if os.environ.get("OPENRLHF_WHEEL"):
        return Path(os.environ["OPENRLHF_WHEEL"])
    target = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--platform",
            "manylinux1_x86_64",
            "openrlhf==0.11.2",
            "-d",
            str(target),
        ],
        check=True,
    )
    return next(target.glob("openrlhf-0.11.2-*.whl"))


def write_jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def run(
    *args: str, cwd: Path = REPO, env: dict | None = None, preexec: Callable[[], None] | None = None
) -> subprocess.CompletedProcess:
    """This interpreter running `args`; `preexec` runs in the child first (a resource limit)."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=env, preexec_fn=preexec)


@contextmanager
def json_server(reply: Callable[[dict], dict]):
    """A local HTTP server answering every JSON POST with reply(body): a stand-in for a model server's API."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            data = json.dumps(reply(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()


def chat_reply(*contents: str) -> dict:
    """An OpenAI chat-completions answer with these choices."""
    return {"choices": [{"message": {"role": "assistant", "content": c}} for c in contents]}


CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def render_in_browser(page: Path, screenshot: Path, width: int = 1280, probe: str = "return null") -> dict:
    """`page` in headless Chromium (Debian's, driven by Selenium): its console errors, whether each image decoded,
    what the script `probe` returns in it, and a screenshot of the whole page. Skips where Chromium is not installed
    (.ci/run installs it)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={screenshot.parent / 'chromium-profile'}",
        f"--window-size={width},1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        driver.get(page.resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth}))"
        )
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, min(height + 100, 16000))
        driver.save_screenshot(str(screenshot))
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        title = driver.title
        probed = driver.execute_script(probe)
    finally:
        driver.quit()
    return {"errors": errors, "images": images, "title": title, "height": height, "probe": probed}
