"""The demo (`make run`), served by uvicorn, answers the README's curl walkthrough."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def demo_port(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "JWTSESS_KEYS_DIR": str(tmp_path / "keys"),
    }
    env.pop("REDIS_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    ready = threading.Event()
    lines: list[str] = []
    stream = process.stdout
    assert stream is not None

    def drain() -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace")
            lines.append(line)
            if "Application startup complete" in line:
                ready.set()
        ready.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        if not ready.wait(timeout=30) or process.poll() is not None:
            pytest.fail("the demo did not start:\n" + "".join(lines))
        assert any("store = MemoryStore" in line for line in lines)  # it says what it uses
        assert any("signing with RS256" in line for line in lines)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        reader.join(timeout=10)
        stream.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_walkthrough(demo_port: int, tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    walkthrough = readme.split("## Try it", 1)[1]
    script = re.search(r"```sh\n(.*?)```", walkthrough, re.S)
    assert script is not None
    text = script.group(1).replace("127.0.0.1:8000", f"127.0.0.1:{demo_port}")
    text = text.replace("/tmp/jwtsess-tokens.json", str(tmp_path / "tokens.json"))
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", text],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert '"sub":"alice"' in out
    assert '"role":"admin"' in out
    assert '{"logged_out":true}' in out
    assert "HTTP/1.1 401" in out  # /me after logout
    assert '"error":"token_revoked"' in out
    assert 'error="invalid_token"' in out
