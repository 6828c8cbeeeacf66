"""docs/websockets.md: the page's app echoes for a user and closes the socket at logout."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from jwtsess import Issuer
from jwtsess.testing import websocket_refusal
from jwtsess.web import LiveConnections
from tests.support.docs import run_page


def test_websockets_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace = run_page("websockets", tmp_path)
    app, issuer, live = namespace["app"], namespace["issuer"], namespace["live"]
    assert isinstance(app, Starlette)
    assert isinstance(issuer, Issuer)
    assert isinstance(live, LiveConnections)
    with TestClient(app) as client:
        portal = client.portal
        assert portal is not None
        refused = websocket_refusal(client, "/chat")  # TestClient takes denial responses
        assert (refused.status, refused.code) == (401, "token_missing")
        pair = portal.call(issuer.login, "ann", "user")
        bearer = {"Authorization": f"Bearer {pair.access_token}"}
        with client.websocket_connect("/chat", headers=bearer) as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "ann: hi"
            assert len(live) == 1
            portal.call(issuer.logout, pair.session_id)
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert (closed.value.code, closed.value.reason) == (1008, "token_revoked")
        assert len(live) == 0
