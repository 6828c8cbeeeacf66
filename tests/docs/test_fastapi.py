"""docs/fastapi.md: the page's app serves /me, guards, Swagger's schemes and a websocket."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.docs import run_page


def test_fastapi_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = run_page("fastapi", tmp_path)["app"]
    assert isinstance(app, FastAPI)
    with TestClient(app) as client:  # runs the lifespan: the mirror starts and stops
        pair = client.post("/auth/login", json={"username": "ann", "password": "x"}).json()
        bearer = {"Authorization": f"Bearer {pair['access_token']}"}
        assert client.get("/me", headers=bearer).json() == {"id": "ann", "role": "user"}
        assert client.get("/greeting").json() == {"hello": "stranger"}
        assert client.get("/greeting", headers=bearer).json() == {"hello": "ann"}
        assert client.get("/admin", headers=bearer).json()["error"] == "insufficient_role"
        assert client.get("/me").status_code == 401
        with client.websocket_connect("/ws", headers=bearer) as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "hi"
        spec = client.get("/openapi.json").json()
        assert set(spec["components"]["securitySchemes"]) == {"jwtsessBearer", "jwtsessCookie"}
        assert "/auth/refresh" in spec["paths"]
        assert client.post("/auth/logout", headers=bearer).json() == {"logged_out": True}
        assert client.get("/me", headers=bearer).json()["error"] == "token_revoked"
