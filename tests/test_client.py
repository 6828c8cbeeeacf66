"""jwtsess.client: the flow stepped by hand, httpx.MockTransport, then the real ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from examples.app import DemoConfig, create_app
from jwtsess import Issuer, KeyRing, MemoryStore, RevocationMirror, TokenSettings, Verifier
from jwtsess.client import JWTSessAuth, RefreshFailed, TokenState
from jwtsess.errors import JWTSessError
from jwtsess.keytool import init_keys
from jwtsess.web import (
    JWTAuthMiddleware,
    JWTUser,
    OAuthEndpoints,
    WebConfig,
    auth_routes,
    require_auth,
)
from tests.support.kit import AUDIENCE, ISSUER, T0, MutableClock

BASE = "http://api.test"


def pair(gen: int, expires_in: int = 60) -> dict[str, Any]:
    return {
        "access_token": f"access-{gen}",
        "refresh_token": f"refresh-{gen}",
        "token_type": "Bearer",
        "expires_in": expires_in,
        "session_id": "sid-1",
    }


def make_auth(clock: MutableClock, **kwargs: Any) -> JWTSessAuth:
    """Tokens of generation 0, granted now (on `clock`) for 60 s."""
    return JWTSessAuth.from_token_response(pair(0), clock=clock, **kwargs)


def step(
    flow: Generator[httpx.Request, httpx.Response, None], response: httpx.Response
) -> httpx.Request | None:
    """Send ``response`` into the flow: the next request it yields, or None when done."""
    try:
        return flow.send(response)
    except StopIteration:
        return None


def bearer(request: httpx.Request | None) -> str:
    assert request is not None
    return request.headers["authorization"]


def is_refresh(request: httpx.Request | None, token: str = "refresh-0") -> bool:  # noqa: S107
    assert request is not None
    return (
        request.method == "POST"
        and request.url.path == "/auth/refresh"
        and json.loads(request.content) == {"refresh_token": token}
    )


def unauthorized(error: str = "token_expired") -> httpx.Response:
    return httpx.Response(
        401,
        json={"error": error, "detail": "nope"},
        headers={"WWW-Authenticate": 'Bearer realm="jwtsess", error="invalid_token"'},
    )


# -- the flow, stepped by hand -------------------------------------------------------------


def test_attaches_the_access_token(clock: MutableClock) -> None:
    flow = make_auth(clock).sync_auth_flow(httpx.Request("GET", f"{BASE}/data"))
    request = next(flow)
    assert bearer(request) == "Bearer access-0"
    assert step(flow, httpx.Response(200)) is None


def test_refreshes_early_within_the_margin(clock: MutableClock) -> None:
    seen: list[TokenState] = []
    auth = make_auth(clock, on_refresh=seen.append, refresh_margin=30)
    clock.advance(29)  # 31 s left: not yet
    flow = auth.sync_auth_flow(httpx.Request("GET", f"{BASE}/data"))
    assert bearer(next(flow)) == "Bearer access-0"
    flow.close()

    clock.advance(1)  # 30 s left: refresh before sending
    flow = auth.sync_auth_flow(httpx.Request("GET", f"{BASE}/data"))
    refresh = next(flow)
    assert is_refresh(refresh)
    assert refresh.url == httpx.URL(f"{BASE}/auth/refresh")
    assert "authorization" not in refresh.headers
    retried = step(flow, httpx.Response(200, json=pair(1)))
    assert retried is not None
    assert retried.url.path == "/data"
    assert bearer(retried) == "Bearer access-1"
    assert step(flow, httpx.Response(200)) is None
    assert auth.tokens == seen[0]
    assert seen[0].refresh_token == "refresh-1"
    assert seen[0].expires_at == clock.now + 60


def test_margin_is_at_most_half_the_lifetime(clock: MutableClock) -> None:
    auth = JWTSessAuth.from_token_response(pair(0, expires_in=20), clock=clock)
    clock.advance(9)  # 11 s left of 20: a 30 s margin would refresh on every request
    assert bearer(next(auth.sync_auth_flow(httpx.Request("GET", BASE)))) == "Bearer access-0"
    clock.advance(1)
    assert is_refresh(next(auth.sync_auth_flow(httpx.Request("GET", BASE))))


def test_unknown_expiry_refreshes_only_on_401(clock: MutableClock) -> None:
    auth = JWTSessAuth("access-0", "refresh-0", clock=clock)
    clock.advance(10**6)
    assert bearer(next(auth.sync_auth_flow(httpx.Request("GET", BASE)))) == "Bearer access-0"


def test_401_refreshes_then_retries_once(clock: MutableClock) -> None:
    seen: list[TokenState] = []
    auth = make_auth(clock, on_refresh=seen.append)
    flow = auth.sync_auth_flow(httpx.Request("POST", f"{BASE}/items", content=b"payload"))
    assert bearer(next(flow)) == "Bearer access-0"
    refresh = step(flow, unauthorized())
    assert is_refresh(refresh)
    retried = step(flow, httpx.Response(200, json=pair(1)))
    assert bearer(retried) == "Bearer access-1"
    assert retried is not None
    assert retried.content == b"payload"  # the body is replayed
    assert step(flow, unauthorized()) is None  # a second 401 is the answer: no loop
    assert [s.refresh_token for s in seen] == ["refresh-1"]


def test_refusal_raises_and_drops_the_tokens(clock: MutableClock) -> None:
    auth = make_auth(clock)
    flow = auth.sync_auth_flow(httpx.Request("GET", f"{BASE}/data"))
    next(flow)
    assert is_refresh(step(flow, unauthorized()))
    with pytest.raises(RefreshFailed) as err:
        step(flow, unauthorized("refresh_reused"))
    assert err.value.code == "refresh_failed"
    assert err.value.error == "refresh_reused"
    assert err.value.detail == "nope"
    assert err.value.status_code == 401
    assert not err.value.retryable
    assert isinstance(err.value, JWTSessError)
    assert repr(err.value) == "RefreshFailed(error='refresh_reused', detail='nope')"
    assert str(err.value) == "refresh_reused: nope"
    assert auth.tokens is None

    # Every later request fails the same way, without a request, until new tokens come.
    with pytest.raises(RefreshFailed) as again:
        next(auth.sync_auth_flow(httpx.Request("GET", f"{BASE}/data")))
    assert again.value.error == "refresh_reused"
    auth.set_tokens(TokenState("access-9", "refresh-9"))
    assert bearer(next(auth.sync_auth_flow(httpx.Request("GET", BASE)))) == "Bearer access-9"


@pytest.mark.parametrize(
    ("response", "error", "retryable"),
    [
        (httpx.Response(400, json={"error": "bad_request", "detail": "x"}), "bad_request", False),
        (httpx.Response(403, json={"error": "csrf_failed", "detail": "x"}), "csrf_failed", False),
        (httpx.Response(429, json={"error": "rate_limited", "detail": "x"}), "rate_limited", True),
        (
            httpx.Response(503, json={"error": "store_unavailable", "detail": "x"}),
            "store_unavailable",
            True,
        ),
        (httpx.Response(502, text="<html>bad gateway</html>"), "http_error", True),
        (httpx.Response(200, json={"access_token": "a"}), "invalid_response", True),
        (httpx.Response(200, json=["not", "an", "object"]), "invalid_response", True),
        (httpx.Response(200, text="not json"), "invalid_response", True),
    ],
)
def test_failures_keep_the_tokens_only_when_retrying_can_help(
    clock: MutableClock, response: httpx.Response, error: str, retryable: bool
) -> None:
    auth = make_auth(clock)
    flow = auth.sync_auth_flow(httpx.Request("GET", f"{BASE}/data"))
    next(flow)
    step(flow, unauthorized())
    with pytest.raises(RefreshFailed) as err:
        step(flow, response)
    assert (err.value.error, err.value.retryable) == (error, retryable)
    assert err.value.status_code == response.status_code
    assert (auth.tokens is not None) is retryable


def test_early_refresh_failure_falls_back_to_a_still_valid_token(clock: MutableClock) -> None:
    auth = make_auth(clock)
    clock.advance(50)  # 10 s left
    flow = auth.sync_auth_flow(httpx.Request("GET", f"{BASE}/data"))
    assert is_refresh(next(flow))
    sent = step(flow, httpx.Response(503, json={"error": "store_unavailable", "detail": "x"}))
    assert bearer(sent) == "Bearer access-0"

    clock.advance(10)  # expired: nothing to fall back to
    flow = auth.sync_auth_flow(httpx.Request("GET", f"{BASE}/data"))
    assert is_refresh(next(flow))
    with pytest.raises(RefreshFailed) as err:
        step(flow, httpx.Response(503, json={"error": "store_unavailable", "detail": "x"}))
    assert err.value.retryable


def test_early_refresh_refusal_is_not_papered_over(clock: MutableClock) -> None:
    auth = make_auth(clock)
    clock.advance(50)
    flow = auth.sync_auth_flow(httpx.Request("GET", f"{BASE}/data"))
    next(flow)
    with pytest.raises(RefreshFailed):
        step(flow, unauthorized("session_not_found"))
    assert auth.tokens is None


def test_a_request_that_waited_uses_the_refreshed_token(clock: MutableClock) -> None:
    seen: list[TokenState] = []
    auth = make_auth(clock, on_refresh=seen.append)
    first = auth.sync_auth_flow(httpx.Request("GET", f"{BASE}/a"))
    second = auth.sync_auth_flow(httpx.Request("GET", f"{BASE}/b"))
    assert bearer(next(first)) == bearer(next(second)) == "Bearer access-0"
    assert is_refresh(step(first, unauthorized()))
    assert bearer(step(first, httpx.Response(200, json=pair(1)))) == "Bearer access-1"
    # The second request's 401 was for access-0, already replaced: retry, no refresh.
    retried = step(second, unauthorized())
    assert retried is not None
    assert retried.url.path == "/b"
    assert bearer(retried) == "Bearer access-1"
    assert len(seen) == 1


def test_refresh_url_resolution_and_copied_request_details(clock: MutableClock) -> None:
    request = httpx.Request(
        "GET",
        "https://api.test/v1/items/7",
        headers={"User-Agent": "app/1.0"},
        extensions={"timeout": {"connect": 1.0, "read": 2.0, "write": 3.0, "pool": 4.0}},
    )
    for refresh_url, expected in [
        ("/auth/refresh", "https://api.test/auth/refresh"),
        ("/api/auth/refresh", "https://api.test/api/auth/refresh"),
        ("https://login.test/auth/refresh", "https://login.test/auth/refresh"),
    ]:
        auth = make_auth(clock, refresh_url=refresh_url)
        clock.advance(60)
        refresh = next(auth.sync_auth_flow(request))
        clock.advance(-60)
        assert refresh.url == httpx.URL(expected)
        assert refresh.headers["user-agent"] == "app/1.0"
        assert refresh.headers["content-type"] == "application/json"
        assert refresh.extensions["timeout"] == request.extensions["timeout"]


def test_clear_makes_requests_fail_without_sending(clock: MutableClock) -> None:
    auth = make_auth(clock)
    auth.clear()
    with pytest.raises(RefreshFailed) as err:
        next(auth.sync_auth_flow(httpx.Request("GET", BASE)))
    assert err.value.error == "no_tokens"


def test_async_callback_needs_an_async_client(clock: MutableClock) -> None:
    async def persist(state: TokenState) -> None:
        raise AssertionError("never called")

    auth = make_auth(clock, on_refresh=persist)
    flow = auth.sync_auth_flow(httpx.Request("GET", BASE))
    next(flow)
    step(flow, unauthorized())
    with pytest.raises(TypeError, match="AsyncClient"):
        step(flow, httpx.Response(200, json=pair(1)))


async def test_async_flow_stepped_by_hand(clock: MutableClock) -> None:
    seen: list[TokenState] = []

    async def persist(state: TokenState) -> None:
        seen.append(state)

    auth = make_auth(clock, on_refresh=persist)
    flow = auth.async_auth_flow(httpx.Request("GET", f"{BASE}/data"))
    assert bearer(await flow.__anext__()) == "Bearer access-0"
    assert is_refresh(await flow.asend(unauthorized()))
    assert bearer(await flow.asend(httpx.Response(200, json=pair(1)))) == "Bearer access-1"
    with pytest.raises(StopAsyncIteration):
        await flow.asend(httpx.Response(200))
    assert [s.refresh_token for s in seen] == ["refresh-1"]

    clock.advance(60)  # early refresh, then a refusal
    flow = auth.async_auth_flow(httpx.Request("GET", f"{BASE}/data"))
    assert is_refresh(await flow.__anext__(), "refresh-1")
    with pytest.raises(RefreshFailed) as err:
        await flow.asend(unauthorized("refresh_reused"))
    assert err.value.error == "refresh_reused"
    assert auth.tokens is None


# -- tokens and options ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"access_token": "a"},
        {"access_token": "", "refresh_token": "r"},
        {"access_token": "a", "refresh_token": 5},
        {"access_token": "a", "refresh_token": "r", "token_type": "MAC"},
        {"access_token": "a", "refresh_token": "r", "expires_in": 0},
        {"access_token": "a", "refresh_token": "r", "expires_in": "60"},
        {"access_token": "a", "refresh_token": "r", "expires_in": True},
        {"access_token": "a", "refresh_token": "r", "expires_in": float("inf")},
    ],
)
def test_token_response_is_checked(body: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="token response"):
        TokenState.from_token_response(body, now=T0)


def test_token_state_hides_tokens_in_repr() -> None:
    state = TokenState.from_token_response(pair(0), now=T0)
    assert state == TokenState("access-0", "refresh-0", T0 + 60, 60.0, "sid-1")
    assert "access-0" not in repr(state)
    assert "refresh-0" not in repr(state)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"access_token": ""},
        {"refresh_token": ""},
        {"refresh_margin": -1},
        {"refresh_margin": float("nan")},
    ],
)
def test_constructor_checks(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        JWTSessAuth(**{"access_token": "a", "refresh_token": "r", **kwargs})


def test_importing_jwtsess_does_not_import_httpx() -> None:
    code = "import sys, jwtsess, jwtsess.web; assert 'httpx' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- httpx clients over MockTransport ------------------------------------------------------


@dataclass
class FakeServer:
    """A token server in miniature: rotates refresh tokens, guards ``/data``."""

    generation: int = 0
    expired: bool = False  # the current access token is refused until the next refresh
    refreshes: int = 0
    refresh_answer: httpx.Response | None = None  # set to make refreshes fail
    log: list[str] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/refresh":
            self.refreshes += 1
            if self.refresh_answer is not None:
                return self.refresh_answer
            if json.loads(request.content)["refresh_token"] != f"refresh-{self.generation}":
                return unauthorized("refresh_reused")
            self.generation, self.expired = self.generation + 1, False
            return httpx.Response(200, json=pair(self.generation))
        self.log.append(request.headers.get("authorization", ""))
        if (
            self.expired
            or request.headers.get("authorization") != f"Bearer access-{self.generation}"
        ):
            return unauthorized()
        return httpx.Response(200, json={"ok": True})


def test_sync_client_persists_the_rotated_refresh_token(clock: MutableClock) -> None:
    server = FakeServer()
    saved: list[str] = []
    auth = make_auth(clock, on_refresh=lambda state: saved.append(state.refresh_token))
    with httpx.Client(transport=httpx.MockTransport(server.handler), base_url=BASE) as client:
        assert client.get("/data", auth=auth).status_code == 200
        for _ in range(2):
            server.expired = True
            assert client.get("/data", auth=auth).status_code == 200
    assert server.refreshes == 2
    assert saved == ["refresh-1", "refresh-2"]
    assert auth.tokens is not None
    assert auth.tokens.refresh_token == "refresh-2"

    # A new process starts from what was persisted and carries on...
    resumed = JWTSessAuth("stale-access", saved[-1], clock=clock)
    with httpx.Client(transport=httpx.MockTransport(server.handler), base_url=BASE) as client:
        assert client.get("/data", auth=resumed).status_code == 200
    assert resumed.tokens is not None
    assert resumed.tokens.refresh_token == "refresh-3"

    # ...while one holding an old refresh token is refused.
    stale = JWTSessAuth("stale-access", saved[0], clock=clock)
    with (
        httpx.Client(transport=httpx.MockTransport(server.handler), base_url=BASE) as client,
        pytest.raises(RefreshFailed) as err,
    ):
        client.get("/data", auth=stale)
    assert err.value.error == "refresh_reused"
    assert stale.tokens is None


def test_sync_client_refreshes_early_without_sending_the_old_token(clock: MutableClock) -> None:
    server = FakeServer()
    auth = make_auth(clock)
    with httpx.Client(transport=httpx.MockTransport(server.handler), base_url=BASE) as client:
        clock.advance(45)  # 15 s left, within the 30 s margin
        response = client.get("/data", auth=auth)
    assert response.status_code == 200
    assert server.refreshes == 1
    assert server.log == ["Bearer access-1"]
    assert [r.request.url.path for r in response.history] == ["/auth/refresh"]


def test_threads_share_one_refresh(clock: MutableClock) -> None:
    """Ten threads all get a 401 for the same token: one refresh serves them all."""
    server, threads = FakeServer(), 10
    arrived = threading.Barrier(threads)
    seen: list[TokenState] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") == "Bearer access-0":
            arrived.wait(timeout=10)  # every thread's first try is in flight at once
            return unauthorized()
        return server.handler(request)

    auth = make_auth(clock, on_refresh=seen.append)
    with (
        httpx.Client(transport=httpx.MockTransport(handler), base_url=BASE) as client,
        ThreadPoolExecutor(threads) as pool,
    ):
        statuses = list(pool.map(lambda _: client.get("/data", auth=auth).status_code, range(10)))
    assert statuses == [200] * threads
    assert server.refreshes == 1
    assert len(seen) == 1


async def test_tasks_share_one_refresh_and_its_failure(clock: MutableClock) -> None:
    server, tasks = FakeServer(), 20
    arrived = asyncio.Event()
    waiting = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal waiting
        if request.headers.get("authorization") == "Bearer access-0":
            waiting += 1
            if waiting == tasks:
                arrived.set()
            await arrived.wait()  # every task's first try is in flight at once
            return unauthorized()
        for _ in range(10):  # let the others queue up on the lock
            await asyncio.sleep(0)
        return server.handler(request)

    auth = make_auth(clock)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url=BASE) as client:
        server.refresh_answer = httpx.Response(
            503, json={"error": "store_unavailable", "detail": "x"}
        )
        results = await asyncio.gather(
            *(client.get("/data", auth=auth) for _ in range(tasks)), return_exceptions=True
        )
        assert server.refreshes == 1
        assert all(isinstance(r, RefreshFailed) and r.retryable for r in results), results
        assert auth.tokens is not None  # kept: a later request may try again

        server.refresh_answer, waiting = None, 0
        arrived.clear()
        responses = await asyncio.gather(*(client.get("/data", auth=auth) for _ in range(tasks)))
    assert [r.status_code for r in responses] == [200] * tasks
    assert server.refreshes == 2


def test_one_auth_in_two_event_loops(clock: MutableClock) -> None:
    """The asyncio lock is made per loop, so a second ``asyncio.run`` can contend for it."""
    server = FakeServer()
    auth = make_auth(clock)

    async def handler(request: httpx.Request) -> httpx.Response:
        for _ in range(5):  # let the others queue up on the lock
            await asyncio.sleep(0)
        return server.handler(request)

    async def storm() -> list[int]:
        transport = httpx.MockTransport(handler)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            server.expired = True
            clock.advance(60)  # every request wants an early refresh: they contend
            responses = await asyncio.gather(*(client.get("/data", auth=auth) for _ in range(5)))
        return [r.status_code for r in responses]

    assert asyncio.run(storm()) == [200] * 5
    assert asyncio.run(storm()) == [200] * 5
    assert server.refreshes == 2


# -- the real ASGI app ----------------------------------------------------------------------


class RefreshCounter:
    """ASGI wrapper: counts refreshes, records the tokens ``/me`` saw, can hold requests."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.refreshes = 0
        self.seen: list[str] = []
        self.hold_token: str | None = None  # requests bearing it wait until hold_count arrived
        self.hold_count = 0
        self._held = 0
        self._release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            token = headers.get(b"authorization", b"").decode().removeprefix("Bearer ")
            if scope["path"] in ("/auth/refresh", "/auth/token"):
                self.refreshes += 1
                for _ in range(20):  # let every other request reach the client's lock
                    await asyncio.sleep(0)
            elif scope["path"] == "/me":
                self.seen.append(token)
                if self.hold_token is not None and token == self.hold_token:
                    self._held += 1
                    if self._held >= self.hold_count:
                        self._release.set()
                    await self._release.wait()
        await self.app(scope, receive, send)


