"""jwtsess.testing: the plugin's fixtures and helpers, and that loading it is cheap."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
from fastapi.testclient import TestClient

from examples.fastapi_app import build_app
from jwtsess import TokenExpired, TokenInvalid, TokenRevoked
from jwtsess.testing import (
    JWTSessKit,
    SteppableClock,
    asgi_client,
    assert_forbidden,
    assert_unauthorized,
    websocket_refusal,
)


def test_loading_the_entry_point_imports_no_jwtsess() -> None:
    code = "import sys, jwtsess_pytest; print(sorted(m for m in sys.modules if 'jwtsess.' in m))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
    check = "import sys, jwtsess_pytest; assert 'jwtsess' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], check=True, timeout=60)


def test_token_factory_options(jwtsess: JWTSessKit) -> None:
    verify = jwtsess.verifier.verify
    claims = verify(jwtsess.token("carol", "ops", claims={"tenant": "t1"}, lifetime=120))
    assert (claims.sub, claims.role, claims.extra["tenant"]) == ("carol", "ops", "t1")
    assert claims.exp - claims.iat == 120
    with pytest.raises(TokenExpired):
        verify(jwtsess.token(expired=True))
    with pytest.raises(TokenInvalid):
        verify(jwtsess.token(not_yet_valid=True))
    with pytest.raises(TokenRevoked):
        verify(jwtsess.token(revoked=True))
    with pytest.raises(ValueError, match="both"):
        jwtsess.token(expired=True, not_yet_valid=True)


def test_clock_moves_only_when_stepped(jwtsess: JWTSessKit, jwtsess_clock: SteppableClock) -> None:
    assert jwtsess.clock is jwtsess_clock
    token = jwtsess.token(lifetime=60)
    start = jwtsess_clock()
    jwtsess.verifier.verify(token)
    jwtsess.advance(60 + jwtsess.settings.leeway)
    assert jwtsess_clock() == start + 60 + jwtsess.settings.leeway
    with pytest.raises(TokenExpired):
        jwtsess.verifier.verify(token)
    jwtsess_clock.set(start)
    jwtsess.verifier.verify(token)


def test_headers_cookies_and_stale_state(jwtsess: JWTSessKit) -> None:
    client = TestClient(
        build_app(jwtsess.issuer, jwtsess.verifier, jwtsess.keyring, jwtsess.config)
    )
    assert client.get("/me", headers=jwtsess.headers("dan")).json()["sub"] == "dan"
    client.cookies.update(jwtsess.cookies("erin", "admin"))
    assert client.get("/admin").json() == {"admin": True, "user": "erin"}
    pair = jwtsess.run(jwtsess.login("erin", "admin"))
    client.cookies.update(jwtsess.cookies(token=pair.access_token))
    # A cookie-authenticated unsafe method needs the CSRF header.
    assert client.post("/auth/logout").json()["error"] == "csrf_failed"
    logged_out = client.post("/auth/logout", headers=jwtsess.csrf_header())
    assert logged_out.json() == {"logged_out": True}
    jwtsess.make_stale()
    stale = client.get("/me", headers=jwtsess.headers())
    assert (stale.status_code, stale.json()["error"]) == (503, "revocation_state_stale")


def test_run_refuses_inside_an_event_loop(jwtsess: JWTSessKit) -> None:
    async def inside() -> None:
        coroutine = jwtsess.login()
        with pytest.raises(RuntimeError, match="await it"):
            jwtsess.run(coroutine)
        coroutine.close()

    jwtsess.run(inside())


async def test_async_client_on_the_tests_loop(jwtsess: JWTSessKit) -> None:
    app = build_app(jwtsess.issuer, jwtsess.verifier, jwtsess.keyring, jwtsess.config)
    pair = await jwtsess.login("fay", "user")
    async with asgi_client(app) as client:
        me = await client.get("/me", headers=jwtsess.headers(token=pair.access_token))
        assert me.json()["sub"] == "fay"
        assert_forbidden(
            await client.get("/admin", headers=jwtsess.headers(token=pair.access_token))
        )
        await jwtsess.issuer.logout(pair.session_id)
        assert_unauthorized(
            await client.get("/me", headers=jwtsess.headers(token=pair.access_token)),
            "token_revoked",
        )


def test_assertions_reject_wrong_answers(jwtsess: JWTSessKit) -> None:
    no_challenge = httpx.Response(401, json={"error": "token_missing", "detail": "x"})
    with pytest.raises(AssertionError, match="Bearer challenge"):
        assert_unauthorized(no_challenge)
    with pytest.raises(AssertionError, match="expected 403"):
        assert_forbidden(no_challenge)
    client = TestClient(
        build_app(jwtsess.issuer, jwtsess.verifier, jwtsess.keyring, jwtsess.config)
    )
    with pytest.raises(AssertionError, match="was accepted"):
        websocket_refusal(client, "/ws", headers=jwtsess.headers())
