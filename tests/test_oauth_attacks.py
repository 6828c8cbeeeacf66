"""Attacks on the OAuth 2.0 endpoints, one named test each (jwtsess/web/oauth.py)."""

from __future__ import annotations

import pytest

from tests.support.web_app import INTROSPECTION_CLIENT, WebApp, bearer
from tests.test_oauth import INTROSPECTOR, basic, refresh_params

pytestmark = pytest.mark.parametrize("store", ["memory"], indirect=True)

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def test_cross_site_form_post_to_the_token_endpoint_spends_no_cookie(web: WebApp) -> None:
    """A page on another site makes the victim's browser POST a form (no preflight).

    The browser attaches the session cookies; the endpoints read none of them.
    """
    client = await web.cookie_client("alice")
    session = (await web.issuer.sessions("alice"))[0]
    # With the access cookie: the middleware's double-submit check refuses it.
    with_access = await client.post("/auth/token", data={"grant_type": "refresh_token"})
    assert with_access.status_code == 403
    assert with_access.json()["error"] == "csrf_failed"
    # Access cookie gone (expired), refresh cookie still there: nothing to refresh with.
    client.cookies.delete(web.config.access_cookie_name)
    client.cookies.set(web.config.refresh_cookie_name, "rt1.would-be-sent")
    without_access = await client.post("/auth/token", data={"grant_type": "refresh_token"})
    assert without_access.status_code == 400
    assert without_access.json()["error"] == "invalid_request"
    after = await web.issuer.session(session.sid)
    assert after is not None
    assert after.generation == session.generation  # not rotated


async def test_cross_site_form_post_to_revoke_cannot_log_the_victim_out(web: WebApp) -> None:
    client = await web.cookie_client("alice")
    client.cookies.delete(web.config.access_cookie_name)
    response = await client.post("/auth/revoke", data={"token_type_hint": "refresh_token"})
    assert response.status_code == 400
    assert len(await web.issuer.sessions("alice")) == 1


async def test_a_cookie_session_cannot_authorize_introspection(web: WebApp) -> None:
    """An admin's browser, lured to post a form, does not lend its session to introspection."""
    victim = await web.login("bob")
    admin_browser = await web.cookie_client("root", role="admin")
    response = await admin_browser.post(
        "/auth/introspect", data={"token": victim.access_token}, headers=web.csrf(admin_browser)
    )
    assert response.status_code == 401
    assert "active" not in response.json()


async def test_token_scanning_without_credentials_learns_nothing(web: WebApp) -> None:
    pair = await web.login()
    client = web.client()
    for headers in ({}, basic(INTROSPECTION_CLIENT[0], "guess-" + "x" * 20)):
        response = await client.post(
            "/auth/introspect", data={"token": pair.access_token}, headers=headers
        )
        assert response.status_code == 401
        assert set(response.json()) == {"error", "error_description"}


async def test_a_user_token_cannot_introspect_other_users_tokens(web: WebApp) -> None:
    victim = await web.login("bob")
    attacker = await web.login("mallory", role="user")
    response = await web.client().post(
        "/auth/introspect",
        data={"token": victim.access_token},
        headers=bearer(attacker.access_token),
    )
    assert response.status_code == 403
    assert "sub" not in response.json()


@pytest.mark.system
async def test_forged_tokens_at_the_revocation_endpoint_cost_no_store_call(
    faulty_web: WebApp, store: object
) -> None:
    """Unauthenticated revocation must not turn garbage into store writes.

    (``store``: this module's parametrization; the app here runs on Redis instead.)
    """
    web, fault = faulty_web, faulty_web.fault
    assert fault is not None
    forged_refresh = "rt1.c2lkc2lkc2lkc2lkc2lkc2lkc2lk.1." + "A" * 43
    forged_access = web.kit.token() + "x"
    fault.cut()  # any store call would now answer 503
    for token in ["garbage", forged_refresh, forged_access, "a.b.c"]:
        response = await web.client().post("/auth/revoke", data={"token": token})
        assert response.status_code == 200, token


async def test_refresh_cannot_escalate_the_sessions_scope(web: WebApp) -> None:
    pair = await web.login("mallory", role="user")
    response = await web.client().post(
        "/auth/token", data=refresh_params(pair.refresh_token, scope="admin")
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


async def test_attacker_text_is_never_echoed_in_error_descriptions(web: WebApp) -> None:
    body = "%22%3E%3Cscript%3E=1&%22%3E%3Cscript%3E=2&grant_type=refresh_token"
    response = await web.client().post("/auth/token", content=body, headers=FORM)
    assert response.status_code == 400
    description = response.json()["error_description"]
    assert "script" not in description
    assert '"' not in description


async def test_stolen_refresh_token_replayed_at_the_token_endpoint_ends_the_session(
    web: WebApp,
) -> None:
    pair = await web.login("alice")
    client = web.client()
    rotated = (await client.post("/auth/token", data=refresh_params(pair.refresh_token))).json()
    web.clock.advance(web.issuer.policy.grace + 1)
    replay = await client.post("/auth/token", data=refresh_params(pair.refresh_token))
    assert replay.json()["error"] == "invalid_grant"
    introspected = await client.post(
        "/auth/introspect", data={"token": rotated["access_token"]}, headers=INTROSPECTOR
    )
    assert introspected.json() == {"active": False}