@dataclass
class Service:
    """The jwtsess web pieces on an injected clock: expiry is crossed by moving it."""

    app: RefreshCounter
    starlette: Starlette
    clock: MutableClock
    issuer: Issuer


def build_service(directory: Path, clock: MutableClock) -> Service:
    init_keys(directory, "HS256", clock=clock)
    keyring = KeyRing(directory, clock=clock, monotonic=clock)
    settings = TokenSettings(issuer=ISSUER, audience=AUDIENCE, access_ttl=60)
    store = MemoryStore()
    mirror = RevocationMirror(store, clock=clock, block=0.05)
    issuer = Issuer(keyring, settings, store, clock=clock, mirror=mirror)
    verifier = Verifier(keyring, settings, clock=clock, revocation=mirror)
    web = WebConfig(secure=False)

    @require_auth()
    async def me(request: Request) -> Response:
        user: JWTUser = request.user
        return JSONResponse({"user": user.id, "session_id": user.session_id})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await mirror.start()
        try:
            yield
        finally:
            await mirror.stop()

    oauth = OAuthEndpoints(issuer, verifier, config=web)
    app = Starlette(
        routes=[
            Mount("/auth", app=auth_routes(issuer, config=web, oauth=oauth)),
            Route("/me", me),
        ],
        middleware=[Middleware(JWTAuthMiddleware, verifier=verifier, config=web)],
        lifespan=lifespan,
    )
    return Service(RefreshCounter(app), app, clock, issuer)


