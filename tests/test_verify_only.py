"""Acceptance (issue 11): a resource server that only verifies, next to the demo issuer.

Three processes' worth of parts: the demo (``python -m examples.app``: keys,
Redis as the default user) issues tokens; ``python -m examples.resource_server``
runs in an empty directory with only a JWKS URL and the read-only Redis user;
this test drives both over HTTP. The JWKS URL points at a relay in this process
that passes the demo's JWKS through, or answers badly on demand.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
import pytest

from jwtsess import init_keys
from tests.support.readonly_redis import ReadOnlyRedis, running_readonly_redis
from tests.support.redis_server import free_port
from tests.support.service import Service

ISSUER = "https://login.example.test"  # JWTSESS_ISSUER: not derived from HOST:PORT
AUDIENCE = "api.example.test"
HUGE = 10 * 1024 * 1024

pytestmark = pytest.mark.system  # starts redis-server and service processes


@dataclass
class Relay:
    """The JWKS URL the resource server knows: the demo's JWKS, or a bad answer."""

    upstream: str
    port: int = field(default_factory=free_port)
    mode: str = "proxy"
    served: dict[str, int] = field(default_factory=dict)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"

    def start(self) -> None:
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                mode = relay.mode
                relay.served[mode] = relay.served.get(mode, 0) + 1
                # The client may stop reading a body it refuses: as it should.
                with contextlib.suppress(OSError):
                    self._answer(mode)

            def _send(self, status: int, ctype: str, body: bytes, length: int | None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Cache-Control", "public, max-age=300")
                if length is not None:
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)

            def _answer(self, mode: str) -> None:
                with urllib.request.urlopen(relay.upstream, timeout=5) as answer:  # noqa: S310
                    good = answer.read()
                if mode == "proxy":
                    self._send(200, "application/json", good, len(good))
                elif mode == "500":
                    self._send(500, "application/json", b'{"error": "boom"}', 17)
                elif mode == "html":
                    page = b"<html><body>Sign in</body></html>"
                    self._send(200, "text/html; charset=utf-8", page, len(page))
                elif mode == "truncated":
                    self._send(200, "application/json", good[: len(good) // 2], len(good) // 2)
                elif mode == "private":
                    jwks = json.loads(good)
                    jwks["keys"][0]["d"] = "AQAB"
                    body = json.dumps(jwks).encode()
                    self._send(200, "application/json", body, len(body))
                elif mode == "huge":
                    self._send(200, "application/json", b" " * HUGE, HUGE)
                elif mode == "huge-chunked":  # no Content-Length: the reader must count
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    chunk = b" " * 65536
                    for _ in range(HUGE // len(chunk)):
                        self.wfile.write(chunk)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@dataclass
class Deployment:
    redis: ReadOnlyRedis
    keys: Path
    demo: Service
    relay: Relay
    api: Service
    http: httpx.Client

    def login(self, user: str = "alice") -> str:
        answer = self.http.post(
            f"{self.demo.url}/auth/login",
            json={"username": user, "password": f"{user}-demo-password"},
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    def me(self, token: str) -> httpx.Response:
        return self.http.get(f"{self.api.url}/me", headers={"Authorization": f"Bearer {token}"})

    def keytool(self, *args: str) -> None:
        subprocess.run(
            [str(Path(sys.executable).with_name("jwtsess-keys")), "--dir", str(self.keys), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    keys = tmp_path / "issuer-keys"
    init_keys(keys, "RS256", publish_delay=2.0, max_token_ttl=900)
    empty = tmp_path / "resource-server-cwd"
    empty.mkdir()
    with running_readonly_redis(tmp_path / "redis") as redis_server:
        demo = Service(
            "examples.app",
            {
                "JWTSESS_KEYS_DIR": str(keys),
                "REDIS_URL": redis_server.url,
                "JWTSESS_ISSUER": ISSUER,
                "JWTSESS_AUDIENCE": AUDIENCE,
            },
        )
        relay = Relay(f"{demo.url}/.well-known/jwks.json")
        relay.start()
        api: Service | None = None
        try:
            api = Service(
                "examples.resource_server",
                {
                    "JWTSESS_JWKS_URL": relay.url,
                    "JWTSESS_ISSUER": ISSUER,
                    "JWTSESS_AUDIENCE": AUDIENCE,
                    "REDIS_URL": redis_server.reader_url,
                },
                cwd=empty,
                drop=("JWTSESS_KEYS_DIR",),
            )
            with httpx.Client(timeout=10) as http:
                yield Deployment(redis_server, keys, demo, relay, api, http)
        finally:
            api_log = api.stop() if api is not None else ""
            relay.stop()
            demo_log = demo.stop()
            assert "Traceback" not in api_log, api_log
            assert "Traceback" not in demo_log, demo_log
            assert list(empty.iterdir()) == []  # it wrote nothing, made no key directory


def header_alg(token: str) -> str:
    return str(jwt.get_unverified_header(token)["alg"])


def switch_keys(d: Deployment, live: list[str], rotate: list[str], failures: list[str]) -> str:
    """Rotate at the issuer while verifying every live token at the resource server
    in a loop; returns the first token signed with the new key."""
    before = jwt.get_unverified_header(live[-1])["kid"]
    d.keytool("rotate", *rotate)
    deadline = time.monotonic() + 30  # the demo notices within its 2 s check_interval
    verified = 0
    while time.monotonic() < deadline:
        for token in live:
            answer = d.me(token)
            verified += 1
            if answer.status_code != 200:
                failures.append(f"{answer.status_code} {answer.text}")
        token = d.login()
        if jwt.get_unverified_header(token)["kid"] != before:
            answer = d.me(token)  # the very first request with the new kid
            if answer.status_code != 200:
                failures.append(f"new key: {answer.status_code} {answer.text}")
            assert verified > 0
            return token
    raise AssertionError(f"the demo never signed with a new key after rotate {rotate}")


def propagation_ms(d: Deployment, rounds: int, route: str) -> list[float]:
    """``route`` (logout or logout-all) at the demo, then how long until the resource
    server refuses the token (bob's: alice's live tokens must stay valid)."""
    samples = []
    for _ in range(rounds):
        token = d.login("bob")
        first = d.me(token)
        assert first.status_code == 200, first.text  # cached at the resource server
        answer = d.http.post(
            f"{d.demo.url}/auth/{route}", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 200, answer.text
        sent = time.perf_counter()
        while True:
            refused = d.me(token)
            if refused.status_code == 401:
                assert refused.json()["error"] == "token_revoked"
                break
            assert refused.status_code == 200, refused.text
            assert time.perf_counter() - sent < 5, "never refused"
        samples.append((time.perf_counter() - sent) * 1000)
    return samples


def test_a_resource_server_with_only_a_jwks_url_and_a_read_only_redis_user(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    d = deployment
    assert "no key directory" in d.api.log()
    failures: list[str] = []
    token = d.login()
    assert header_alg(token) == "RS256"
    claims = d.me(token).json()
    assert (claims["sub"], claims["iss"], claims["aud"]) == ("alice", ISSUER, AUDIENCE)
    live = [token]
    samples = {"RS256": measure(d)}

    # A scheduled rotation (published 2 s before it signs), then immediate ones
    # that switch algorithm: the resource server never fails a verification.
    live.append(switch_keys(d, live, [], failures))
    for alg in ("ES256", "EdDSA"):
        token = switch_keys(d, live, ["--immediate", "--alg", alg], failures)
        assert header_alg(token) == alg
        live.append(token)
        samples[alg] = measure(d)
    assert failures == []
    for token in live:  # tokens of all four keys, RS256, RS256, ES256, EdDSA
        assert d.me(token).status_code == 200

    # Bad JWKS answers never stop verification with the last good keys, never a 500.
    forged = jwt.encode(
        {"sub": "x"}, "k" * 32, algorithm="HS256", headers={"kid": "nope", "typ": "at+jwt"}
    )
    bad_modes = ["500", "html", "truncated", "private", "huge", "huge-chunked", "down"]
    for mode in bad_modes:
        d.relay.mode = mode
        if mode == "down":
            d.relay.stop()  # connection refused
        seen = d.relay.served.get(mode, 0)
        deadline = time.monotonic() + 10
        while True:  # an unknown kid makes the resource server refetch (rate-limited)
            answer = d.me(forged)
            assert answer.status_code == 401, answer.text
            if mode == "down" or d.relay.served.get(mode, 0) > seen:
                break
            assert time.monotonic() < deadline, f"no refetch in mode {mode}"
        for token in live:
            answer = d.me(token)
            assert answer.status_code == 200, f"{mode}: {answer.status_code} {answer.text}"
    d.relay.mode = "proxy"
    d.relay.start()
    log = d.api.log()
    assert "JWKS fetch failed" in log
    for needle in ("HTTP 500", "not JSON", "private key members", "bytes"):
        assert needle in log, needle

    # After a logout-all at the demo it refuses the user's tokens of every key.
    d.http.post(f"{d.demo.url}/auth/logout-all", headers={"Authorization": f"Bearer {live[-1]}"})
    deadline = time.monotonic() + 5
    while any(d.me(t).status_code == 200 for t in live):
        assert time.monotonic() < deadline
    assert {d.me(t).json()["error"] for t in live} == {"token_revoked"}

    with capsys.disabled():
        for route in ("logout-all", "logout"):
            got = [x for per_alg in samples.values() for x in per_alg[route]]
            p99 = statistics.quantiles(got, n=100, method="inclusive")[98]
            print(
                f"\nverify-only propagation, {route} at the demo -> the resource server "
                f"refuses (two processes over HTTP, read-only Redis user, RS256/ES256/EdDSA): "
                f"p50={statistics.median(got):.2f} ms p99={p99:.2f} ms max={max(got):.2f} ms "
                f"over {len(got)}; target 50 ms"
            )


def measure(d: Deployment) -> dict[str, list[float]]:
    # Few logout-alls: each moves bob's not-before a second ahead (issue 12 point 3),
    # and his next token must stay within the leeway; logouts revoke one session.
    return {
        "logout-all": propagation_ms(d, 3, "logout-all"),
        "logout": propagation_ms(d, 20, "logout"),
    }


def test_without_redis_url_it_says_so_and_checks_no_revocation(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    init_keys(keys, "EdDSA")
    demo = Service("examples.app", {"JWTSESS_KEYS_DIR": str(keys)}, drop=("REDIS_URL",))
    api: Service | None = None
    try:
        api = Service(
            "examples.resource_server",
            {
                "JWTSESS_JWKS_URL": f"{demo.url}/.well-known/jwks.json",
                "JWTSESS_ISSUER": f"http://127.0.0.1:{demo.port}",
            },
            cwd=tmp_path,
            drop=("REDIS_URL", "JWTSESS_AUDIENCE"),
        )
        assert "revocations are NOT checked" in api.log()
        with httpx.Client(timeout=10) as http:
            answer = http.post(
                f"{demo.url}/auth/login",
                json={"username": "bob", "password": "bob-demo-password"},
            )
            token = answer.json()["access_token"]
            bearer = {"Authorization": f"Bearer {token}"}
            assert http.get(f"{api.url}/me", headers=bearer).json()["sub"] == "bob"
            assert http.get(f"{api.url}/me").status_code == 401
            http.post(f"{demo.url}/auth/logout-all", headers=bearer)
            assert http.get(f"{demo.url}/me", headers=bearer).status_code == 401
            # As documented: without the feed, the resource server cannot know.
            assert http.get(f"{api.url}/me", headers=bearer).status_code == 200
    finally:
        if api is not None:
            api.stop()
        demo.stop()


def test_it_refuses_to_start_without_its_configuration(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "examples.resource_server"],
        cwd=Path(__file__).resolve().parents[1],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "set JWTSESS_JWKS_URL and JWTSESS_ISSUER" in result.stderr
