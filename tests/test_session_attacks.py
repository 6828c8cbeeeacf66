"""Attacks on the session logic (issue 12): one named test per attack."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from freezegun import freeze_time

from examples.app import DemoConfig, create_app
from jwtsess import KeyRing, SessionPolicy, TokenInvalid
from jwtsess.refresh_secrets import prune_refresh_secrets, rotate_refresh_secret
from jwtsess.refresh_token import RefreshSecret, decode_refresh_token, encode_refresh_token
from tests.support.web_app import MakeWeb, WebApp

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


# -- refresh-secret rotation (issue 12 point 7) ---------------------------------------------


def _secret_id(refresh_token: str) -> int:
    """The secret a refresh token names: rt1.<tag>.<random>.<gen>[.<id>].<mac>."""
    parts = refresh_token.split(".")
    return int(parts[4]) if len(parts) == 6 else 0


@pytest.mark.system  # the store sits behind a fault proxy
async def test_refresh_token_of_an_unknown_secret_is_invalid_before_any_store_call(
    faulty_web: WebApp,
) -> None:
    web = faulty_web
    assert web.fault is not None
    pair = await web.login("alice")
    rotate_refresh_secret(web.kit.directory, clock=web.clock)
    web.clock.advance(3)  # the keyring has seen secret 1
    ref = decode_refresh_token(web.kit.keyring, pair.refresh_token)
    secret_one = RefreshSecret(1, web.kit.keyring.refresh_secret_by_id(1) or b"")
    named = {
        # a secret id that does not exist, MACed with a secret that does
        "unknown": encode_refresh_token(RefreshSecret(7, secret_one.secret), ref.sid, ref.gen),
        # secret 0 spelled out: a second spelling of a token is not a token
        "zero": pair.refresh_token.replace(f".{ref.gen}.", f".{ref.gen}.0.", 1),
        # the MAC of secret 1 on a token naming secret 0, and the other way round
        "swapped": encode_refresh_token(secret_one, ref.sid, ref.gen).replace(".1.", ".", 1),
        "relabelled": pair.refresh_token.replace(f".{ref.gen}.", f".{ref.gen}.1.", 1),
    }
    web.fault.cut()  # any store call would now answer 503
    client = web.client()
    for name, token in named.items():
        answer = await client.post("/auth/refresh", json={"refresh_token": token})
        expected = "token_malformed" if name == "zero" else "token_invalid"
        assert (name, answer.status_code, answer.json()["error"]) == (name, 401, expected)


async def test_refresh_secret_rotation_through_a_whole_overlap(make_web: MakeWeb) -> None:
    """`rotate-refresh` logs nobody out; `prune` ends the old secret only when it is unusable."""
    month = 30 * 24 * 3600
    web = await make_web(policy=SessionPolicy(absolute_ttl=month, idle_ttl=month))
    clock, directory, client = web.clock, web.kit.directory, web.client()
    early = await web.login("alice")  # refreshed during the overlap
    idle = await web.login("dave")  # never refreshed: its token stays under secret 0
    assert _secret_id(early.refresh_token) == 0

    assert rotate_refresh_secret(directory, clock=clock).id == 1
    # This process has not looked at the manifest yet: it still MACs with secret 0,
    # which stays valid...
    unaware = await web.login("carol")
    assert _secret_id(unaware.refresh_token) == 0
    # ...and a token another process MACed with secret 1 already works here: an
    # unknown secret id makes the keyring look again (at most every 0.25 s).
    other_process = KeyRing(directory, clock=clock)
    ref = decode_refresh_token(other_process, unaware.refresh_token)
    from_other = encode_refresh_token(other_process.refresh_secret, ref.sid, ref.gen)
    assert _secret_id(from_other) == 1
    clock.advance(0.5)
    answer = await client.post("/auth/refresh", json={"refresh_token": from_other})
    assert answer.status_code == 200, answer.text
    clock.advance(2)  # check_interval: every new token now under secret 1
    assert _secret_id((await web.login("erin")).refresh_token) == 1

    # The overlap: a token of secret 0 still refreshes, and its successor is under secret 1.
    clock.advance(month - 3600)
    assert prune_refresh_secrets(directory, clock=clock) == []  # too early: sessions live on
    answer = await client.post("/auth/refresh", json={"refresh_token": early.refresh_token})
    assert answer.status_code == 200, answer.text
    assert _secret_id(answer.json()["refresh_token"]) == 1

    # Every session opened under secret 0 has reached its absolute lifetime: prune.
    clock.advance(3600 + 60)  # + the manifest's leeway
    assert prune_refresh_secrets(directory, clock=clock) == [0]
    assert not (directory / "refresh.secret").exists()
    # Refused by the MAC check alone (the store would say session_not_found).
    for old_secret_token in (idle.refresh_token, early.refresh_token):
        with pytest.raises(TokenInvalid):
            decode_refresh_token(web.kit.keyring, old_secret_token)
    answer = await client.post("/auth/refresh", json={"refresh_token": idle.refresh_token})
    assert (answer.status_code, answer.json()["error"]) == (401, "token_invalid")


# -- found by the black-box review of the demo (scripts/redteam.py, make redteam) -----------


def _fastapi_demo(tmp_path: Path) -> httpx.ASGITransport:
    from examples.fastapi_app import create_app as create_fastapi_app

    config = DemoConfig(
        host="127.0.0.1",
        port=8000,
        keys_dir=str(tmp_path / "keys"),
        alg="HS256",
        access_ttl=900,
        secure_cookies=False,
        redis_url=None,
    )
    return httpx.ASGITransport(app=create_fastapi_app(config))


async def test_lone_surrogate_in_a_login_body_is_a_400_not_a_500(tmp_path: Path) -> None:
    """``{"password": "\\ud800"}`` is well-formed JSON, but the string cannot be UTF-8:
    the demo's scrypt hash raised UnicodeEncodeError, a 500 with a traceback in
    uvicorn's log. ``read_json_object`` now refuses lone surrogates (I-JSON) as
    ``bad_request``, for every route that reads a JSON body."""
    app = _demo(tmp_path)
    async with _client(app, ATTACKER) as client:
        for body in (
            b'{"username": "bob", "password": "\\ud800"}',
            b'{"username": "\\udfff", "password": "x"}',
            b'{"username": "bob", "password": "x", "note": ["\\udbff"]}',
        ):
            answer = await client.post(
                "/auth/login", content=body, headers={"Content-Type": "application/json"}
            )
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"] == "bad_request"
        refresh = await client.post(
            "/auth/refresh",
            content=b'{"refresh_token": "\\ud800"}',
            headers={"Content-Type": "application/json"},
        )
        assert refresh.status_code == 400
        # A surrogate pair is ordinary text (an emoji), not refused.
        answer = await client.post(
            "/auth/login",
            content=b'{"username": "bob", "password": "\\ud83d\\ude00"}',
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 401


async def test_password_guessing_on_the_fastapi_demo_login_is_throttled(tmp_path: Path) -> None:
    """examples/fastapi_app.py (the demo as a FastAPI app) answered every wrong password:
    12 in a row were 12 x 401. It now throttles like examples/app.py (LoginLimiter)."""
    app = _fastapi_demo(tmp_path)
    with freeze_time("2027-01-15 08:00:15", real_asyncio=True):
        async with _client(app, ATTACKER) as attacker, _client(app, OWNER) as owner:
            statuses = []
            for n in range(6):
                answer = await attacker.post(
                    "/auth/login", json={"username": "alice", "password": f"guess-{n}"}
                )
                statuses.append(answer.status_code)
            assert statuses == [401] * 5 + [429]
            assert answer.json()["error"] == "rate_limited"
            assert answer.headers["Retry-After"] == "45"
            right = {"username": "alice", "password": "alice-demo-password"}
            assert (await attacker.post("/auth/login", json=right)).status_code == 429
            assert (await owner.post("/auth/login", json=right)).status_code == 200