@pytest.fixture
async def service(tmp_path: Path, clock: MutableClock) -> AsyncIterator[Service]:
    built = build_service(tmp_path / "keys", clock)
    async with built.starlette.router.lifespan_context(built.starlette):  # ASGITransport won't
        yield built


def asgi_client(service: Service, auth: JWTSessAuth | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.app),
        base_url="http://testserver",
        auth=auth,
    )


async def test_fifty_requests_across_expiry_one_refresh(service: Service) -> None:
    login = await service.issuer.login("alice", "user")
    persisted: list[str] = []

    async def persist(state: TokenState) -> None:
        persisted.append(state.refresh_token)

    auth = JWTSessAuth.from_token_response(login.as_json(), clock=service.clock, on_refresh=persist)
    async with asgi_client(service, auth) as client:
        assert (await client.get("/me")).status_code == 200
        service.clock.advance(60 + 10 + 1)  # past exp and the verifier's leeway
        responses = await asyncio.gather(*(client.get("/me") for _ in range(50)))

    assert [r.status_code for r in responses] == [200] * 50
    assert {r.json()["session_id"] for r in responses} == {login.session_id}
    assert service.app.refreshes == 1
    assert auth.tokens is not None
    assert persisted == [auth.tokens.refresh_token]
    assert auth.tokens.refresh_token != login.refresh_token
    assert auth.tokens.session_id == login.session_id
    assert service.app.seen[1:] == [auth.tokens.access_token] * 50  # no expired token sent


