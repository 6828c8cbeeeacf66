"""Open websockets are closed when their token is revoked or expires (jwtsess/web/live.py).

In-process, through Starlette's TestClient (the app runs on the client's own
loop in a thread; revocations are applied from the test's thread, as a feed
would apply them on another task). tests/test_websocket_uvicorn.py does the
same over real uvicorn processes and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from jwtsess.testing import JWTSessKit
from jwtsess.web import JWTAuthMiddleware
from jwtsess.web.fastapi import CurrentUser
from jwtsess.web.live import LiveConnections


def echo_app(kit: JWTSessKit, live: LiveConnections) -> FastAPI:
    app = FastAPI()
    app.add_middleware(JWTAuthMiddleware, verifier=kit.verifier, config=kit.config, live=live)

    @app.websocket("/ws")
    async def echo(websocket: WebSocket, user: CurrentUser) -> None:
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):  # the client's own close
            while True:
                await websocket.send_text(f"{user.id}: {await websocket.receive_text()}")

    @app.websocket("/push")
    async def push(websocket: WebSocket, user: CurrentUser) -> None:
        await websocket.accept()
        await websocket.receive_text()  # "go"
        while True:  # no disconnect handling: after a revocation the middleware ends it quietly
            await websocket.send_text("tick")
            await websocket.receive_text()

    return app


@pytest.fixture
def live(jwtsess: JWTSessKit) -> LiveConnections:
    return LiveConnections(clock=jwtsess.clock)


def closed_with(ws: object, reason: str) -> None:
    with pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_text()  # type: ignore[attr-defined]
    assert (closed.value.code, closed.value.reason) == (1008, reason)


@pytest.mark.parametrize("how", ["logout", "logout_all", "reissue", "revoke_token"])
def test_a_revocation_closes_the_open_websocket(
    jwtsess: JWTSessKit, live: LiveConnections, how: str
) -> None:
    client = TestClient(echo_app(jwtsess, live))
    pair = jwtsess.run(jwtsess.login("alice"))
    other = jwtsess.run(jwtsess.login("bob"))
    with (
        client.websocket_connect("/ws", headers=jwtsess.headers(token=pair.access_token)) as ws,
        client.websocket_connect("/ws", headers=jwtsess.headers(token=other.access_token)) as bob,
    ):
        ws.send_text("hi")
        assert ws.receive_text() == "alice: hi"
        assert len(live) == 2
        if how == "logout":
            jwtsess.run(jwtsess.issuer.logout(pair.session_id))
        elif how == "logout_all":
            jwtsess.run(jwtsess.issuer.logout_all("alice"))
        elif how == "reissue":
            jwtsess.run(jwtsess.issuer.reissue("alice"))
        else:
            jwtsess.revoke(pair.access_token)
        closed_with(ws, "token_revoked")
        bob.send_text("still here")  # another user's socket is untouched
        assert bob.receive_text() == "bob: still here"
        assert len(live) == 1


def test_an_expiring_token_closes_its_websocket(jwtsess: JWTSessKit, live: LiveConnections) -> None:
    client = TestClient(echo_app(jwtsess, live))
    short = jwtsess.token(lifetime=60)
    with client.websocket_connect("/ws", headers=jwtsess.headers(token=short)) as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "alice: hi"
        assert live.close_expired() == 0  # not yet
        jwtsess.advance(60)
        assert live.close_expired() == 1  # what the timer does at exp
        closed_with(ws, "token_expired")
    assert len(live) == 0


def test_an_app_that_only_sends_is_stopped_quietly(
    jwtsess: JWTSessKit, live: LiveConnections, caplog: pytest.LogCaptureFixture
) -> None:
    client = TestClient(echo_app(jwtsess, live), raise_server_exceptions=True)
    pair = jwtsess.run(jwtsess.login())
    with client.websocket_connect("/push", headers=jwtsess.headers(token=pair.access_token)) as ws:
        ws.send_text("go")
        assert ws.receive_text() == "tick"
        jwtsess.run(jwtsess.issuer.logout(pair.session_id))
        closed_with(ws, "token_revoked")
    assert "Traceback" not in caplog.text


def test_a_socket_ended_by_the_client_is_forgotten(
    jwtsess: JWTSessKit, live: LiveConnections
) -> None:
    client = TestClient(echo_app(jwtsess, live))
    with client.websocket_connect("/ws", headers=jwtsess.headers()) as ws:
        ws.send_text("hi")
        ws.receive_text()
        assert len(live) == 1
    assert len(live) == 0


def test_anonymous_sockets_are_not_registered(jwtsess: JWTSessKit) -> None:
    live = LiveConnections(clock=jwtsess.clock)
    app = FastAPI()
    app.add_middleware(JWTAuthMiddleware, verifier=jwtsess.verifier, live=live)

    @app.websocket("/open")
    async def open_ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    with TestClient(app).websocket_connect("/open") as ws:
        assert ws.receive_text() == "hello"
        assert len(live) == 0


async def test_one_timer_for_the_earliest_expiry(jwtsess: JWTSessKit) -> None:
    live = LiveConnections(clock=jwtsess.clock)
    closed: list[tuple[str, int, str]] = []

    def closer(name: str) -> Callable[[int, str], Awaitable[None]]:
        async def send_close(code: int, reason: str) -> None:
            closed.append((name, code, reason))

        return send_close

    verify = jwtsess.verifier.verify
    late = live.add(verify(jwtsess.token("late", lifetime=600)), closer("late"))
    assert live.next_expiry == late.claims.exp
    early = live.add(verify(jwtsess.token("early", lifetime=60)), closer("early"))
    assert live.next_expiry == early.claims.exp  # re-armed for the earlier one
    jwtsess.advance(60)
    assert live.close_expired() == 1
    await asyncio.sleep(0)  # the close frame is sent by a task on this loop
    assert closed == [("early", 1008, "token_expired")]
    assert live.next_expiry == late.claims.exp  # and armed for the next
    live.discard(late)  # ended by its client
    jwtsess.advance(600)
    assert live.close_expired() == 0
    assert live.next_expiry is None
