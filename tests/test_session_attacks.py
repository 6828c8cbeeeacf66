"""Attacks on the session logic (issue 12): one named test per attack."""

from __future__ import annotations

from pathlib import Path

import httpx
from freezegun import freeze_time

from examples.app import DemoConfig, create_app

ATTACKER = ("203.0.113.9", 40000)
OWNER = ("198.51.100.7", 50000)


def _demo(tmp_path: Path) -> httpx.ASGITransport:
    config = DemoConfig(
        host="127.0.0.1",
        port=8000,
        keys_dir=str(tmp_path / "keys"),
        alg="HS256",
        access_ttl=900,
        secure_cookies=False,
        redis_url=None,
    )
    return httpx.ASGITransport(app=create_app(config))


def _client(app: httpx.ASGITransport, address: tuple[str, int]) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app.app, client=address)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000")


async def test_password_guessing_on_the_demo_login_is_throttled(tmp_path: Path) -> None:
    """Issue 12 point 6: 260 wrong passwords in a row were all answered (~17 a second).

    Now the sixth guess within a minute from one address is refused with 429 and
    Retry-After (no password hash is computed), a right password from that
    address is refused too (no oracle), and alice at her own address still logs in.
    """
    app = _demo(tmp_path)
    # The minute starts at 08:00:00; the clock stands still, so the window cannot roll over.
    with freeze_time("2027-01-15 08:00:15", real_asyncio=True):
        async with _client(app, ATTACKER) as attacker, _client(app, OWNER) as owner:
            statuses = []
            for n in range(260):
                answer = await attacker.post(
                    "/auth/login", json={"username": "alice", "password": f"guess-{n}"}
                )
                statuses.append(answer.status_code)
                if answer.status_code != 401:
                    break
            assert statuses == [401] * 5 + [429]
            assert answer.json()["error"] == "rate_limited"
            assert answer.headers["Retry-After"] == "45"

            right = {"username": "alice", "password": "alice-demo-password"}
            assert (await attacker.post("/auth/login", json=right)).status_code == 429
            mine = await owner.post("/auth/login", json=right)
            assert mine.status_code == 200
            assert mine.json()["access_token"]