async def test_fifty_401s_at_once_one_refresh(service: Service) -> None:
    """The client's clock lags the server's: all fifty are refused, then share one refresh."""
    login = await service.issuer.login("alice", "user")
    persisted: list[TokenState] = []
    auth = JWTSessAuth.from_token_response(
        login.as_json(), clock=MutableClock(), on_refresh=persisted.append
    )
    service.app.hold_token, service.app.hold_count = login.access_token, 50
    async with asgi_client(service, auth) as client:
        service.clock.advance(71)
        responses = await asyncio.gather(*(client.get("/me") for _ in range(50)))

    assert [r.status_code for r in responses] == [200] * 50
    histories = sorted(tuple(h.status_code for h in r.history) for r in responses)
    assert histories == [(401,)] * 49 + [(401, 200)]  # one of them also carried the refresh
    assert service.app.refreshes == 1
    assert len(persisted) == 1
    assert auth.tokens == persisted[0]
    assert service.app.seen.count(login.access_token) == 50


async def test_a_stolen_refresh_token_ends_the_clients_session(service: Service) -> None:
    login = await service.issuer.login("alice", "user")
    auth = JWTSessAuth.from_token_response(login.as_json(), clock=service.clock)
    async with asgi_client(service, auth) as client, asgi_client(service) as thief:
        service.clock.advance(71)
        assert (await client.get("/me")).status_code == 200  # rotated
        service.clock.advance(11)  # past the grace window
        stolen = await thief.post("/auth/refresh", json={"refresh_token": login.refresh_token})
        assert stolen.json()["error"] == "refresh_reused"
        with pytest.raises(RefreshFailed) as err:
            await client.get("/me")  # access token revoked -> 401 -> refresh refused
    assert err.value.error == "session_not_found"
    assert err.value.status_code == 401
    assert auth.tokens is None


