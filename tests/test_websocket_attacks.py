"""Security regressions for websockets: one named test per attack.

Authentication happens at the handshake, so every way a session can end must
also end the websockets opened with it (issue 15: "an open websocket keeps
working after logout, logout-everywhere or a role change").
"""

from __future__ import annotations

import contextlib

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from jwtsess import RefreshReused
from jwtsess.testing import JWTSessKit
from jwtsess.web import JWTAuthMiddleware, LiveConnections
from jwtsess.web.fastapi import CurrentUser


def app_for(kit: JWTSessKit, live: LiveConnections) -> FastAPI:
    app = FastAPI()
    app.add_middleware(JWTAuthMiddleware, verifier=kit.verifier, config=kit.config, live=live)

    @app.websocket("/ws")
    async def echo(websocket: WebSocket, user: CurrentUser) -> None:
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.send_text(f"{user.role}: {await websocket.receive_text()}")

    @app.websocket("/slow-accept")
    async def slow_accept(websocket: WebSocket, user: CurrentUser) -> None:
        # The token is revoked after the handshake was authenticated, before the accept.
        kit.revoke(websocket.headers["authorization"].split()[1])
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            await websocket.receive_text()

    return app


@pytest.fixture
def live(jwtsess: JWTSessKit) -> LiveConnections:
    return LiveConnections(clock=jwtsess.clock)


def assert_closed(ws: object, reason: str) -> None:
    ws.send_text("still there?")  # type: ignore[attr-defined]
    with pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_text()  # type: ignore[attr-defined]
    assert (closed.value.code, closed.value.reason) == (1008, reason)


def test_a_logged_out_session_cannot_keep_its_websocket(
    jwtsess: JWTSessKit, live: LiveConnections
) -> None:
    pair = jwtsess.run(jwtsess.login())
    client = TestClient(app_for(jwtsess, live))
    with client.websocket_connect("/ws", headers=jwtsess.headers(token=pair.access_token)) as ws:
        jwtsess.run(jwtsess.issuer.logout(pair.session_id))
        assert_closed(ws, "token_revoked")


def test_a_demoted_admin_cannot_keep_an_admin_websocket(
    jwtsess: JWTSessKit, live: LiveConnections
) -> None:
    pair = jwtsess.run(jwtsess.login("alice", "admin"))
    client = TestClient(app_for(jwtsess, live))
    with client.websocket_connect("/ws", headers=jwtsess.headers(token=pair.access_token)) as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "admin: hi"
        jwtsess.run(jwtsess.issuer.reissue("alice"))  # after a role change
        assert_closed(ws, "token_revoked")


def test_refresh_token_theft_closes_the_sessions_websockets(
    jwtsess: JWTSessKit, live: LiveConnections
) -> None:
    pair = jwtsess.run(jwtsess.login())
    thief = jwtsess.run(jwtsess.issuer.refresh(pair.refresh_token))
    client = TestClient(app_for(jwtsess, live))
    with client.websocket_connect("/ws", headers=jwtsess.headers(token=thief.access_token)) as ws:
        jwtsess.advance(3600)  # long past the grace window
        with pytest.raises(RefreshReused):
            jwtsess.run(jwtsess.issuer.refresh(pair.refresh_token))  # the victim's old token
        assert_closed(ws, "token_revoked")


def test_an_expired_token_cannot_keep_its_websocket(
    jwtsess: JWTSessKit, live: LiveConnections
) -> None:
    client = TestClient(app_for(jwtsess, live))
    token = jwtsess.token(lifetime=30)
    with client.websocket_connect("/ws", headers=jwtsess.headers(token=token)) as ws:
        jwtsess.advance(30)
        live.close_expired()  # what the registry's timer does at exp
        assert_closed(ws, "token_expired")


def test_a_revocation_between_handshake_and_accept_still_closes(
    jwtsess: JWTSessKit, live: LiveConnections
) -> None:
    client = TestClient(app_for(jwtsess, live))
    with client.websocket_connect("/slow-accept", headers=jwtsess.headers()) as ws:
        assert_closed(ws, "token_revoked")
    assert len(live) == 0
