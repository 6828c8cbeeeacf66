"""docs/starlette.md: the page's app answers as the page says it does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from jwtsess import RevocationMirror
from tests.support.docs import run_page


async def _check(app: object, mirror: RevocationMirror) -> None:
    async with mirror:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            # Anonymous: the route decides; guards answer 401, Starlette's `requires` 403.
            assert (await client.get("/")).json() == {"signed_in_as": None}
            missing = await client.get("/me")
            assert missing.status_code == 401
            assert missing.headers["www-authenticate"].startswith("Bearer")
            assert (await client.get("/reports")).status_code == 403
            # A bad token never reaches a route, not even an open one.
            bad = await client.get("/", headers={"Authorization": "Bearer not.a.token"})
            assert bad.status_code == 401
            assert 'error="invalid_token"' in bad.headers["www-authenticate"]
            # Wrong password, then bob: signed in, but not an admin.
            wrong = {"username": "bob", "password": "nope"}
            assert (await client.post("/auth/login", json=wrong)).status_code == 401
            assert (await client.post("/auth/login", content=b"{")).json()["error"] == (
                "bad_request"
            )
            good = {"username": "bob", "password": "battery staple"}
            token = (await client.post("/auth/login", json=good)).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            assert (await client.get("/")).json() == {"signed_in_as": None}
            assert (await client.get("/", headers=headers)).json() == {"signed_in_as": "bob"}
            assert (await client.get("/reports", headers=headers)).status_code == 200
            forbidden = await client.get("/admin", headers=headers)
            assert forbidden.status_code == 403
            assert forbidden.json()["error"] == "insufficient_role"
            sessions = (await client.get("/auth/sessions", headers=headers)).json()["sessions"]
            assert [s["current"] for s in sessions] == [True]
            assert (
                sessions[0]["device"]
                == f"python-httpx {'.'.join(httpx.__version__.split('.')[:2])}"
            )
            jwks = (await client.get("/.well-known/jwks.json")).json()
            assert len(jwks["keys"]) == 1


def test_starlette_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace = run_page("starlette", tmp_path)  # its own "Try it" block asserts the basics
    mirror = namespace["mirror"]
    assert isinstance(mirror, RevocationMirror)
    asyncio.run(_check(namespace["app"], mirror))
