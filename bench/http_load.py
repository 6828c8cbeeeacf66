"""HTTP throughput: uvicorn (one worker) under wrk, the same route with and without auth.

Each app is served in its own uvicorn process on a free loopback port and
loaded by wrk for a bounded time. On 2 cores, wrk and uvicorn get one each.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from jwtsess import AccessTokenSigner, KeyRing, TokenSettings, init_keys
from tests.support.servers import running_uvicorn

from .http_app import AUDIENCE, ISSUER

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Throughput:
    name: str
    requests_per_second: float
    errors: int


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
    env = {"JWTSESS_BENCH_KEYS": keys}
    results = []
    # Both runs send the same header, so the difference is the auth work alone.
    header = f"Authorization: Bearer {token}"
    for name, factory in (
        ("uvicorn, no auth", "bench.http_app:plain_app"),
        ("uvicorn, jwtsess auth", "bench.http_app:auth_app"),
    ):
        with running_uvicorn(factory, env=env) as server:
            _wrk(server.port, 2, connections, header)  # warm-up
            result = _wrk(server.port, seconds, connections, header)
            result.name = name
            results.append(result)
    return results
