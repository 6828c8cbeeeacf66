"""HTTP throughput: uvicorn (one worker) under wrk, the same route with and without auth.

Each app is served in its own uvicorn process on a free loopback port and
loaded by wrk for a bounded time. On 2 cores, wrk and uvicorn get one each.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from jwtsess import AccessTokenSigner, KeyRing, TokenSettings, init_keys

from .http_app import AUDIENCE, ISSUER

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Throughput:
    name: str
    requests_per_second: float
    errors: int


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve(factory: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            factory,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return process


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("uvicorn exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            threading.Event().wait(0.05)
    raise RuntimeError("uvicorn did not listen in time")


def _wrk(port: int, seconds: int, connections: int, header: str) -> Throughput:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-H", header]
    out = subprocess.run(
        [*args, f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return Throughput("", rps, errors)


def http_throughput(*, seconds: int, connections: int = 32) -> list[Throughput]:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (make bench installs Debian's wrk)")
    keys = tempfile.mkdtemp(prefix="jwtsess-bench-http-")
    init_keys(keys, "HS256")
    keyring = KeyRing(keys)
    token, _ = AccessTokenSigner(keyring, TokenSettings(issuer=ISSUER, audience=AUDIENCE)).issue(
        "bench", "user", "sid"
    )
    env = {**os.environ, "JWTSESS_BENCH_KEYS": keys}
    results = []
    # Both runs send the same header, so the difference is the auth work alone.
    header = f"Authorization: Bearer {token}"
    for name, factory in (
        ("uvicorn, no auth", "bench.http_app:plain_app"),
        ("uvicorn, jwtsess auth", "bench.http_app:auth_app"),
    ):
        port = _free_port()
        server = _serve(factory, port, env)
        try:
            _wait_listening(port, server)
            _wrk(port, 2, connections, header)  # warm-up
            result = _wrk(port, seconds, connections, header)
            result.name = name
            results.append(result)
        finally:
            server.terminate()
            server.wait(timeout=10)
            if server.stdout is not None:
                server.stdout.close()
    return results