async def test_the_standard_token_endpoint_across_expiry(service: Service) -> None:
    """``oauth=True``: the RFC 6749 §6 form request to /auth/token, same sharing and rotation."""
    login = await service.issuer.login("alice", "user")
    auth = JWTSessAuth.from_token_response(
        login.as_json(),
        clock=service.clock,
        refresh_url="/auth/token",
        oauth=True,
        client_id="my-cli",
    )
    async with asgi_client(service, auth) as client:
        service.clock.advance(60 + 10 + 1)
        responses = await asyncio.gather(*(client.get("/me") for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert service.app.refreshes == 1
    assert auth.tokens is not None
    assert auth.tokens.refresh_token != login.refresh_token
    assert auth.tokens.session_id == login.session_id


async def test_standard_endpoint_theft_ends_the_clients_session(service: Service) -> None:
    login = await service.issuer.login("alice", "user")
    auth = JWTSessAuth.from_token_response(
        login.as_json(), clock=service.clock, refresh_url="/auth/token", oauth=True
    )
    async with asgi_client(service, auth) as client, asgi_client(service) as thief:
        service.clock.advance(71)
        assert (await client.get("/me")).status_code == 200  # rotated through /auth/token
        service.clock.advance(11)  # past the grace window
        form = {"grant_type": "refresh_token", "refresh_token": login.refresh_token}
        stolen = await thief.post("/auth/token", data=form)
        assert stolen.json()["error"] == "invalid_grant"
        with pytest.raises(RefreshFailed) as err:
            await client.get("/me")  # access token revoked -> 401 -> refresh refused
    assert err.value.error == "invalid_grant"
    assert err.value.status_code == 400
    assert "session" in (err.value.detail or "")
    assert auth.tokens is None


class PortalTransport(httpx.BaseTransport):
    """A sync transport into an ASGI app running on an event loop in another thread."""

    def __init__(self, app: ASGIApp, portal: anyio.from_thread.BlockingPortal) -> None:
        self.asgi = httpx.ASGITransport(app=app)
        self.portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def send() -> httpx.Response:
            response = await self.asgi.handle_async_request(request)
            body = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=body)

        return self.portal.call(send)


def test_sync_client_threads_through_the_asgi_app(tmp_path: Path, clock: MutableClock) -> None:
    """The sync flow against the real app: ten threads refused at once share one refresh."""
    service, threads = build_service(tmp_path / "keys", clock), 10
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(
            service.starlette.router.lifespan_context(service.starlette)
        ),
        httpx.Client(
            transport=PortalTransport(service.app, portal), base_url="http://testserver"
        ) as client,
        ThreadPoolExecutor(threads) as pool,
    ):
        login = portal.call(service.issuer.login, "alice", "user")
        seen: list[TokenState] = []
        auth = JWTSessAuth.from_token_response(
            login.as_json(), clock=MutableClock(), on_refresh=seen.append
        )
        service.app.hold_token, service.app.hold_count = login.access_token, threads
        clock.advance(71)
        statuses = list(pool.map(lambda _: client.get("/me", auth=auth).status_code, range(10)))
    assert statuses == [200] * threads
    assert service.app.refreshes == 1
    assert len(seen) == 1
    assert auth.tokens == seen[0]


