"""JWTAuthMiddleware through httpx and hand-driven websockets against the real ASGI app.

Header mode and cookie mode (with the CSRF double-submit), the RFC 6750 answers
for missing and bad tokens, the user and scopes it puts in the scope (so
Starlette's own ``requires`` works), stale revocation state, websockets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from jwtsess.refresh_token import encode_refresh_token, new_session_id
from jwtsess.web import JWTAuthMiddleware, WebConfig
from tests.support.kit import TokenKit
from tests.support.web_app import MakeWeb, WebApp, bearer, websocket_exchange

ROLE_SCOPES = {"user": ["reports"], "admin": ["reports", "billing"]}
CHALLENGE = 'Bearer realm="jwtsess"'


def invalid_token(detail: str, realm: str = "jwtsess") -> str:
    return f'Bearer realm="{realm}", error="invalid_token", error_description="{detail}"'


@pytest.fixture
def make_web(make_web: MakeWeb) -> MakeWeb:
    """The shared builder, with this file's role scopes by default."""

    async def make(**options: Any) -> WebApp:
        options.setdefault("config", WebConfig(role_scopes=ROLE_SCOPES))
        return await make_web(**options)

    return make


def assert_error(
    response: httpx.Response, status: int, code: str, *, www: str | None = None
) -> dict[str, Any]:
    """Status, JSON error body, no-store, and exactly the expected challenge (or none)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers.get("www-authenticate") == www
    return body


# -- scopes the middleware does not handle ----------------------------------------------------


async def test_lifespan_and_other_scopes_pass_straight_through(
    make_kit: Callable[..., TokenKit],
) -> None:
    seen: list[Scope] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(dict(scope))
        await send({"type": "lifespan.startup.complete"})

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    middleware = JWTAuthMiddleware(inner, verifier=make_kit("HS256").verifier)
    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    await middleware(scope, receive, send)
    assert seen == [scope]  # untouched: no user, no auth, no config entry
    assert not {"user", "auth", "jwtsess"} & seen[0].keys()
    assert sent == [{"type": "lifespan.startup.complete"}]


# -- anonymous requests -----------------------------------------------------------------------


async def test_no_token_is_anonymous_and_the_route_decides(web: WebApp) -> None:
    client = web.client()
    response = await client.get("/public")
    assert response.status_code == 200
    assert response.json() == {
        "authenticated": False,
        "user_type": "UnauthenticatedUser",
        "scopes": [],
    }
    assert_error(await client.get("/me"), 401, "token_missing", www=CHALLENGE)


async def test_another_authorization_scheme_is_not_ours_to_judge(web: WebApp) -> None:
    client = web.client()
    headers = {"Authorization": "Basic YWxpY2U6c2VjcmV0"}
    assert (await client.get("/public", headers=headers)).json()["authenticated"] is False
    assert_error(await client.get("/me", headers=headers), 401, "token_missing", www=CHALLENGE)


async def test_the_realm_is_configurable(make_web: MakeWeb) -> None:
    web = await make_web(config=WebConfig(realm="example api"))
    response = await web.client().get("/me")
    assert_error(response, 401, "token_missing", www='Bearer realm="example api"')


@pytest.mark.parametrize("name", ["access_token", "token", "jwt"])
async def test_tokens_in_the_query_string_are_not_accepted(web: WebApp, name: str) -> None:
    pair = await web.login()
    client = web.client()
    response = await client.get("/me", params={name: pair.access_token})
    assert_error(response, 401, "token_missing", www=CHALLENGE)
    public = await client.get("/public", params={name: pair.access_token})
    assert public.json()["authenticated"] is False


# -- header mode ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
async def test_bearer_header_authenticates_with_any_scheme_case(web: WebApp, scheme: str) -> None:
    pair = await web.login("alice", "user")
    response = await web.client().get(
        "/me", headers={"Authorization": f"{scheme} {pair.access_token}"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "authenticated": True,
        "user_type": "JWTUser",
        "scopes": ["authenticated", "user", "reports"],
        "user_id": "alice",
        "role": "user",
        "session_id": pair.session_id,
        "display_name": "alice",
        "identity": "alice",
        "sub": "alice",
        "method": "GET",
    }


async def test_scopes_come_from_the_role(web: WebApp) -> None:
    pair = await web.login("root", "admin")
    body = (await web.client().get("/public", headers=bearer(pair.access_token))).json()
    assert body["scopes"] == ["authenticated", "admin", "reports", "billing"]
    other = await web.login("carol", "auditor")  # a role with no configured extras
    body = (await web.client().get("/public", headers=bearer(other.access_token))).json()
    assert body["scopes"] == ["authenticated", "auditor"]


async def test_header_mode_needs_no_csrf_for_unsafe_methods(web: WebApp) -> None:
    pair = await web.login()
    client = web.client()
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = await client.request(method, "/me", headers=bearer(pair.access_token))
        assert response.status_code == 200, (method, response.text)
        assert response.json()["method"] == method


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("Bearer", "The Authorization header is not 'Bearer <token>'."),
        ("Bearer ", "The Authorization header is not 'Bearer <token>'."),
        ("Bearer    ", "The Authorization header is not 'Bearer <token>'."),
        ("Bearer a b", "The Authorization header is not 'Bearer <token>'."),
        ("Bearer garbage", "The token is not a compact JWS of three segments."),
        ("Bearer a.b", "The token is not a compact JWS of three segments."),
        ("Bearer !!!.@@@.###", "The token's header is not canonical base64url."),
        ("Bearer " + "a" * 5000, "The token is longer than 4096 bytes."),
    ],
)
async def test_malformed_bearer_tokens(web: WebApp, value: str, detail: str) -> None:
    client = web.client()
    for path in ("/me", "/public"):  # the middleware answers, whatever the route
        response = await client.get(path, headers={"Authorization": value})
        body = assert_error(response, 401, "token_malformed", www=invalid_token(detail))
        assert body["detail"] == detail


async def test_more_than_one_authorization_header_is_refused(web: WebApp) -> None:
    pair = await web.login()
    headers = [("Authorization", f"Bearer {pair.access_token}")] * 2
    response = await web.client().get("/me", headers=headers)
    detail = "More than one Authorization header."
    assert_error(response, 401, "token_malformed", www=invalid_token(detail))


async def test_bad_signature_wrong_kind_and_unknown_key_are_invalid(web: WebApp) -> None:
    pair = await web.login()
    client = web.client()
    head, payload, signature = pair.access_token.split(".")
    forged = f"{head}.{payload}.{'A' * len(signature)}"
    if forged == pair.access_token:  # pragma: no cover - astronomically unlikely
        forged = f"{head}.{payload}.{'B' * len(signature)}"
    cases = {
        forged: "The token's signature does not verify.",
        pair.refresh_token: "A refresh token is not an access token.",
        web.kit.token(sub="alice", sid=pair.session_id): None,  # same key: valid
    }
    for token, detail in cases.items():
        response = await client.get("/me", headers=bearer(token))
        if detail is None:
            assert response.status_code == 200
            continue
        assert_error(response, 401, "token_invalid", www=invalid_token(detail))


async def test_expired_token(web: WebApp) -> None:
    pair = await web.login()
    client = web.client()
    web.clock.advance(web.kit.settings.access_ttl + web.kit.settings.leeway - 1)
    assert (await client.get("/me", headers=bearer(pair.access_token))).status_code == 200
    web.clock.advance(1)
    response = await client.get("/me", headers=bearer(pair.access_token))
    assert_error(response, 401, "token_expired", www=invalid_token("The token has expired."))


async def test_revoked_token(web: WebApp) -> None:
    pair = await web.login()
    await web.issuer.logout(pair.session_id)
    response = await web.client().get("/public", headers=bearer(pair.access_token))
    www = invalid_token("The token has been revoked.")
    assert_error(response, 401, "token_revoked", www=www)


async def test_token_from_a_foreign_key_is_invalid(
    web: WebApp, make_kit: Callable[..., TokenKit]
) -> None:
    stranger = make_kit("HS256").token(sub="alice")
    response = await web.client().get("/me", headers=bearer(stranger))
    www = invalid_token("The token was signed by an unknown key.")
    assert_error(response, 401, "token_invalid", www=www)


# -- Starlette's own requires -----------------------------------------------------------------


async def test_starlette_requires_works_behind_the_middleware(web: WebApp) -> None:
    client = web.client()
    user = await web.login("alice", "user")
    root = await web.login("root", "admin")

    response = await client.get("/starlette/reports", headers=bearer(user.access_token))
    assert response.status_code == 200
    assert response.json() == {"reports": True, "user_id": "alice"}

    assert (
        await client.get("/starlette/admin", headers=bearer(user.access_token))
    ).status_code == 403
    response = await client.get("/starlette/admin", headers=bearer(root.access_token))
    assert response.status_code == 200
    assert response.json()["scopes"] == ["authenticated", "admin", "reports", "billing"]

    assert (await client.get("/starlette/reports")).status_code == 403  # anonymous
    assert (await client.get("/starlette/authenticated")).status_code == 401
    response = await client.get("/starlette/authenticated", headers=bearer(user.access_token))
    assert response.json() == {"user_id": "alice"}


# -- cookie mode ------------------------------------------------------------------------------


async def test_cookie_authenticates_safe_methods_without_csrf(web: WebApp) -> None:
    client = await web.cookie_client("alice", "user")
    for method in ("GET", "HEAD", "OPTIONS"):
        response = await client.request(method, "/me")
        assert response.status_code == 200, (method, response.text)
    assert (await client.get("/me")).json()["user_id"] == "alice"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_cookie_unsafe_methods_need_the_csrf_header(web: WebApp, method: str) -> None:
    client = await web.cookie_client()
    detail = "A cookie-authenticated request needs the CSRF header."
    body = assert_error(await client.request(method, "/me"), 403, "csrf_failed")
    assert body["detail"] == detail
    wrong = {web.config.csrf_header: "not-the-cookie"}
    assert_error(await client.request(method, "/me", headers=wrong), 403, "csrf_failed")
    empty = {web.config.csrf_header: ""}
    assert_error(await client.request(method, "/me", headers=empty), 403, "csrf_failed")
    response = await client.request(method, "/me", headers=web.csrf(client))
    assert response.status_code == 200, response.text
    assert response.json()["method"] == method


async def test_csrf_header_without_csrf_cookie_fails(web: WebApp) -> None:
    pair = await web.login()
    client = web.client()
    cookie = f"{web.config.access_cookie_name}={pair.access_token}"
    headers = {"Cookie": cookie, web.config.csrf_header: "anything"}
    assert_error(await client.post("/me", headers=headers), 403, "csrf_failed")


async def test_csrf_is_checked_even_for_an_anonymous_route(web: WebApp) -> None:
    client = await web.cookie_client()
    assert_error(await client.post("/public"), 403, "csrf_failed")


async def test_bearer_header_wins_over_the_cookie(web: WebApp) -> None:
    client = await web.cookie_client("alice")
    other = await web.login("bob")
    response = await client.post("/me", headers=bearer(other.access_token))  # no CSRF needed
    assert response.status_code == 200
    assert response.json()["user_id"] == "bob"
    response = await client.get("/me", headers={"Authorization": "Bearer garbage"})
    assert response.status_code == 401  # a bad header is not rescued by a good cookie


def deleted_access_cookie(config: WebConfig) -> str:
    secure = "; Secure" if config.secure else ""
    return f"{config.access_cookie_name}=; Max-Age=0; Path=/; HttpOnly; SameSite=lax{secure}"


async def stale_cookie_tokens(web: WebApp, foreign: TokenKit) -> dict[str, str]:
    """Access-cookie values that fail verification, by the code the header would get."""
    revoked = await web.login("mallory")
    await web.issuer.logout(revoked.session_id)
    expired = web.kit.signer.issue("alice", "user", "sid-old")[0]
    web.clock.advance(web.kit.settings.access_ttl + web.kit.settings.leeway)
    return {
        "token_malformed": "garbage",
        "token_invalid": foreign.token(sub="alice"),
        "token_revoked": revoked.access_token,
        "token_expired": expired,
    }


async def test_stale_cookie_makes_the_request_anonymous_and_deletes_it(
    web: WebApp, make_kit: Callable[..., TokenKit]
) -> None:
    client = web.client()
    name = web.config.access_cookie_name
    deletion = deleted_access_cookie(web.config)
    for code, token in (await stale_cookie_tokens(web, make_kit("HS256"))).items():
        cookie = {"Cookie": f"{name}={token}"}
        response = await client.get("/public", headers=cookie)
        assert response.status_code == 200, code
        assert response.json()["authenticated"] is False
        assert response.headers.get_list("set-cookie") == [deletion]
        # A guarded route answers "no token", not the cookie's failure.
        response = await client.get("/me", headers=cookie)
        assert_error(response, 401, "token_missing", www=CHALLENGE)
        assert response.headers.get_list("set-cookie") == [deletion]
        # No CSRF check either: the cookie authenticated nothing.
        response = await client.post("/me", headers=cookie)
        assert_error(response, 401, "token_missing", www=CHALLENGE)


async def test_stale_cookie_deletion_without_secure(make_web: MakeWeb) -> None:
    web = await make_web(config=WebConfig(secure=False))
    response = await web.client().get("/public", headers={"Cookie": "jwtsess-access=garbage"})
    assert response.headers["set-cookie"] == (
        "jwtsess-access=; Max-Age=0; Path=/; HttpOnly; SameSite=lax"
    )


async def test_empty_or_absent_access_cookie_is_anonymous(web: WebApp) -> None:
    client = web.client()
    name = web.config.access_cookie_name
    for cookie in (f"{name}=", "unrelated=1; other=2"):
        response = await client.get("/me", headers={"Cookie": cookie})
        assert_error(response, 401, "token_missing", www=CHALLENGE)
        assert "set-cookie" not in response.headers


async def test_stale_revocation_state_with_a_cookie_is_still_503(web: WebApp) -> None:
    client = await web.cookie_client()
    web.make_stale()
    response = await client.get("/me")
    assert_error(response, 503, "revocation_state_stale")
    assert "set-cookie" not in response.headers  # the cookie is not at fault


async def test_websocket_with_a_stale_cookie_is_anonymous(
    web: WebApp, make_kit: Callable[..., TokenKit]
) -> None:
    origin = ("origin", "https://testserver")
    for token in (await stale_cookie_tokens(web, make_kit("HS256"))).values():
        cookie = ("cookie", f"{web.config.access_cookie_name}={token}")
        result = await websocket_exchange(web.app, "/ws", headers=[cookie, origin])
        assert (result.close_code, result.close_reason) == (1008, "token_missing")
        result = await websocket_exchange(web.app, "/ws/public", headers=[cookie, origin])
        assert result.accepted
        assert json.loads(result.texts[0])["authenticated"] is False


async def test_cookie_names_follow_the_secure_setting(make_web: MakeWeb) -> None:
    secure = await make_web()
    pair = await secure.login()
    client = secure.client()
    # Without the __Host- prefix the secure app does not read the cookie.
    response = await client.get("/me", headers={"Cookie": f"jwtsess-access={pair.access_token}"})
    assert response.status_code == 401
    response = await client.get(
        "/me", headers={"Cookie": f"__Host-jwtsess-access={pair.access_token}"}
    )
    assert response.status_code == 200

    plain = await make_web(config=WebConfig(secure=False))
    pair = await plain.login()
    client = plain.client(base_url="http://testserver")
    response = await client.get("/me", headers={"Cookie": f"jwtsess-access={pair.access_token}"})
    assert response.status_code == 200


async def test_cookies_can_be_switched_off(make_web: MakeWeb) -> None:
    web = await make_web(config=WebConfig(cookies=False))
    pair = await web.login()
    cookie = {"Cookie": f"{web.config.access_cookie_name}={pair.access_token}"}
    client = web.client()
    assert_error(await client.get("/me", headers=cookie), 401, "token_missing", www=CHALLENGE)
    assert (await client.post("/public", headers=cookie)).status_code == 200  # no CSRF either


# -- revocation state -------------------------------------------------------------------------


async def test_stale_revocation_state_fails_closed_with_503(web: WebApp) -> None:
    pair = await web.login()
    client = web.client()
    web.make_stale()
    response = await client.get("/me", headers=bearer(pair.access_token))
    body = assert_error(response, 503, "revocation_state_stale")
    assert body["detail"] == "Revocation state is stale; try again shortly."
    assert response.headers["retry-after"] == "1"
    assert (await client.get("/public")).status_code == 200  # no token, nothing to check
    await web.mirror.load()  # heard from the feed again
    assert (await client.get("/me", headers=bearer(pair.access_token))).status_code == 200


async def test_stale_revocation_state_fail_open_accepts(make_web: MakeWeb) -> None:
    web = await make_web(staleness="fail_open")
    pair = await web.login()
    web.make_stale()
    response = await web.client().get("/me", headers=bearer(pair.access_token))
    assert response.status_code == 200
    assert web.mirror.stale_accepts == 1


# -- websockets -------------------------------------------------------------------------------


def ws_bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


async def test_websocket_with_a_bearer_header(web: WebApp) -> None:
    pair = await web.login("alice", "user")
    result = await websocket_exchange(web.app, "/ws", headers=ws_bearer(pair.access_token))
    assert result.accepted
    body = json.loads(result.texts[0])
    assert body["user_id"] == "alice"
    assert body["session_id"] == pair.session_id
    assert body["scopes"] == ["authenticated", "user", "reports"]
    assert result.close_code == 1000


async def test_websocket_anonymous_is_closed_1008_by_the_guard(web: WebApp) -> None:
    result = await websocket_exchange(web.app, "/ws")
    assert not result.accepted
    assert (result.close_code, result.close_reason) == (1008, "token_missing")
    public = await websocket_exchange(web.app, "/ws/public")
    assert public.accepted
    assert json.loads(public.texts[0])["authenticated"] is False


async def test_websocket_query_string_token_is_ignored(web: WebApp) -> None:
    pair = await web.login()
    result = await websocket_exchange(
        web.app, "/ws", query_string=f"access_token={pair.access_token}"
    )
    assert (result.close_code, result.close_reason) == (1008, "token_missing")


async def test_websocket_bad_tokens_are_closed_1008(web: WebApp) -> None:
    pair = await web.login()
    other = await web.login("bob")
    await web.issuer.logout(other.session_id)
    cases = {
        "garbage": "token_malformed",
        pair.refresh_token: "token_invalid",
        other.access_token: "token_revoked",
    }
    for token, code in cases.items():
        for path in ("/ws", "/ws/public"):
            result = await websocket_exchange(web.app, path, headers=ws_bearer(token))
            assert result.messages == [{"type": "websocket.close", "code": 1008, "reason": code}]
    web.clock.advance(web.kit.settings.access_ttl + web.kit.settings.leeway)
    result = await websocket_exchange(web.app, "/ws", headers=ws_bearer(pair.access_token))
    assert (result.close_code, result.close_reason) == (1008, "token_expired")


async def test_websocket_wrong_role_is_closed_1008(web: WebApp) -> None:
    user = await web.login("alice", "user")
    result = await websocket_exchange(web.app, "/ws/admin", headers=ws_bearer(user.access_token))
    assert (result.close_code, result.close_reason) == (1008, "insufficient_role")
    root = await web.login("root", "admin")
    result = await websocket_exchange(web.app, "/ws/admin", headers=ws_bearer(root.access_token))
    assert result.accepted


async def test_websocket_stale_revocation_state_is_closed_1013(web: WebApp) -> None:
    pair = await web.login()
    web.make_stale()
    result = await websocket_exchange(web.app, "/ws", headers=ws_bearer(pair.access_token))
    assert result.messages == [
        {"type": "websocket.close", "code": 1013, "reason": "revocation_state_stale"}
    ]


async def test_websocket_cookie_needs_an_allowed_origin(make_web: MakeWeb) -> None:
    web = await make_web(config=WebConfig(allowed_origins=("https://app.example.test",)))
    pair = await web.login()
    cookie = ("cookie", f"{web.config.access_cookie_name}={pair.access_token}")

    for origin in ("https://testserver", "https://app.example.test"):
        result = await websocket_exchange(web.app, "/ws", headers=[cookie, ("origin", origin)])
        assert result.accepted, origin
        assert json.loads(result.texts[0])["user_id"] == "alice"

    for headers in (
        [cookie],
        [cookie, ("origin", "https://evil.example")],
        [cookie, ("origin", "http://testserver")],  # scheme matters
        [cookie, ("origin", "null")],
    ):
        result = await websocket_exchange(web.app, "/ws", headers=headers)
        assert result.messages == [
            {"type": "websocket.close", "code": 1008, "reason": "csrf_failed"}
        ], headers

    # Plain ws:// on a plain-http origin.
    result = await websocket_exchange(
        web.app, "/ws", headers=[cookie, ("origin", "http://testserver")], scheme="ws"
    )
    assert result.accepted


async def test_websocket_bearer_needs_no_origin(web: WebApp) -> None:
    pair = await web.login()
    headers = [*ws_bearer(pair.access_token), ("origin", "https://evil.example")]
    assert (await websocket_exchange(web.app, "/ws", headers=headers)).accepted


# -- sanity of helpers ------------------------------------------------------------------------


async def test_refresh_tokens_never_authenticate_requests(web: WebApp) -> None:
    forged = encode_refresh_token(web.kit.keyring.refresh_secret, new_session_id("alice"), 0)
    response = await web.client().get("/me", headers=bearer(forged))
    www = invalid_token("A refresh token is not an access token.")
    assert_error(response, 401, "token_invalid", www=www)
