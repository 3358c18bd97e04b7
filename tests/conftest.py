import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


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
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
         "--platform", "manylinux1_x86_64", "openrlhf==0.11.2", "-d", str(target)],
        check=True,
    )
    return next(target.glob("openrlhf-0.11.2-*.whl"))


def run(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=env)