async def test_the_demo_app(tmp_path: Path) -> None:
    """examples/app.py as shipped: login, a 401-driven refresh, an early refresh."""
    app = create_app(
        DemoConfig(
            host="127.0.0.1",
            port=8000,
            keys_dir=str(tmp_path / "keys"),
            alg="HS256",
            access_ttl=60,
            secure_cookies=False,
            redis_url=None,
        )
    )
    ahead = MutableClock(0.0)  # offset from the real clock: the client's idea of "now"
    rotated: list[str] = []

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client,
    ):
        answer = await client.post(
            "/auth/login", json={"username": "bob", "password": "bob-demo-password"}
        )
        assert answer.status_code == 200
        auth = JWTSessAuth.from_token_response(
            answer.json(),
            clock=lambda: time.time() + ahead(),
            on_refresh=lambda state: rotated.append(state.refresh_token),
        )
        me = await client.get("/me", auth=auth)
        assert me.status_code == 200
        assert me.json()["sub"] == "bob"

        first = answer.json()["refresh_token"]
        auth.set_tokens(TokenState("not-a-token", first))  # the server answers 401
        me = await client.get("/me", auth=auth)
        assert (me.status_code, [h.status_code for h in me.history]) == (200, [401, 200])

        ahead.advance(45)  # the client thinks 15 s are left: refresh before sending
        me = await client.get("/me", auth=auth)
        assert (me.status_code, [h.url.path for h in me.history]) == (200, ["/auth/refresh"])

    assert len(rotated) == 2
    assert len({first, *rotated}) == 3
    assert auth.tokens is not None
    assert auth.tokens.refresh_token == rotated[-1]
