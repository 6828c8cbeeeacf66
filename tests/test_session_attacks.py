"""Attacks on the session logic (issue 12): one named test per attack.

Each reproduces a flaw a black-box review found and failed on the code before
its fix. The refresh, revocation and grace-window attacks (points 1-4) run on
MemoryStore, one Redis and the 3-master cluster (the ``store`` fixture behind
``make_web``), with the clock frozen and moved by hand.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from freezegun import freeze_time

from examples.app import DemoConfig, create_app
from jwtsess import KeyRing, SessionPolicy, TokenInvalid
from jwtsess.refresh_secrets import prune_refresh_secrets, rotate_refresh_secret
from jwtsess.refresh_token import RefreshSecret, decode_refresh_token, encode_refresh_token
from tests.support.kit import T0
from tests.support.web_app import USER_AGENT, MakeWeb, WebApp, bearer

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


# -- points 1-4: refresh, revocation and the grace window --------------------------------

MICROS = 1_000_000
THIEF_IP, THIEF_UA = "198.51.100.66", "curl/8.9.1"
NAT_IP = "192.0.2.44"  # one address shared by many users (NAT, a proxy without forwarded headers)


def thief(web: WebApp) -> httpx.AsyncClient:
    client = web.client(ip=THIEF_IP)
    client.headers["user-agent"] = THIEF_UA
    return client


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/auth/refresh", json={"refresh_token": token})


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code, response.text


async def me(web: WebApp, access_token: str) -> httpx.Response:
    return await web.client().get("/me", headers=bearer(access_token))


async def test_rate_limiter_cannot_hide_refresh_token_theft(make_web: MakeWeb) -> None:
    """Point 1: a thief spends the session's refresh budget, then the victim's stale
    token comes back. Before: 429 (and jwtsess.client retries 429 forever), the theft
    never detected. Now: reuse is decided before any limit."""
    web = await make_web()  # default limits: 30 refreshes per session per 60 s
    assert T0 % 60 == 0  # alice logs in as a window starts
    alice = await web.login("alice")
    stolen, crook = alice.refresh_token, thief(web)
    for _ in range(30):  # RT0 -> ... -> RT30, all answered
        response = await refresh(crook, stolen)
        assert response.status_code == 200, response.text
        stolen, thief_access = response.json()["refresh_token"], response.json()["access_token"]
    assert_error(await refresh(crook, stolen), 429, "rate_limited")  # the budget is spent

    web.clock.advance(15)
    victim = await refresh(web.client(), alice.refresh_token)
    assert_error(victim, 401, "refresh_reused")  # not 429: the theft is detected
    assert_error(await me(web, thief_access), 401, "token_revoked")  # the thief is out
    assert_error(await refresh(crook, stolen), 401, "session_not_found")


async def test_dead_session_refreshes_cannot_exhaust_an_address(make_web: MakeWeb) -> None:
    """Point 2: refreshes with a dead session's token from one address used to spend
    that address's budget, so everyone behind the same NAT got 429."""
    web = await make_web()
    bob = await web.login("bob", ip=NAT_IP)
    await web.issuer.logout(bob.session_id)
    alice = await web.login("alice", ip=NAT_IP)
    client = web.client(ip=NAT_IP)
    for _ in range(35):
        assert_error(await refresh(client, bob.refresh_token), 401, "session_not_found")
    response = await refresh(client, alice.refresh_token)
    assert response.status_code == 200, response.text


async def test_logout_all_storm_cannot_lock_out_fresh_logins(make_web: MakeWeb) -> None:
    """Point 3a: each logout-all pushed the user's not-before a whole second ahead, so
    40 concurrent ones (or 12 in a row, or reissue in a loop) made every fresh
    login's token "issued in the future" for ~30 s."""
    web = await make_web()
    victim = await web.login("alice")
    client = web.client()
    answers = await asyncio.gather(
        *(client.post("/auth/logout-all", headers=bearer(victim.access_token)) for _ in range(40))
    )
    assert all(a.status_code in (200, 401) for a in answers), [a.text for a in answers]
    fresh = await web.login("alice")
    response = await me(web, fresh.access_token)
    assert response.status_code == 200, response.text

    for _ in range(12):  # one logout-all after another, within a second
        pair = await web.login("alice")
        response = await client.post("/auth/logout-all", headers=bearer(pair.access_token))
        assert response.status_code == 200, response.text
    for _ in range(12):  # an admin script calling reissue in a loop
        await web.issuer.reissue("alice")
    fresh = await web.login("alice")
    response = await me(web, fresh.access_token)
    assert response.status_code == 200, response.text
    assert fresh.claims.iat == int(web.clock())  # not a second ahead, let alone 24
    feed = await web.store.feed_snapshot(now=web.clock())
    newest = max(r.not_before_us for r in feed.entries if r.kind == "user")
    assert newest - web.clock() * MICROS < 1000  # microseconds past the clock, not seconds


