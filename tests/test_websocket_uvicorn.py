"""Websockets over real uvicorn: two processes of examples/fastapi_app.py on one private Redis.

- ``test_revoked_session_closes_its_websocket_in_another_process``: a websocket
  opened on process B is closed (1008 ``token_revoked``) when its session is
  logged out through process A: B's mirror hears it from the feed and closes the
  socket. The latency from the logout's answer to the close frame is measured
  over TRIALS and printed (p50/p99/max; design target p99 <= 50 ms on an idle
  machine; asserted only against a loose sanity bound).
- ``test_refused_handshakes_leave_no_error_in_the_log``: anonymous, malformed,
  forged and expired handshakes on A (uvicorn's default ``websockets-sansio``
  protocol: jwtsess closes 1008, uvicorn answers 403) and on B (``--ws wsproto``:
  the denial response, 401 with ``WWW-Authenticate`` and the JSON body); neither
  server logs an ERROR or a traceback.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from jwtsess import init_keys
from tests.support.redis_server import running_redis
from tests.support.servers import Server, running_uvicorn

FACTORY = "examples.fastapi_app:app_from_env"
TRIALS = 30
SANITY_BOUND = 2.0  # seconds: what is asserted (the design target is reported)


def ws_url(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


@contextlib.contextmanager
def fastapi_demo(keys: Path, redis_url: str, *, ws: str) -> Iterator[Server]:
    env = {"JWTSESS_KEYS_DIR": str(keys), "REDIS_URL": redis_url}
    env["JWTSESS_ISSUER"] = "http://jwtsess.test"  # one site served by two processes
    with running_uvicorn(FACTORY, env=env, options=["--ws", ws]) as server:
        yield server


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    directory = tmp_path_factory.mktemp("websockets")
    init_keys(directory / "keys", "ES256")
    with running_redis(directory / "redis") as redis_server:
        with (
            fastapi_demo(directory / "keys", redis_server.url, ws="websockets-sansio") as a,
            fastapi_demo(directory / "keys", redis_server.url, ws="wsproto") as b,
        ):
            yield a, b
            logs = [server.stop() for server in (a, b)]
        for log in logs:
            assert "Traceback" not in log, log
            assert "ERROR" not in log, log


def login(client: httpx.Client, server: Server, user: str = "alice") -> dict[str, str]:
    password = f"{user}-demo-password"
    response = client.post(
        f"{server.base_url}/auth/login", json={"username": user, "password": password}
    )
    assert response.status_code == 200, response.text
    pair: dict[str, str] = response.json()
    return pair


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def test_revoked_session_closes_its_websocket_in_another_process(
    servers: tuple[Server, Server], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = servers
    latencies: list[float] = []
    with httpx.Client(timeout=10) as client:
        for _ in range(TRIALS):
            pair = login(client, a)
            bearer = {"Authorization": f"Bearer {pair['access_token']}"}
            with connect(ws_url(b), additional_headers=bearer, open_timeout=10) as ws:
                ws.send("ping")
                assert ws.recv(timeout=10) == "alice: ping"
                answer = client.post(f"{a.base_url}/auth/logout", headers=bearer)
                answered = time.perf_counter()
                assert answer.json() == {"logged_out": True}
                with pytest.raises(ConnectionClosed) as closed:
                    ws.recv(timeout=SANITY_BOUND + 3)
                latencies.append(time.perf_counter() - answered)
                assert closed.value.rcvd is not None
                assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "token_revoked")
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    with capsys.disabled():  # shown in every run, as the multi-worker figures are
        print(
            f"\n[websockets] close after logout in another process, {TRIALS} trials: "
            f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} "
            "ms (design target p99 <= 50 ms on an idle machine)"
        )
    assert max(latencies) < SANITY_BOUND


def test_refused_handshakes_leave_no_error_in_the_log(servers: tuple[Server, Server]) -> None:
    a, b = servers
    with httpx.Client(timeout=10) as client:
        good = login(client, a)["access_token"]
        other = login(client, a, "bob")["access_token"]
    header, _, signature = good.split(".")
    forged = f"{header}.{other.split('.')[1]}.{signature}"  # bob's claims under alice's signature
    cases = [(None, "token_missing"), ("garbage", "token_malformed"), (forged, "token_invalid")]
    for server, denial in ((a, False), (b, True)):
        for token, code in cases:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            with pytest.raises(InvalidStatus) as refused:
                connect(ws_url(server), additional_headers=headers, open_timeout=10)
            response = refused.value.response
            if denial:  # wsproto: the denial response, as an http request would get it
                assert response.status_code == 401
                assert f'"error":"{code}"' in response.body.decode()
                assert response.headers["WWW-Authenticate"].startswith('Bearer realm="jwtsess"')
            else:  # websockets-sansio: closed 1008 before the handshake, uvicorn says 403
                assert response.status_code == 403
    for server in servers:
        assert server.problems == 0, server.log()
