"""The auth routes and the JWKS through httpx against the real ASGI app (docs/http.md).

Header mode (tokens in JSON bodies, ``Authorization: Bearer``) and cookie mode
(HttpOnly cookies plus the CSRF double-submit), on both stores; every error
code a route can answer; cookie attributes read from the ``Set-Cookie``
headers; audit events; no traceback for any malformed input.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from jwtsess import RedisStore, SessionPolicy, TokenRevoked
from jwtsess.refresh_token import encode_refresh_token, new_session_id
from jwtsess.web import WebConfig
from tests.support.kit import T0, TokenKit
from tests.support.redis_server import free_port
from tests.support.web_app import USER_AGENT, MakeWeb, WebApp, bearer, build_web

CHALLENGE = 'Bearer realm="jwtsess"'
TOKEN_KEYS = {"access_token", "refresh_token", "token_type", "expires_in", "session_id"}
COOKIE_KEYS = {"token_type", "expires_in", "session_id"}
IDLE_TTL = SessionPolicy().idle_ttl
AUTHENTICATED_ROUTES = [
    ("POST", "/auth/logout"),
    ("POST", "/auth/logout-others"),
    ("POST", "/auth/logout-all"),
    ("GET", "/auth/sessions"),
    ("DELETE", "/auth/sessions/abcdefgh.abcdefghijklmnopqrstuv"),
    ("GET", "/auth/session"),
]


def invalid_token(detail: str) -> str:
    return f'Bearer realm="jwtsess", error="invalid_token", error_description="{detail}"'


def assert_error(
    response: httpx.Response,
    status: int,
    code: str,
    *,
    detail: str | None = None,
    www: str | None = None,
) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == code
    if detail is not None:
        assert body["detail"] == detail
    assert response.headers["cache-control"] == "no-store"
    if www is None and status == 401:
        www = 'Bearer realm="jwtsess"'  # RFC 7235: every 401 carries a challenge
    assert response.headers.get("www-authenticate") == www


def assert_no_store(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


def set_cookies(response: httpx.Response) -> dict[str, dict[str, str | bool]]:
    """The ``Set-Cookie`` headers as a browser applies them: in order, the last for a
    name wins (RFC 6265 5.3). name -> {"value", lower-cased attributes}."""
    cookies: dict[str, dict[str, str | bool]] = {}
    for header in response.headers.get_list("set-cookie"):
        first, *attributes = [part.strip() for part in header.split(";")]
        name, _, value = first.partition("=")
        parsed: dict[str, str | bool] = {"value": value}
        for attribute in attributes:
            key, sep, val = attribute.partition("=")
            parsed[key.lower()] = val if sep else True
        cookies[name] = parsed
    return cookies


async def refresh(client: httpx.AsyncClient, token: object) -> httpx.Response:
    return await client.post("/auth/refresh", json={"refresh_token": token})


# -- POST /auth/refresh, header mode ----------------------------------------------------------


async def test_refresh_with_a_json_body_returns_a_new_pair(web: WebApp) -> None:
    pair = await web.login("alice", "user")
    client = web.client()
    web.clock.advance(60)
    response = await refresh(client, pair.refresh_token)
    assert response.status_code == 200, response.text
    assert_no_store(response)
    assert "set-cookie" not in response.headers  # body in, body out
    body = response.json()
    assert set(body) == TOKEN_KEYS
    assert body["token_type"] == "Bearer"
    assert body["session_id"] == pair.session_id
    assert body["expires_in"] == web.kit.settings.access_ttl
    assert body["refresh_token"] != pair.refresh_token
    assert body["access_token"] != pair.access_token
    me = await client.get("/me", headers=bearer(body["access_token"]))
    assert me.json()["session_id"] == pair.session_id
    # The new refresh token rotates again.
    assert (await refresh(client, body["refresh_token"])).status_code == 200


async def test_refresh_reuse_within_grace_and_theft_after_it(web: WebApp) -> None:
    pair = await web.login()
    client = web.client()
    first = (await refresh(client, pair.refresh_token)).json()
    web.clock.advance(1)
    again = await refresh(client, pair.refresh_token)  # a racing tab, inside the grace window
    assert again.status_code == 200
    assert again.json()["refresh_token"] == first["refresh_token"]

    web.clock.advance(SessionPolicy().grace)
    response = await refresh(client, pair.refresh_token)
    assert_error(
        response,
        401,
        "refresh_reused",
        detail="The refresh token was already used; the session has been revoked.",
    )
    # The whole session is gone: its access tokens and its newest refresh token.
    response = await client.get("/me", headers=bearer(first["access_token"]))
    assert_error(response, 401, "token_revoked", www=invalid_token("The token has been revoked."))
    assert_error(await refresh(client, first["refresh_token"]), 401, "session_not_found")


async def test_two_tabs_racing_in_cookie_mode_stay_logged_in(web: WebApp) -> None:
    """One browser, two tabs sending the same cookies before either answer is back
    (and an answer lost and retried): one rotation and grace answers, never a logout."""
    browser = await web.cookie_client()
    csrf = web.csrf(browser)

    def tab() -> httpx.AsyncClient:  # the same cookies, as the browser sends them
        client = web.client()
        for cookie in browser.cookies.jar:
            client.cookies.jar.set_cookie(cookie)
        return client

    tabs = [tab(), tab(), tab()]
    answers = await asyncio.gather(*(t.post("/auth/refresh", headers=csrf) for t in tabs[:2]))
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    web.clock.advance(2)  # the third tab's answer was lost: it retries, old cookies and all
    retried = await tabs[2].post("/auth/refresh", headers=csrf)
    assert retried.status_code == 200, retried.text
    web.clock.advance(1)
    fresh = await tabs[0].post("/auth/refresh", headers=web.csrf(tabs[0]))  # the new cookies
    assert fresh.status_code == 200, fresh.text
    assert (await tabs[0].get("/me")).status_code == 200


@pytest.mark.parametrize(
    ("token", "code", "detail"),
    [
        ("garbage", "token_malformed", "The refresh token is malformed."),
        ("rt1.", "token_malformed", "The refresh token is malformed."),
        ("rt1." + "a" * 200, "token_malformed", "The refresh token is malformed."),
        ("Bearer rt1.x", "token_malformed", "The refresh token is malformed."),
    ],
)
async def test_refresh_with_a_malformed_token(
    web: WebApp, token: str, code: str, detail: str
) -> None:
    response = await refresh(web.client(), token)
    assert_error(response, 401, code, detail=detail, www=invalid_token(detail))


async def test_refresh_with_a_forged_or_foreign_token(web: WebApp) -> None:
    pair = await web.login()
    client = web.client()
    forged = pair.refresh_token[:-4] + (
        "AAAA" if not pair.refresh_token.endswith("AAAA") else "BBBB"
    )
    detail = "The refresh token is invalid."
    assert_error(
        await refresh(client, forged),
        401,
        "token_invalid",
        detail=detail,
        www=invalid_token(detail),
    )
    assert_error(  # an access token is not a refresh token
        await refresh(client, pair.access_token),
        401,
        "token_malformed",
        www=invalid_token("The refresh token is malformed."),
    )


async def test_refresh_of_an_unknown_or_ended_session(web: WebApp) -> None:
    client = web.client()
    unknown = encode_refresh_token(web.kit.keyring.refresh_secret, new_session_id("alice"), 0)
    detail = "The session does not exist or has ended."
    assert_error(await refresh(client, unknown), 401, "session_not_found", detail=detail)
    pair = await web.login()
    await web.issuer.logout(pair.session_id)
    assert_error(await refresh(client, pair.refresh_token), 401, "session_not_found")
    other = await web.login()
    web.clock.advance(IDLE_TTL + 1)  # idle lifetime over
    assert_error(await refresh(client, other.refresh_token), 401, "session_not_found")


@pytest.mark.parametrize(
    ("kwargs", "detail"),
    [
        ({}, "Content-Type must be application/json."),
        ({"content": b'{"refresh_token": "x"}'}, "Content-Type must be application/json."),
        (
            {"content": b"refresh_token=x", "headers": {"content-type": "text/plain"}},
            "Content-Type must be application/json.",
        ),
        (
            {
                "content": b"refresh_token=x",
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
            "Content-Type must be application/json.",
        ),
        (
            {"content": b"{", "headers": {"content-type": "application/json"}},
            "The body is not valid JSON.",
        ),
        (
            {"content": b"\xff\xfe{}", "headers": {"content-type": "application/json"}},
            "The body is not valid JSON.",
        ),
        (
            {"content": b"[" * 5000, "headers": {"content-type": "application/json"}},
            "The body is not valid JSON.",
        ),
        ({"json": []}, "The body must be a JSON object."),
        ({"json": "rt1.x"}, "The body must be a JSON object."),
        (
            {"content": b"null", "headers": {"content-type": "application/json"}},
            "The body must be a JSON object.",
        ),
        ({"json": {}}, "The body must carry a 'refresh_token' string."),
        ({"json": {"refresh_token": 123}}, "The body must carry a 'refresh_token' string."),
        ({"json": {"refresh_token": None}}, "The body must carry a 'refresh_token' string."),
        ({"json": {"refresh_token": ""}}, "The body must carry a 'refresh_token' string."),
        ({"json": {"refresh_token": ["rt1"]}}, "The body must carry a 'refresh_token' string."),
        ({"json": {"refresh_token": {"a": 1}}}, "The body must carry a 'refresh_token' string."),
        ({"json": {"refresh_token": True}}, "The body must carry a 'refresh_token' string."),
        ({"json": {"token": "rt1.x"}}, "The body must carry a 'refresh_token' string."),
        (
            {"content": b"{" + b'"a":1,' * 2000 + b'"refresh_token":1}'},
            "The body is larger than 8192 bytes.",
        ),
    ],
)
async def test_refresh_bad_requests(web: WebApp, kwargs: dict[str, Any], detail: str) -> None:
    kwargs = dict(kwargs)  # parameters are shared between the store runs
    headers = kwargs.pop("headers", {})
    if "content" in kwargs and len(kwargs["content"]) > 8192:
        headers = {"content-type": "application/json"}
    response = await web.client().post("/auth/refresh", headers=headers, **kwargs)
    assert_error(response, 400, "bad_request", detail=detail)


async def test_refresh_content_type_parameters_are_fine(web: WebApp) -> None:
    pair = await web.login()
    response = await web.client().post(
        "/auth/refresh",
        content=json.dumps({"refresh_token": pair.refresh_token}).encode(),
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )
    assert response.status_code == 200, response.text


async def test_refresh_oversized_bodies(web: WebApp) -> None:
    client = web.client()
    limit = web.config.max_body_bytes
    detail = f"The body is larger than {limit} bytes."
    big = json.dumps({"refresh_token": "x", "pad": "a" * limit}).encode()
    json_type = {"content-type": "application/json"}
    response = await client.post("/auth/refresh", content=big, headers=json_type)
    assert_error(response, 400, "bad_request", detail=detail)

    async def stream() -> AsyncIterator[bytes]:  # chunked: no Content-Length to trust
        for _ in range(64):
            yield b" " * 1024

    response = await client.post("/auth/refresh", content=stream(), headers=json_type)
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(response, 400, "bad_request", detail=detail)

    response = await client.post(
        "/auth/refresh",
        content=b"{}",
        headers={**json_type, "content-length": "99999999999999999999"},
    )
    assert_error(response, 400, "bad_request", detail=detail)


async def test_refresh_max_body_bytes_is_configurable(make_web: MakeWeb) -> None:
    web = await make_web(config=WebConfig(max_body_bytes=256))
    pair = await web.login()
    client = web.client()
    assert (await refresh(client, pair.refresh_token)).status_code == 200
    response = await client.post("/auth/refresh", json={"refresh_token": "x", "pad": "a" * 300})
    assert_error(response, 400, "bad_request", detail="The body is larger than 256 bytes.")


# -- POST /auth/refresh, cookie mode ----------------------------------------------------------


async def test_login_route_sets_secure_cookies(web: WebApp) -> None:
    client = web.client()
    response = await client.post("/auth/login", json={"user_id": "alice", "cookie": True})
    assert response.status_code == 200
    assert set(response.json()) == COOKIE_KEYS
    assert_cookie_attributes(set_cookies(response), secure=True, refresh_path="/auth/refresh")


def assert_cookie_attributes(
    cookies: dict[str, dict[str, str | bool]], *, secure: bool, refresh_path: str
) -> None:
    host = "__Host-" if secure else ""
    refresh_name = ("__Secure-" if secure else "") + "jwtsess-refresh"
    assert set(cookies) == {f"{host}jwtsess-access", refresh_name, f"{host}jwtsess-csrf"}
    access = cookies[f"{host}jwtsess-access"]
    assert access["httponly"] is True
    assert access["path"] == "/"
    assert access["samesite"] == "lax"
    assert access["max-age"] == "900"
    refresh_cookie = cookies[refresh_name]
    assert refresh_cookie["httponly"] is True
    assert refresh_cookie["path"] == refresh_path
    assert refresh_cookie["samesite"] == "strict"
    assert refresh_cookie["max-age"] == str(IDLE_TTL)
    csrf = cookies[f"{host}jwtsess-csrf"]
    assert "httponly" not in csrf  # scripts read it to fill the header
    assert csrf["path"] == "/"
    assert csrf["samesite"] == "strict"
    assert csrf["max-age"] == str(IDLE_TTL)
    assert len(str(csrf["value"])) >= 32
    for cookie in cookies.values():
        assert "domain" not in cookie  # __Host- forbids it; none of ours needs one
        assert ("secure" in cookie) is secure
        assert cookie["value"]


async def test_refresh_from_cookies_resets_every_cookie(web: WebApp) -> None:
    client = await web.cookie_client("alice")
    old_access = client.cookies.get("__Host-jwtsess-access")
    old_csrf = client.cookies.get("__Host-jwtsess-csrf")
    old_refresh = client.cookies.get("__Secure-jwtsess-refresh")

    # The refresh cookie goes to the refresh route only.
    assert (await client.get("/cookie-names")).json() == [
        "__Host-jwtsess-access",
        "__Host-jwtsess-csrf",
    ]

    web.clock.advance(30)
    response = await client.post("/auth/refresh", headers=web.csrf(client))
    assert response.status_code == 200, response.text
    assert_no_store(response)
    body = response.json()
    assert set(body) == COOKIE_KEYS  # no token in a cookie-mode body
    assert body["expires_in"] == 900
    cookies = set_cookies(response)
    assert_cookie_attributes(cookies, secure=True, refresh_path="/auth/refresh")
    assert cookies["__Host-jwtsess-access"]["value"] != old_access
    assert cookies["__Host-jwtsess-csrf"]["value"] != old_csrf  # a fresh CSRF token
    assert cookies["__Secure-jwtsess-refresh"]["value"] != old_refresh
    assert response.text.count(str(cookies["__Host-jwtsess-access"]["value"])) == 0

    me = await client.get("/me")
    assert me.json()["session_id"] == body["session_id"]
    # The old CSRF value no longer matches the cookie.
    assert_error(
        await client.post("/me", headers={"x-csrf-token": str(old_csrf)}), 403, "csrf_failed"
    )
    assert (await client.post("/me", headers=web.csrf(client))).status_code == 200


async def test_cookie_refresh_needs_the_csrf_header(web: WebApp) -> None:
    client = await web.cookie_client()
    for headers in ({}, {"x-csrf-token": "wrong"}, {"x-csrf-token": ""}):
        response = await client.post("/auth/refresh", headers=headers)
        assert_error(response, 403, "csrf_failed")


async def test_cookie_refresh_with_only_the_refresh_cookie(web: WebApp) -> None:
    """What a browser sends once the access cookie has expired (Max-Age = its lifetime)."""
    client = await web.cookie_client()
    client.cookies.delete("__Host-jwtsess-access")
    web.clock.advance(web.kit.settings.access_ttl + web.kit.settings.leeway)
    response = await client.post("/auth/refresh", headers=web.csrf(client))
    assert response.status_code == 200, response.text
    assert (await client.get("/me")).status_code == 200
    # Only the refresh cookie but no CSRF cookie: refused by the route itself.
    client.cookies.delete("__Host-jwtsess-csrf")
    client.cookies.delete("__Host-jwtsess-access")
    response = await client.post("/auth/refresh", headers={"x-csrf-token": "anything"})
    assert_error(response, 403, "csrf_failed", detail="A cookie refresh needs the CSRF header.")


async def test_cookie_refresh_after_the_access_token_was_revoked(web: WebApp) -> None:
    """A role change (``reissue``) revokes access tokens but keeps sessions: the next
    refresh must succeed, though the browser still sends the revoked access cookie."""
    client = await web.cookie_client("alice", "user")
    web.clock.advance(1)
    await web.issuer.reissue("alice", role="admin")
    stale = client.cookies.get("__Host-jwtsess-access")
    assert stale is not None
    with pytest.raises(TokenRevoked):  # the browser still holds it: a proactive refresh
        web.verifier.verify(stale)
    response = await client.post("/auth/refresh", headers=web.csrf(client))
    assert response.status_code == 200, response.text
    # What a browser keeps: the last Set-Cookie for a name wins, so the fresh access
    # cookie must not be followed by the middleware's deletion of the stale one.
    access = set_cookies(response)["__Host-jwtsess-access"]
    assert access["value"], response.headers.get_list("set-cookie")
    assert access["max-age"] in ("900", "901")  # iat may sit on the revocation instant
    assert (await client.get("/me")).json()["role"] == "admin"


async def test_cookie_login_over_a_stale_access_cookie_keeps_the_new_one(web: WebApp) -> None:
    client = await web.cookie_client("alice")
    web.clock.advance(1)
    await web.issuer.logout_all("alice")  # from another device
    response = await client.post("/auth/login", json={"user_id": "alice", "cookie": True})
    assert response.status_code == 200
    access = set_cookies(response)["__Host-jwtsess-access"]
    assert access["value"], response.headers.get_list("set-cookie")
    assert access["max-age"] in ("900", "901")  # iat may sit on the revocation instant
    assert (await client.get("/me")).status_code == 200


async def test_failed_cookie_refresh_clears_the_session_cookies(web: WebApp) -> None:
    client = await web.cookie_client("alice")
    sid = (await client.get("/auth/session")).json()["session_id"]
    await web.issuer.logout(sid)  # ended elsewhere (another tab, an admin)
    response = await client.post("/auth/refresh", headers=web.csrf(client))
    assert_error(response, 401, "session_not_found")
    assert_cleared(response)
    assert not client.cookies


async def test_reused_refresh_cookie_clears_the_session_cookies(web: WebApp) -> None:
    client = await web.cookie_client("alice")
    stolen = client.cookies.get("__Secure-jwtsess-refresh")
    assert stolen is not None
    assert (await client.post("/auth/refresh", headers=web.csrf(client))).status_code == 200
    web.clock.advance(SessionPolicy().grace + 1)
    client.cookies.set(
        "__Secure-jwtsess-refresh", stolen, domain="testserver.local", path="/auth/refresh"
    )
    response = await client.post("/auth/refresh", headers=web.csrf(client))
    assert_error(response, 401, "refresh_reused")
    assert_cleared(response)


@pytest.mark.parametrize("value", ["garbage", "forged"])
async def test_unusable_refresh_cookie_is_cleared(web: WebApp, value: str) -> None:
    """A refresh cookie that can never work (corrupt, or MAC'd under a replaced
    refresh secret) is deleted like one whose session ended."""
    client = await web.cookie_client("alice")
    token = client.cookies.get("__Secure-jwtsess-refresh")
    assert token is not None
    bad = (
        "garbage"
        if value == "garbage"
        else token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    )
    client.cookies.set(
        "__Secure-jwtsess-refresh", bad, domain="testserver.local", path="/auth/refresh"
    )
    response = await client.post("/auth/refresh", headers=web.csrf(client))
    assert response.status_code == 401
    assert response.json()["error"] in ("token_malformed", "token_invalid")
    assert_cleared(response)


async def test_a_json_body_wins_over_the_refresh_cookie(web: WebApp) -> None:
    client = await web.cookie_client("alice")
    other = await web.login("bob")
    response = await client.post(
        "/auth/refresh", json={"refresh_token": other.refresh_token}, headers=web.csrf(client)
    )
    assert response.status_code == 200
    assert set(response.json()) == TOKEN_KEYS
    assert response.json()["session_id"] == other.session_id
    assert "set-cookie" not in response.headers


async def test_plain_http_cookies_have_no_prefix_and_no_secure(make_web: MakeWeb) -> None:
    web = await make_web(config=WebConfig(secure=False, prefix="/api/auth"))
    client = web.client(base_url="http://testserver")
    response = await client.post("/api/auth/login", json={"user_id": "alice", "cookie": True})
    assert_cookie_attributes(set_cookies(response), secure=False, refresh_path="/api/auth/refresh")
    response = await client.post("/api/auth/refresh", headers=web.csrf(client))
    assert response.status_code == 200, response.text
    assert_cookie_attributes(set_cookies(response), secure=False, refresh_path="/api/auth/refresh")


# -- rate limit -------------------------------------------------------------------------------


async def test_refresh_is_rate_limited_per_session(make_web: MakeWeb) -> None:
    web = await make_web(policy=SessionPolicy(refresh_limit=2, refresh_window=60))
    pair = await web.login()
    web.clock.advance(5)
    token = pair.refresh_token
    for ip in ("10.0.0.1", "10.0.0.2"):  # a different address each time: only the sid counts
        response = await refresh(web.client(ip=ip), token)
        assert response.status_code == 200, response.text
        token = response.json()["refresh_token"]
    response = await refresh(web.client(ip="10.0.0.3"), token)
    assert_error(response, 429, "rate_limited", detail="Too many requests.")
    assert response.headers["retry-after"] == "55"  # the window ends at T0 + 60
    assert T0 % 60 == 0

    web.clock.advance(55)
    response = await refresh(web.client(ip="10.0.0.4"), token)
    assert response.status_code == 200, response.text


async def test_refresh_is_rate_limited_per_client_address(make_web: MakeWeb) -> None:
    web = await make_web(
        policy=SessionPolicy(refresh_limit=2, refresh_window=30, address_refresh_limit=2)
    )
    pairs = [await web.login(f"user-{i}") for i in range(4)]
    client = web.client(ip="192.0.2.7")
    for pair in pairs[:2]:
        assert (await refresh(client, pair.refresh_token)).status_code == 200
    web.clock.advance(12.5)
    response = await refresh(client, pairs[2].refresh_token)
    assert_error(response, 429, "rate_limited")
    assert response.headers["retry-after"] == str(math.ceil(30 - 12.5))
    # Another address is not affected, nor was the refused token spent.
    assert (await refresh(web.client(ip="192.0.2.8"), pairs[2].refresh_token)).status_code == 200
    assert (await refresh(web.client(ip="192.0.2.8"), pairs[3].refresh_token)).status_code == 200


async def test_cookie_refresh_is_rate_limited_too(make_web: MakeWeb) -> None:
    web = await make_web(policy=SessionPolicy(refresh_limit=1))
    client = await web.cookie_client()
    assert (await client.post("/auth/refresh", headers=web.csrf(client))).status_code == 200
    response = await client.post("/auth/refresh", headers=web.csrf(client))
    assert_error(response, 429, "rate_limited")
    assert response.headers["retry-after"] == "60"
    assert "set-cookie" not in response.headers


async def test_garbage_refresh_tokens_do_not_count(make_web: MakeWeb) -> None:
    web = await make_web(policy=SessionPolicy(refresh_limit=1, address_refresh_limit=1))
    client = web.client()
    for _ in range(3):
        assert (await refresh(client, "garbage")).status_code == 401
    pair = await web.login()
    assert (await refresh(client, pair.refresh_token)).status_code == 200


# -- logout, logout-others, logout-all --------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), AUTHENTICATED_ROUTES)
async def test_session_routes_need_a_token(web: WebApp, method: str, path: str) -> None:
    client = web.client()
    response = await client.request(method, path)
    assert_error(response, 401, "token_missing", detail="Authentication required.", www=CHALLENGE)
    response = await client.request(method, path, headers=bearer("garbage"))
    www = invalid_token("The token is not a compact JWS of three segments.")
    assert_error(response, 401, "token_malformed", www=www)


@pytest.mark.parametrize(
    ("method", "path"), [(m, p) for m, p in AUTHENTICATED_ROUTES if m != "GET"]
)
async def test_cookie_session_routes_need_the_csrf_header(
    web: WebApp, method: str, path: str
) -> None:
    client = await web.cookie_client()
    assert_error(await client.request(method, path), 403, "csrf_failed")


def assert_cleared(response: httpx.Response, *, secure: bool = True) -> None:
    cookies = set_cookies(response)
    host = "__Host-" if secure else ""
    refresh_name = ("__Secure-" if secure else "") + "jwtsess-refresh"
    assert set(cookies) == {f"{host}jwtsess-access", refresh_name, f"{host}jwtsess-csrf"}
    for name, cookie in cookies.items():
        assert cookie["value"] in ("", '""'), name
        assert cookie["max-age"] == "0"
        assert cookie["path"] == ("/auth/refresh" if name == refresh_name else "/")
        assert ("secure" in cookie) is secure


async def test_logout_with_a_bearer_token(web: WebApp) -> None:
    pair = await web.login()
    client = web.client()
    response = await client.post("/auth/logout", headers=bearer(pair.access_token))
    assert response.status_code == 200
    assert response.json() == {"logged_out": True}
    assert_no_store(response)
    assert_cleared(response)
    response = await client.get("/me", headers=bearer(pair.access_token))
    assert_error(response, 401, "token_revoked", www=invalid_token("The token has been revoked."))
    assert_error(await refresh(client, pair.refresh_token), 401, "session_not_found")


async def test_logout_with_cookies(web: WebApp) -> None:
    client = await web.cookie_client()
    response = await client.post("/auth/logout", headers=web.csrf(client))
    assert response.status_code == 200
    assert response.json() == {"logged_out": True}
    assert_cleared(response)
    assert not client.cookies  # the jar dropped them all
    assert_error(await client.get("/me"), 401, "token_missing", www=CHALLENGE)


async def test_logout_others(web: WebApp) -> None:
    mine = await web.login("alice")
    others = [await web.login("alice") for _ in range(2)]
    stranger = await web.login("bob")
    client = web.client()
    response = await client.post("/auth/logout-others", headers=bearer(mine.access_token))
    assert response.status_code == 200
    assert response.json() == {"ended": 2}
    assert_no_store(response)
    assert "set-cookie" not in response.headers  # the caller stays logged in
    assert (await client.get("/me", headers=bearer(mine.access_token))).status_code == 200
    assert (await client.get("/me", headers=bearer(stranger.access_token))).status_code == 200
    for pair in others:
        response = await client.get("/me", headers=bearer(pair.access_token))
        assert_error(
            response, 401, "token_revoked", www=invalid_token("The token has been revoked.")
        )
        assert_error(await refresh(client, pair.refresh_token), 401, "session_not_found")
    response = await client.post("/auth/logout-others", headers=bearer(mine.access_token))
    assert response.json() == {"ended": 0}


async def test_logout_all(web: WebApp) -> None:
    pairs = [await web.login("alice") for _ in range(3)]
    stranger = await web.login("bob")
    client = web.client()
    response = await client.post("/auth/logout-all", headers=bearer(pairs[0].access_token))
    assert response.status_code == 200
    assert response.json() == {"ended": 3}
    assert_no_store(response)
    assert_cleared(response)
    for pair in pairs:
        response = await client.get("/me", headers=bearer(pair.access_token))
        assert_error(
            response, 401, "token_revoked", www=invalid_token("The token has been revoked.")
        )
        assert_error(await refresh(client, pair.refresh_token), 401, "session_not_found")
    assert (await client.get("/me", headers=bearer(stranger.access_token))).status_code == 200
    # A new login afterwards works (its tokens are issued after the revocation instant).
    fresh = await web.login("alice")
    assert (await client.get("/me", headers=bearer(fresh.access_token))).status_code == 200


async def test_logout_all_with_cookies(web: WebApp) -> None:
    client = await web.cookie_client("alice")
    other = await web.login("alice")
    response = await client.post("/auth/logout-all", headers=web.csrf(client))
    assert response.json() == {"ended": 2}
    assert_cleared(response)
    assert not client.cookies
    assert (await web.client().get("/me", headers=bearer(other.access_token))).status_code == 401


# -- GET /auth/sessions, DELETE /auth/sessions/{sid}, GET /auth/session -----------------------


async def test_list_sessions_marks_the_current_one(web: WebApp) -> None:
    first = await web.login("alice", ip="198.51.100.1")
    web.clock.advance(10)
    second = await web.login("alice", ip="198.51.100.2")
    await web.login("bob")
    client = web.client()
    response = await client.get("/auth/sessions", headers=bearer(second.access_token))
    assert response.status_code == 200
    assert_no_store(response)
    assert response.json() == {
        "sessions": [
            {
                "session_id": first.session_id,
                "created_at": T0,
                "last_used_at": T0,
                "expires_at": T0 + IDLE_TTL,
                "device": "jwtsess-tests 1.0",
                "user_agent": USER_AGENT,
                "ip": "198.51.100.1",
                "current": False,
            },
            {
                "session_id": second.session_id,
                "created_at": T0 + 10,
                "last_used_at": T0 + 10,
                "expires_at": T0 + 10 + IDLE_TTL,
                "device": "jwtsess-tests 1.0",
                "user_agent": USER_AGENT,
                "ip": "198.51.100.2",
                "current": True,
            },
        ]
    }


async def test_list_sessions_shows_the_refreshing_client(web: WebApp) -> None:
    client = await web.cookie_client("alice", ip="203.0.113.9")
    web.clock.advance(100)
    moved = web.client(ip="203.0.113.10")  # the same browser, on another network
    moved.cookies = client.cookies
    assert (await moved.post("/auth/refresh", headers=web.csrf(moved))).status_code == 200
    sessions = (await moved.get("/auth/sessions")).json()["sessions"]
    assert len(sessions) == 1
    assert sessions[0]["current"] is True
    assert sessions[0]["ip"] == "203.0.113.10"
    assert sessions[0]["user_agent"] == USER_AGENT
    assert sessions[0]["created_at"] == T0
    assert sessions[0]["last_used_at"] == T0 + 100
    assert sessions[0]["expires_at"] == T0 + 100 + IDLE_TTL


async def test_revoke_another_of_my_sessions(web: WebApp) -> None:
    mine = await web.login("alice")
    laptop = await web.login("alice")
    client = web.client()
    response = await client.delete(
        f"/auth/sessions/{laptop.session_id}", headers=bearer(mine.access_token)
    )
    assert response.status_code == 200
    assert response.json() == {"revoked": True}
    assert_no_store(response)
    assert "set-cookie" not in response.headers
    response = await client.get("/me", headers=bearer(laptop.access_token))
    assert_error(response, 401, "token_revoked", www=invalid_token("The token has been revoked."))
    assert_error(await refresh(client, laptop.refresh_token), 401, "session_not_found")
    assert (await client.get("/me", headers=bearer(mine.access_token))).status_code == 200
    # Revoking it again: it is no longer there.
    response = await client.delete(
        f"/auth/sessions/{laptop.session_id}", headers=bearer(mine.access_token)
    )
    assert_error(response, 404, "session_not_found")


async def test_revoke_my_current_session_clears_cookies(web: WebApp) -> None:
    client = await web.cookie_client("alice")
    sid = (await client.get("/auth/session")).json()["session_id"]
    response = await client.delete(f"/auth/sessions/{sid}", headers=web.csrf(client))
    assert response.status_code == 200
    assert response.json() == {"revoked": True}
    assert_cleared(response)
    assert_error(await client.get("/me"), 401, "token_missing", www=CHALLENGE)


@pytest.mark.parametrize(
    "sid",
    [
        "bob",  # replaced by bob's real session id
        "abcdefgh.abcdefghijklmnopqrstuv",  # well-formed, unknown
        "not-a-session-id",
        "a" * 300,
        "%00",
        "a b",
    ],
)
async def test_revoking_a_session_that_is_not_mine_is_404(web: WebApp, sid: str) -> None:
    alice = await web.login("alice")
    bob = await web.login("bob")
    target = bob.session_id if sid == "bob" else sid
    client = web.client()
    response = await client.delete(f"/auth/sessions/{target}", headers=bearer(alice.access_token))
    assert_error(
        response, 404, "session_not_found", detail="The session does not exist or has ended."
    )
    assert "set-cookie" not in response.headers
    assert (await client.get("/me", headers=bearer(bob.access_token))).status_code == 200


async def test_session_status(web: WebApp) -> None:
    pair = await web.login("alice", "user")
    client = web.client()
    web.clock.advance(100)
    response = await client.get("/auth/session", headers=bearer(pair.access_token))
    assert response.status_code == 200
    assert_no_store(response)
    claims = pair.claims
    assert response.json() == {
        "user_id": "alice",
        "role": "user",
        "session_id": pair.session_id,
        "claims": claims.as_dict(),
        "expires_at": claims.exp,
        "remaining": 800,
        "session_expires_at": T0 + IDLE_TTL,
        "session_remaining": IDLE_TTL - 100,
    }
    assert claims.exp == T0 + 900


async def test_session_status_of_an_ended_session_with_a_live_token(web: WebApp) -> None:
    """The session lapsed (idle) while an access token issued before still lives."""
    web_policy = SessionPolicy(idle_ttl=300, absolute_ttl=3600)
    web = build_web(web.kit, web.store, policy=web_policy)
    await web.mirror.load()
    try:
        pair = await web.login()
        web.clock.advance(400)
        response = await web.client().get("/auth/session", headers=bearer(pair.access_token))
        assert response.status_code == 200
        body = response.json()
        assert (body["remaining"], body["session_expires_at"], body["session_remaining"]) == (
            500,
            None,
            0,
        )
    finally:
        await web.aclose()


# -- GET /.well-known/jwks.json ---------------------------------------------------------------


async def test_jwks(make_web: MakeWeb) -> None:
    web = await make_web("ES256")
    response = await web.client().get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    publish_delay = web.kit.keyring.manifest.publish_delay
    assert (
        response.headers["cache-control"] == f"public, max-age={min(300, int(publish_delay / 2))}"
    )
    max_age = int(response.headers["cache-control"].rsplit("=", 1)[1])
    assert 0 < max_age < publish_delay
    keys = response.json()["keys"]
    kid = web.kit.keyring.signing_key().kid
    assert [key["kid"] for key in keys] == [kid]
    assert keys[0]["kty"] == "EC"
    assert keys[0]["alg"] == "ES256"
    assert keys[0]["use"] == "sig"
    assert "d" not in keys[0]  # public halves only
    # Behind the middleware like every route: a bad Authorization header is still judged.
    response = await web.client().get("/.well-known/jwks.json", headers=bearer("garbage"))
    assert_error(
        response,
        401,
        "token_malformed",
        www=invalid_token("The token is not a compact JWS of three segments."),
    )


async def test_jwks_never_publishes_hmac_secrets(web: WebApp) -> None:
    response = await web.client().get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.json() == {"keys": []}


# -- store and mirror trouble -----------------------------------------------------------------


@pytest.mark.system
async def test_store_down_is_503_and_nothing_changes(faulty_web: WebApp) -> None:
    """Redis cut off behind the fault proxy: every route that needs the store answers 503."""
    web, fault = faulty_web, faulty_web.fault
    assert fault is not None
    pair = await web.login()
    client = web.client()
    fault.cut()
    detail = "The session store is unavailable; try again."
    auth = bearer(pair.access_token)
    for response in (
        await refresh(client, pair.refresh_token),
        await client.post("/auth/logout", headers=auth),
        await client.post("/auth/logout-others", headers=auth),
        await client.post("/auth/logout-all", headers=auth),
        await client.get("/auth/sessions", headers=auth),
        await client.delete(f"/auth/sessions/{pair.session_id}", headers=auth),
        await client.get("/auth/session", headers=auth),
        await client.post("/auth/login", json={"user_id": "alice"}),
    ):
        assert_error(response, 503, "store_unavailable", detail=detail)
        assert response.headers["retry-after"] == "1"
    # Verifying access tokens needs no store.
    assert (await client.get("/me", headers=auth)).status_code == 200
    fault.restore()
    response = await refresh(client, pair.refresh_token)  # the same token: nothing was rotated
    assert response.status_code == 200, response.text


async def test_unreachable_redis_is_503(make_kit: Callable[..., TokenKit]) -> None:
    dead = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=2)
    web = build_web(make_kit("HS256"), dead)
    try:
        client = web.client()
        token = encode_refresh_token(web.kit.keyring.refresh_secret, new_session_id("alice"), 0)
        assert_error(await refresh(client, token), 503, "store_unavailable")
        response = await client.post("/auth/login", json={"user_id": "alice"})
        assert_error(response, 503, "store_unavailable")
    finally:
        await web.aclose()
        await dead.close()


async def test_stale_revocation_state_is_503_on_authenticated_routes(web: WebApp) -> None:
    pair = await web.login()
    client = web.client()
    web.make_stale()
    for method, path in AUTHENTICATED_ROUTES:
        response = await client.request(method, path, headers=bearer(pair.access_token))
        assert_error(response, 503, "revocation_state_stale")
        assert response.headers["retry-after"] == "1"
    # Refresh by body presents no access token: the route works without the mirror.
    assert (await refresh(client, pair.refresh_token)).status_code == 200


# -- audit events -----------------------------------------------------------------------------


async def test_audit_events_through_the_routes(
    web: WebApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jwtsess.audit")
    secrets_seen: list[str] = []
    client = web.client(ip="198.51.100.77")

    def keep(response: httpx.Response) -> dict[str, Any]:
        body: dict[str, Any] = response.json()
        secrets_seen.extend(str(body[k]) for k in ("access_token", "refresh_token") if k in body)
        secrets_seen.extend(c.value for c in response.cookies.jar if c.value)
        return body

    login = keep(await client.post("/auth/login", json={"user_id": "alice"}))
    second = keep(await client.post("/auth/login", json={"user_id": "alice"}))
    third = keep(await client.post("/auth/login", json={"user_id": "alice"}))
    cookie = await web.cookie_client("alice", ip="198.51.100.77")
    secrets_seen.extend(c.value for c in cookie.cookies.jar if c.value)

    rotated = keep(await refresh(client, login["refresh_token"]))
    keep(await refresh(client, login["refresh_token"]))  # grace
    web.clock.advance(SessionPolicy().grace + 1)
    assert (await refresh(client, login["refresh_token"])).status_code == 401  # reuse: theft
    keep(await cookie.post("/auth/refresh", headers=web.csrf(cookie)))
    secrets_seen.extend(c.value for c in cookie.cookies.jar if c.value)
    auth = bearer(second["access_token"])
    assert (
        await client.delete(f"/auth/sessions/{third['session_id']}", headers=auth)
    ).status_code == 200
    assert (await client.post("/auth/logout-others", headers=auth)).status_code == 200
    assert (await client.post("/auth/logout", headers=auth)).status_code == 200
    fourth = keep(await client.post("/auth/login", json={"user_id": "alice"}))
    web.clock.advance(1)
    auth = bearer(fourth["access_token"])
    assert (await client.post("/auth/logout-all", headers=auth)).status_code == 200

    records = [r for r in caplog.records if r.name == "jwtsess.audit"]
    events = [r.__dict__["audit"] for r in records]
    assert [e["event"] for e in events] == [
        "login",
        "login",
        "login",
        "login",  # the cookie client
        "refresh",
        "refresh_grace",
        "reuse_detected",
        "refresh",  # the cookie client
        "session_revoked",
        "logout_others",
        "logout",
        "login",
        "logout_all",
    ]
    by_name = {e["event"]: e for e in events}
    assert by_name["reuse_detected"]["session_id"] == login["session_id"]
    assert events[4]["session_id"] == rotated["session_id"] == login["session_id"]
    assert by_name["session_revoked"]["session_id"] == third["session_id"]
    assert by_name["logout"]["session_id"] == second["session_id"]
    assert by_name["logout_all"]["user_id"] == "alice"
    assert by_name["logout_all"]["details"] == {"ended": 1}
    assert by_name["logout_others"]["details"] == {"ended": 1}  # the cookie client's session
    for event in events:
        assert event["ip"] == "198.51.100.77", event
        assert event["user_agent"] == USER_AGENT, event
    levels = {r.levelno for r in records if r.__dict__["audit"]["event"] == "reuse_detected"}
    assert levels == {logging.WARNING}

    assert len(secrets_seen) >= 10
    for record in records:
        text = record.getMessage() + repr(record.__dict__)
        for secret in secrets_seen:
            assert secret not in text, record.__dict__["audit"]["event"]


# -- never a traceback ------------------------------------------------------------------------


async def test_malformed_input_never_yields_a_traceback(web: WebApp) -> None:
    client = web.client(raise_app_exceptions=False)
    pair = await web.login()
    head, _, signature = pair.access_token.split(".")
    json_type = {"content-type": "application/json"}
    access = web.config.access_cookie_name
    junk_tokens = [
        "garbage",
        "a.b.c",
        "e30.e30.e30",  # {} header
        "bnVsbA.bnVsbA.AA",  # null
        "W10.W10.AA",  # []
        "eyJhbGciOiJub25lIn0.e30.",  # alg none, empty signature
        "eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6WzFdfQ.e30.AA",  # kid: [1]
        pair.access_token + "x",
        pair.access_token.replace(".", ".."),
        "é" * 50,
        f"{head}.{'é' * 8}.{signature}",  # a non-ASCII payload between a good header and signature
        "." * 3000,
        "a" * 70000,
    ]
    requests: list[tuple[str, str, dict[str, Any]]] = []
    for token in junk_tokens:
        raw = token.encode("latin-1")
        requests.append(("GET", "/me", {"headers": {"Authorization": b"Bearer " + raw}}))
        cookie_header = f"{access}=".encode() + raw
        requests.append(("GET", "/auth/session", {"headers": {"Cookie": cookie_header}}))
        requests.append(("POST", "/auth/refresh", {"json": {"refresh_token": token}}))
    for cookie in [
        "=;;;==",
        f'{access}="quoted"',
        f"{access}=a; {access}=b",
        "\x7f=\x7f",
        ";" * 500,
    ]:
        requests.append(("GET", "/me", {"headers": {"Cookie": cookie}}))
        requests.append(("POST", "/auth/refresh", {"headers": {"Cookie": cookie}}))
    for body in [
        b"{",
        b"",
        b"null",
        b"[]",
        b'"x"',
        b"\xff\xfe",
        b"[" * 8000,
        b'{"refresh_token": 1' + b"0" * 5000 + b"}",
        b'{"refresh_token": NaN}',
        b'{"refresh_token": 123}',
        b'{"refresh_token": {"$ne": null}}',
        b'{"refresh_token": "rt1.\\u0000"}',
        b'{"refresh_token": "\\ud800"}',
        b"x" * 200_000,
    ]:
        requests.append(("POST", "/auth/refresh", {"content": body, "headers": json_type}))
        requests.append(("POST", "/auth/login", {"content": body, "headers": json_type}))
    for headers in [
        {"content-type": "application/json", "content-length": "-1"},
        {"content-type": "application/json", "content-length": "abc"},
        {"content-type": "application/json; charset=\x00"},
        {"content-type": "multipart/form-data; boundary=x"},
    ]:
        requests.append(("POST", "/auth/refresh", {"content": b"{}", "headers": headers}))
    requests.append(("POST", "/auth/login", {"json": {"user_id": 123}}))
    requests.append(("POST", "/auth/login", {"json": {"user_id": ""}}))
    requests.append(("POST", "/auth/login", {"json": {"user_id": "x" * 1000}}))
    for sid in ["%00", "x" * 5000, "%ff%fe", pair.refresh_token]:
        requests.append(("DELETE", f"/auth/sessions/{sid}", {"headers": bearer(pair.access_token)}))
    requests.append(("GET", "/auth/refresh", {}))  # wrong method
    requests.append(("GET", "/me?access_token=" + "a" * 10000, {}))

    failures: list[tuple[str, str, int, str]] = []
    for method, path, kwargs in requests:
        try:
            response = await client.request(method, path, **kwargs)
        except (httpx.LocalProtocolError, UnicodeEncodeError):
            continue  # httpx itself refuses to send it
        assert "Traceback" not in response.text, (method, path, kwargs)
        assert 'File "' not in response.text, (method, path, kwargs)
        if response.status_code >= 500:
            failures.append((method, path, response.status_code, repr(kwargs)[-60:]))
            continue
        if (
            response.headers.get("content-type") == "application/json"
            and response.status_code >= 400
        ):
            assert set(response.json()) == {"error", "detail"}, (method, path, response.text)
    assert failures == []
