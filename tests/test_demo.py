"""The demo (`make run`), served by uvicorn, answers the README's curl walkthrough."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import Server, running_uvicorn

pytestmark = pytest.mark.system  # starts the demo under uvicorn

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Server]:
    """``make run``'s ``python -m examples.app`` on a free port, on the embedded store."""
    env = {"JWTSESS_KEYS_DIR": str(tmp_path / "keys"), "REDIS_URL": None}
    with running_uvicorn(module="examples.app", env=env) as server:
        assert any("store = MemoryStore" in line for line in server.lines)  # it says what it uses
        assert any("signing with RS256" in line for line in server.lines)
        yield server


@pytest.fixture
def demo_port(demo: Server) -> int:
    return demo.port


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


def _abandon_body(port: int, path: str, media_type: str = "application/json") -> None:
    """Declare a 100-byte body, send 10 bytes of it, and hang up."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: {media_type}\r\nContent-Length: 100\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode("ascii") + b'{"username')


def test_client_disconnecting_mid_body_leaves_no_traceback(demo: Server) -> None:
    """Issue 12 point 5: a client that hangs up mid-body is not a server error.

    20 abandoned bodies on each route that reads one (the demo's login, the
    library's refresh and its OAuth endpoints); the log is read after a graceful stop, by which time
    uvicorn has finished every request it started.
    """
    form = "application/x-www-form-urlencoded"
    for _ in range(20):
        _abandon_body(demo.port, "/auth/login")
        _abandon_body(demo.port, "/auth/refresh")
        for oauth_route in ("/auth/token", "/auth/revoke", "/auth/introspect"):
            _abandon_body(demo.port, oauth_route, form)
    # The server still answers, and answers properly.
    with httpx.Client(base_url=f"http://127.0.0.1:{demo.port}", timeout=30) as client:
        answer = client.post("/auth/refresh", json={"refresh_token": "x"})
    assert answer.status_code == 401
    log = demo.stop()
    assert "Traceback" not in log
    assert "Exception in ASGI application" not in log
    assert "ERROR" not in log