async def test_logged_out_token_never_comes_back(make_web: MakeWeb) -> None:
    """Point 3b: after quick login + logout-all cycles a new token's iat ran ~9 s ahead,
    outliving its session's revocation: the logged-out token answered 200 again at
    +911 s until it expired."""
    web = await make_web()
    client = web.client()
    for _ in range(10):
        pair = await web.login("alice")
        response = await client.post("/auth/logout-all", headers=bearer(pair.access_token))
        assert response.status_code == 200, response.text
    pair = await web.login("alice")
    response = await client.post("/auth/logout", headers=bearer(pair.access_token))
    assert response.status_code == 200, response.text
    start = web.clock()
    for offset in [0, 60, 300, 600, 899, *range(900, 931)]:
        web.clock.now = start + offset
        web.mirror.sweep()  # what the follower task does every few seconds
        response = await me(web, pair.access_token)
        assert response.status_code == 401, f"+{offset} s: {response.text}"


async def test_grace_window_replay_from_another_client_is_theft(make_web: MakeWeb) -> None:
    """Point 4: inside the grace window anyone presenting the previous refresh token
    got the current one and took the chain over silently."""
    web = await make_web()
    bob = await web.login("bob")
    client = web.client()
    first = await refresh(client, bob.refresh_token)
    assert first.status_code == 200, first.text
    web.clock.advance(1)
    retried = await refresh(client, bob.refresh_token)  # bob's answer was lost: retried
    assert retried.status_code == 200, retried.text
    assert retried.json()["refresh_token"] == first.json()["refresh_token"]

    web.clock.advance(1)
    replay = await refresh(thief(web), bob.refresh_token)  # another address and User-Agent
    assert_error(replay, 401, "refresh_reused")  # never a working refresh token
    assert_error(await refresh(client, first.json()["refresh_token"]), 401, "session_not_found")
    assert_error(await me(web, first.json()["access_token"]), 401, "token_revoked")
    assert USER_AGENT != THIEF_UA


async def test_lone_surrogate_password_on_the_fastapi_demo_login_is_not_a_500(
    tmp_path: Path,
) -> None:
    """FastAPI parses the body itself (not through ``read_json_object``): a password of
    ``"\\ud800"`` reached the demo's scrypt hash and raised UnicodeEncodeError, a 500 with
    a traceback. ``PasswordBook`` now hashes such a string (it is just a wrong password)."""
    app = _fastapi_demo(tmp_path)
    async with _client(app, ATTACKER) as client:
        answer = await client.post(
            "/auth/login",
            content=b'{"username": "bob", "password": "\\ud800"}',
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "invalid_credentials"


async def test_unwritable_input_in_the_fastapi_demo_login_is_a_400_not_a_500(
    tmp_path: Path,
) -> None:
    """FastAPI's default 422 answer echoes the input, and ``NaN``, ``Infinity`` or a
    lone surrogate in it cannot be written as JSON: the FastAPI demo's login
    answered 500 with a traceback. It now answers jwtsess's 400 ``bad_request``,
    naming the fields and never echoing the input."""
    app = _fastapi_demo(tmp_path)
    async with _client(app, ATTACKER) as client:
        for body in (
            b'{"username": NaN, "password": Infinity}',
            b'{"refresh_token": "\\ud800"}',
            b"[1]",
        ):
            answer = await client.post(
                "/auth/login", content=body, headers={"Content-Type": "application/json"}
            )
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"] == "bad_request"
            assert "NaN" not in answer.text
