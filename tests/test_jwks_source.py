"""JWKSKeySource: caching, unknown-kid refetch, failures keeping the last good set.

The JWKS is served by a small Starlette app through httpx's ASGI transport (a
real httpx client, no network); the time is an injected monotonic clock, and
the waits of the background tasks go through an injected ``sleep`` that moves it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jwtsess import (
    JWKSKeySource,
    KeyringError,
    TokenSettings,
    UnknownKeyId,
    Verifier,
    rotate_keys,
)
from tests.support.kit import AUDIENCE, ISSUER, TokenKit
from tests.support.redis_server import free_port

Kit = Callable[..., TokenKit]
URL = "http://issuer.test/.well-known/jwks.json"


@dataclass
class Served:
    """What the fake issuer answers next; counts the requests."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(
        default_factory=lambda: {"content-type": "application/json", "cache-control": "max-age=60"}
    )
    requests: int = 0
    gate: asyncio.Event | None = None  # when set, answers wait for it

    def app(self) -> Starlette:
        async def jwks(request: Request) -> Response:
            self.requests += 1
            if self.gate is not None:
                await self.gate.wait()
            return Response(self.body, status_code=self.status, headers=self.headers)

        return Starlette(routes=[Route("/.well-known/jwks.json", jwks)])


class Ticker:
    """Monotonic time that moves only when the code under test sleeps (or a test says)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


@dataclass
class Setup:
    kit: TokenKit
    served: Served
    ticker: Ticker
    source: JWKSKeySource
    verifier: Verifier

    def publish(self) -> None:
        self.kit.keyring.reload()
        self.served.body = json.dumps(self.kit.keyring.jwks()).encode()


@pytest.fixture
async def setup(make_kit: Kit) -> AsyncIterator[Setup]:
    kit = make_kit("ES256")
    served = Served(body=json.dumps(kit.keyring.jwks()).encode())
    ticker = Ticker()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=served.app()))
    source = JWKSKeySource.from_url(
        URL, client=client, monotonic=ticker, sleep=ticker.sleep, min_ttl=10, max_ttl=120
    )
    verifier = Verifier(source, kit.settings, clock=kit.clock)
    try:
        yield Setup(kit, served, ticker, source, verifier)
    finally:
        await source.stop()
        await client.aclose()


async def test_start_fetches_and_the_set_verifies(setup: Setup) -> None:
    await setup.source.refresh()
    assert setup.source.kids == [setup.kit.keyring.signing_key().kid]
    assert setup.verifier.verify(setup.kit.token()).sub == "user-1"
    assert setup.served.requests == 1
    assert setup.source.fetches == 1


@pytest.mark.parametrize(
    ("cache_control", "lifetime"),
    [
        ("max-age=60", 60),
        ("public, max-age=5", 10),  # below the floor
        ("max-age=86400", 120),  # above the ceiling
        ("no-store", 10),
        (None, 120),  # not said: the ceiling
    ],
)
async def test_cache_control_max_age_within_floor_and_ceiling(
    setup: Setup, cache_control: str | None, lifetime: float
) -> None:
    if cache_control is None:
        del setup.served.headers["cache-control"]
    else:
        setup.served.headers["cache-control"] = cache_control
    await setup.source.refresh()
    assert setup.source.expires_in() == lifetime


async def test_the_background_task_refetches_when_the_lifetime_ends(setup: Setup) -> None:
    await setup.source.start()
    for _ in range(5):
        await asyncio.sleep(0)  # the task sleeps 60 "seconds" (the ticker), then fetches
    assert setup.served.requests >= 2
    assert setup.ticker.now >= 1000 + 60


async def test_unknown_kid_one_refetch_for_a_flood_then_it_verifies(setup: Setup) -> None:
    await setup.source.refresh()
    rotate_keys(setup.kit.directory, immediate=True, clock=setup.kit.clock)
    setup.kit.clock.advance(1)  # the new key signs from the next instant
    setup.publish()
    new_token = setup.kit.token()
    setup.served.gate = asyncio.Event()
    with pytest.raises(UnknownKeyId) as err:
        setup.verifier.verify(new_token)
    waiters = [asyncio.create_task(setup.verifier.wait_for_key(err.value)) for _ in range(200)]
    for _ in range(5):
        await asyncio.sleep(0)
    for i in range(1000):  # a flood of made-up kids meanwhile
        assert setup.source.verification_key(f"forged-{i}") is None
    setup.served.gate.set()
    assert all(await asyncio.gather(*waiters))
    assert setup.served.requests == 2  # the start, and one refetch for all of them
    assert setup.verifier.verify(new_token).kid == err.value.kid


async def test_forced_refetches_are_rate_limited_from_the_last_one(setup: Setup) -> None:
    await setup.source.refresh()
    assert not await setup.source.wait_for_key("forged-1")  # refetched at once: no such kid
    assert setup.served.requests == 2
    # Within the interval: the next one waits until 0.5 s after the last forced one.
    before = setup.ticker.now
    assert not await setup.source.wait_for_key("forged-2")
    assert setup.served.requests == 3
    assert setup.ticker.now == pytest.approx(before + 0.5)
    # Past it: at once again.
    setup.ticker.now += 5
    before = setup.ticker.now
    assert not await setup.source.wait_for_key("forged-3")
    assert (setup.served.requests, setup.ticker.now) == (4, before)


async def test_a_request_waits_at_most_refetch_wait(setup: Setup) -> None:
    await setup.source.refresh()
    setup.served.gate = asyncio.Event()  # the issuer hangs
    source = setup.source
    source._refetch_wait = 0.05  # a short real bound for this test
    assert not await source.wait_for_key("new-kid")
    setup.served.gate.set()


async def test_a_key_that_leaves_the_set_stops_verifying_after_the_next_fetch(
    setup: Setup,
) -> None:
    await setup.source.refresh()
    old_token = setup.kit.token()
    setup.verifier.verify(old_token)  # cached now
    rotate_keys(setup.kit.directory, immediate=True, clock=setup.kit.clock)
    setup.kit.clock.advance(1)  # the new key signs from the next instant
    setup.kit.keyring.reload()
    new_only = [k for k in setup.kit.keyring.jwks()["keys"] if k["kid"] != old_token_kid(setup)]
    setup.served.body = json.dumps({"keys": new_only}).encode()
    assert setup.verifier.verify(old_token)  # until the next successful fetch
    await setup.source.refresh()
    with pytest.raises(UnknownKeyId):
        setup.verifier.verify(old_token)


def old_token_kid(setup: Setup) -> str:
    return setup.kit.keyring.manifest.keys[0].kid


BAD_ANSWERS = [
    pytest.param(500, "application/json", b"{}", "HTTP 500", id="500"),
    pytest.param(200, "text/html", b"<html>login</html>", "not JSON", id="html"),
    pytest.param(200, "application/json", b'{"keys": [{"kty": "EC"', "not a JSON", id="truncated"),
    pytest.param(200, "application/json", b"x" * 10_000_000, "bytes", id="10MB"),
    pytest.param(302, "text/plain", b"", "HTTP 302", id="redirect"),
]


@pytest.mark.parametrize(("status", "ctype", "body", "message"), BAD_ANSWERS)
async def test_a_bad_answer_keeps_the_last_good_set(
    setup: Setup,
    caplog: pytest.LogCaptureFixture,
    status: int,
    ctype: str,
    body: bytes,
    message: str,
) -> None:
    await setup.source.refresh()
    token = setup.kit.token()
    generation = setup.source.generation
    setup.served.status, setup.served.body = status, body
    setup.served.headers["content-type"] = ctype
    caplog.set_level(logging.WARNING, logger="jwtsess.jwks")
    for _ in range(3):
        with pytest.raises(KeyringError, match=message):
            await setup.source.refresh()
    assert setup.source.fetch_failures == 3
    assert message in (setup.source.last_error or "")
    assert len(caplog.records) == 1  # logged once, counted every time
    assert setup.source.generation == generation
    assert Verifier(setup.source, setup.kit.settings, clock=setup.kit.clock).verify(token)
    assert setup.source.expires_in() <= 4  # retried soon, with a backoff
    setup.served.status, setup.served.body = 200, json.dumps(setup.kit.keyring.jwks()).encode()
    setup.served.headers["content-type"] = "application/json"
    await setup.source.refresh()
    assert setup.source.last_error is None


async def test_private_members_in_the_answer_keep_the_last_good_set(setup: Setup) -> None:
    await setup.source.refresh()
    jwks = setup.kit.keyring.jwks()
    jwks["keys"][0]["d"] = "AQAB"
    setup.served.body = json.dumps(jwks).encode()
    with pytest.raises(KeyringError, match="private key members"):
        await setup.source.refresh()
    assert setup.verifier.verify(setup.kit.token())


async def test_an_unreachable_url_fails_start() -> None:
    url = f"http://127.0.0.1:{free_port()}/jwks.json"
    source = JWKSKeySource.from_url(url, timeout=2)
    try:
        with pytest.raises(KeyringError, match="ConnectError"):
            await source.start()
        assert source.kids == []
    finally:
        await source.stop()


async def test_a_symmetric_jwks_is_a_start_up_error(setup: Setup) -> None:
    setup.served.body = json.dumps({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}).encode()
    with pytest.raises(KeyringError, match="public-only"):
        await setup.source.start()


def test_a_source_never_started_refuses_and_says_so(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="jwtsess.jwks")
    for _ in range(10):
        with pytest.raises(UnknownKeyId):
            setup.verifier.verify(setup.kit.token())
    assert len(caplog.records) == 1
    assert "keys.start()" in caplog.records[0].getMessage()


def test_from_file_reads_now_and_refuses_a_bad_file(make_kit: Kit, tmp_path: Path) -> None:
    kit = make_kit("EdDSA")
    path = tmp_path / "jwks.json"
    with pytest.raises(KeyringError, match="cannot be read"):
        JWKSKeySource.from_file(path)
    path.write_text(json.dumps(kit.keyring.jwks()))
    source = JWKSKeySource.from_file(path)
    verifier = Verifier(source, TokenSettings(issuer=ISSUER, audience=AUDIENCE), clock=kit.clock)
    assert verifier.verify(kit.token()).kid == kit.keyring.signing_key().kid
    path.write_text(json.dumps({"keys": []}))
    with pytest.raises(KeyringError, match="no RS256"):
        JWKSKeySource.from_file(path)


async def test_file_source_picks_up_a_rotation_on_an_unknown_kid(
    make_kit: Kit, tmp_path: Path
) -> None:
    kit = make_kit("RS256")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(kit.keyring.jwks()))
    ticker = Ticker()
    source = JWKSKeySource.from_file(path, monotonic=ticker, sleep=ticker.sleep)
    verifier = Verifier(source, kit.settings, clock=kit.clock)
    rotate_keys(kit.directory, immediate=True, clock=kit.clock)
    kit.clock.advance(1)
    kit.keyring.reload()
    path.write_text(json.dumps(kit.keyring.jwks()))
    token = kit.token()
    with pytest.raises(UnknownKeyId) as err:
        verifier.verify(token)
    assert await verifier.wait_for_key(err.value)
    assert verifier.verify(token).kid == err.value.kid
    await source.stop()


@pytest.mark.parametrize(
    "kwargs",
    [{"min_ttl": 0}, {"min_ttl": 10, "max_ttl": 5}, {"refetch_interval": 0}, {"refetch_wait": 0}],
)
def test_bad_options(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        JWKSKeySource.from_url(URL, **kwargs)  # type: ignore[arg-type]


def test_not_an_http_url() -> None:
    with pytest.raises(ValueError, match="not an http"):
        JWKSKeySource.from_url("file:///etc/jwks.json")


def test_plain_http_off_loopback_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="jwtsess.jwks")
    JWKSKeySource.from_url("http://127.0.0.1:9/jwks.json")
    assert caplog.records == []
    JWKSKeySource.from_url(URL)
    assert "use https" in caplog.text


async def test_the_middleware_waits_for_the_refetch_after_an_immediate_rotation(
    setup: Setup,
) -> None:
    """The first request with the new kid is answered 200, not 401."""
    from starlette.responses import JSONResponse

    from jwtsess.web import JWTAuthMiddleware, WebConfig

    async def me(request: Request) -> Response:
        return JSONResponse({"kid": request.user.claims.kid})

    app = JWTAuthMiddleware(
        Starlette(routes=[Route("/me", me)]),
        verifier=setup.verifier,
        config=WebConfig(secure=False),
    )
    await setup.source.refresh()
    rotate_keys(setup.kit.directory, immediate=True, clock=setup.kit.clock)
    setup.kit.clock.advance(1)
    setup.publish()
    token = setup.kit.token()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as client:
        answer = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["kid"] in setup.source.kids
        forged = await client.get("/me", headers={"Authorization": f"Bearer {token[:-4]}AAAA"})
        assert forged.status_code == 401
        client.cookies.set("jwtsess-access", token)
        assert (await client.get("/me")).status_code == 200
