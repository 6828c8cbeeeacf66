"""The OAuth 2.0 endpoints (jwtsess/web/oauth.py): one test per MUST they touch.

Tests are named after the clause: RFC 6749 §3.2, §5.1, §5.2, §6 (token
endpoint), RFC 7009 §2 (revocation), RFC 7662 §2 (introspection), RFC 8414
§2-3 (metadata). They run against tests/support/web_app.py's app, through httpx, on
every store unless the store cannot matter (parsing).
"""

from __future__ import annotations

import base64
import random
import re
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from jwtsess import RevocationMirror, SessionPolicy, TokenRevoked
from jwtsess.web import OAuthConfig, OAuthEndpoints
from tests.support.web_app import INTROSPECTION_CLIENT, MakeWeb, WebApp, bearer

TOKEN = "/auth/token"
REVOKE = "/auth/revoke"
INTROSPECT = "/auth/introspect"
METADATA = "/.well-known/oauth-authorization-server"
# RFC 6749 §5.2: error and error_description use %x20-21 / %x23-5B / %x5D-7E only.
ERROR_TEXT = re.compile(r"^[\x20-\x21\x23-\x5b\x5d-\x7e]*$")

memory_only = pytest.mark.parametrize("store", ["memory"], indirect=True)


async def grant(client: httpx.AsyncClient, **params: str) -> httpx.Response:
    """A token request: form-encoded, as every OAuth client sends it."""
    return await client.post(TOKEN, data=params)


def refresh_params(token: str, **extra: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": token, "client_id": "app", **extra}


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body: dict[str, Any] = response.json()
    assert body["error"] == error, body
    assert ERROR_TEXT.match(body["error"])
    assert ERROR_TEXT.match(body["error_description"])
    return body


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


INTROSPECTOR = basic(*INTROSPECTION_CLIENT)


# -- RFC 6749 §3.2: the token endpoint's request ------------------------------------------


@memory_only
async def test_rfc6749_3_2_token_requests_must_use_post(web: WebApp) -> None:
    pair = await web.login()
    response = await web.client().get(TOKEN, params=refresh_params(pair.refresh_token))
    assert response.status_code == 405


@memory_only
async def test_rfc6749_3_2_a_repeated_parameter_is_invalid_request(web: WebApp) -> None:
    pair = await web.login()
    body = f"grant_type=refresh_token&refresh_token={pair.refresh_token}&grant_type=refresh_token"
    response = await web.client().post(
        TOKEN, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert (
        "repeats 'grant_type'"
        in assert_oauth_error(response, 400, "invalid_request")["error_description"]
    )
    # Nothing was spent: the token still refreshes.
    assert (await grant(web.client(), **refresh_params(pair.refresh_token))).status_code == 200


@memory_only
async def test_rfc6749_3_2_parameters_without_a_value_are_treated_as_omitted(web: WebApp) -> None:
    pair = await web.login()
    client = web.client()
    missing = await grant(client, grant_type="refresh_token", refresh_token="")
    assert (
        "'refresh_token'"
        in assert_oauth_error(missing, 400, "invalid_request")["error_description"]
    )
    response = await grant(client, **refresh_params(pair.refresh_token, scope=""))
    assert response.status_code == 200, response.text


@memory_only
async def test_rfc6749_3_2_unrecognized_parameters_are_ignored(web: WebApp) -> None:
    pair = await web.login()
    params = refresh_params(pair.refresh_token, resource="x", audience="y", foo="bar")
    response = await grant(web.client(), **params)
    assert response.status_code == 200, response.text


# -- RFC 6749 §5.1: the successful answer ----------------------------------------------------


async def test_rfc6749_5_1_success_carries_the_token_fields_and_no_store(web: WebApp) -> None:
    pair = await web.login(role="user")
    response = await grant(web.client(), **refresh_params(pair.refresh_token))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int)
    assert body["expires_in"] > 0
    assert body["refresh_token"].startswith("rt1.")
    assert body["refresh_token"] != pair.refresh_token
    assert body["scope"] == "authenticated user"
    me = await web.client().get("/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["user_id"] == "alice"


# -- RFC 6749 §5.2: errors -------------------------------------------------------------------

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
BAD_REQUESTS = {
    "no grant_type": ({"Content-Type": "application/x-www-form-urlencoded"}, b"refresh_token=x"),
    "json body": ({"Content-Type": "application/json"}, b'{"grant_type": "refresh_token"}'),
    "no content type": ({}, b"grant_type=refresh_token&refresh_token=x"),
    "bad percent-encoding (not UTF-8)": (FORM, b"grant_type=refresh_token&refresh_token=%ff%fe"),
    "raw non-ASCII bytes": (FORM, "grant_type=refresh_token&refresh_token=é".encode()),
    "not a form": (FORM, b"grant_type&&&"),
    "too many fields": (FORM, "&".join(f"f{i}=1" for i in range(40)).encode()),
    "too large": (FORM, b"grant_type=refresh_token&refresh_token=" + b"a" * 9000),
    "a client_id with control characters": (
        FORM,
        b"grant_type=refresh_token&refresh_token=rt1.x&client_id=%0a",
    ),
}


@memory_only
@pytest.mark.parametrize("case", BAD_REQUESTS)
async def test_rfc6749_5_2_malformed_requests_are_invalid_request(web: WebApp, case: str) -> None:
    headers, body = BAD_REQUESTS[case]
    response = await web.client().post(TOKEN, content=body, headers=headers)
    assert_oauth_error(response, 400, "invalid_request")


@memory_only
@pytest.mark.parametrize("grant_type", ["password", "authorization_code", "client_credentials"])
async def test_rfc6749_5_2_other_grants_are_unsupported_grant_type(
    web: WebApp, grant_type: str
) -> None:
    response = await grant(web.client(), grant_type=grant_type, username="a", password="b")
    assert_oauth_error(response, 400, "unsupported_grant_type")


@memory_only
@pytest.mark.parametrize(
    "token",
    ["garbage", "rt1.AAAA.1.BBBB", "rt1.c2lkc2lkc2lkc2lkc2lkc2lkc2lk.1." + "A" * 43, "x" * 5000],
)
async def test_rfc6749_5_2_malformed_or_forged_refresh_tokens_are_invalid_grant(
    web: WebApp, token: str
) -> None:
    response = await grant(web.client(), **refresh_params(token))
    assert_oauth_error(response, 400, "invalid_grant")


async def test_rfc6749_5_2_ended_and_expired_sessions_are_invalid_grant(web: WebApp) -> None:
    client = web.client()
    ended = await web.login("alice")
    await web.issuer.logout(ended.session_id)
    assert_oauth_error(
        await grant(client, **refresh_params(ended.refresh_token)), 400, "invalid_grant"
    )
    idle = await web.login("bob")
    web.clock.advance(web.issuer.policy.idle_ttl + 1)
    assert_oauth_error(
        await grant(client, **refresh_params(idle.refresh_token)), 400, "invalid_grant"
    )


@memory_only
async def test_rfc6749_5_2_client_authentication_by_header_gets_401_with_its_scheme(
    web: WebApp,
) -> None:
    pair = await web.login()
    response = await web.client().post(
        TOKEN, data=refresh_params(pair.refresh_token), headers=basic("app", "secret")
    )
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic ")
    body_secret = await grant(web.client(), **refresh_params(pair.refresh_token, client_secret="s"))
    assert_oauth_error(body_secret, 400, "invalid_client")


async def test_rate_limit_is_shared_with_the_json_route_429_with_retry_after(
    make_web: MakeWeb,
) -> None:
    web = await make_web(policy=SessionPolicy(refresh_limit=2, refresh_window=60))
    pair = await web.login()
    client = web.client()
    first = await client.post("/auth/refresh", json={"refresh_token": pair.refresh_token})
    assert first.status_code == 200
    second = await grant(client, **refresh_params(first.json()["refresh_token"]))
    assert second.status_code == 200
    third = await grant(client, **refresh_params(second.json()["refresh_token"]))
    assert_oauth_error(third, 429, "temporarily_unavailable")
    assert int(third.headers["retry-after"]) >= 1
    json_route = await client.post(
        "/auth/refresh", json={"refresh_token": second.json()["refresh_token"]}
    )
    assert json_route.status_code == 429  # the same buckets


@pytest.mark.system
async def test_store_outage_is_503_with_retry_after_and_spends_nothing(faulty_web: WebApp) -> None:
    web, fault = faulty_web, faulty_web.fault
    assert fault is not None
    pair = await web.login()
    fault.cut()
    response = await grant(web.client(), **refresh_params(pair.refresh_token))
    assert_oauth_error(response, 503, "temporarily_unavailable")
    assert response.headers["retry-after"] == "1"
    fault.restore()
    assert (await grant(web.client(), **refresh_params(pair.refresh_token))).status_code == 200


# -- RFC 6749 §6: refreshing -----------------------------------------------------------------


async def test_rfc6749_6_reuse_through_token_endpoint_is_invalid_grant_and_revokes_session(
    web: WebApp,
) -> None:
    pair = await web.login()
    client = web.client()
    rotated = (await grant(client, **refresh_params(pair.refresh_token))).json()
    web.clock.advance(web.issuer.policy.grace + 1)
    reused = await grant(client, **refresh_params(pair.refresh_token))
    assert "already used" in assert_oauth_error(reused, 400, "invalid_grant")["error_description"]
    # The whole session is gone: its newest refresh token and its access token too.
    newest = await grant(client, **refresh_params(rotated["refresh_token"]))
    assert_oauth_error(newest, 400, "invalid_grant")
    me = await client.get("/me", headers=bearer(rotated["access_token"]))
    assert me.status_code == 401
    assert me.json()["error"] == "token_revoked"


@pytest.mark.parametrize(("rotate_at", "reuse_at"), [("json", "form"), ("form", "json")])
async def test_one_refresh_path_reuse_is_detected_through_either_endpoint(
    web: WebApp, rotate_at: str, reuse_at: str
) -> None:
    client = web.client()

    async def refresh(via: str, token: str) -> httpx.Response:
        if via == "json":
            return await client.post("/auth/refresh", json={"refresh_token": token})
        return await grant(client, **refresh_params(token))

    pair = await web.login()
    rotated = await refresh(rotate_at, pair.refresh_token)
    assert rotated.status_code == 200
    web.clock.advance(web.issuer.policy.grace + 1)
    reused = await refresh(reuse_at, pair.refresh_token)
    if reuse_at == "json":
        assert reused.status_code == 401
        assert reused.json()["error"] == "refresh_reused"
    else:
        assert_oauth_error(reused, 400, "invalid_grant")
    assert await web.issuer.session(pair.session_id) is None


async def test_rfc6749_6_a_racing_reuse_within_grace_gets_the_same_successor(web: WebApp) -> None:
    pair = await web.login()
    client = web.client()
    first = (await grant(client, **refresh_params(pair.refresh_token))).json()
    second = (await client.post("/auth/refresh", json={"refresh_token": pair.refresh_token})).json()
    assert second["refresh_token"] == first["refresh_token"]


async def test_rfc6749_6_a_scope_beyond_the_grant_is_invalid_scope_and_spends_nothing(
    web: WebApp,
) -> None:
    pair = await web.login(role="user")
    client = web.client()
    refused = await grant(client, **refresh_params(pair.refresh_token, scope="user admin"))
    assert_oauth_error(refused, 400, "invalid_scope")
    malformed = await grant(client, **refresh_params(pair.refresh_token, scope='a  "b'))
    assert_oauth_error(malformed, 400, "invalid_scope")
    ok = await grant(client, **refresh_params(pair.refresh_token))
    assert ok.status_code == 200, ok.text  # the refused requests did not rotate


@memory_only
@pytest.mark.parametrize("scope", ["user", "authenticated", "user authenticated"])
async def test_rfc6749_6_a_scope_within_the_grant_gets_the_granted_scope(
    web: WebApp, scope: str
) -> None:
    pair = await web.login(role="user")
    response = await grant(web.client(), **refresh_params(pair.refresh_token, scope=scope))
    assert response.status_code == 200, response.text
    # §6: the new refresh token's scope is identical to the old one's (the role's).
    assert response.json()["scope"] == "authenticated user"
    again = await grant(web.client(), **refresh_params(response.json()["refresh_token"]))
    assert again.json()["scope"] == "authenticated user"


@memory_only
async def test_a_reused_token_with_a_bad_scope_is_still_theft(web: WebApp) -> None:
    """Reuse detection wins over every other answer (invariant 8), invalid_scope included."""
    pair = await web.login(role="user")
    client = web.client()
    await grant(client, **refresh_params(pair.refresh_token))
    web.clock.advance(web.issuer.policy.grace + 1)
    reused = await grant(client, **refresh_params(pair.refresh_token, scope="admin"))
    assert_oauth_error(reused, 400, "invalid_grant")
    assert await web.issuer.session(pair.session_id) is None


@memory_only
async def test_the_token_endpoint_never_reads_the_refresh_cookie(web: WebApp) -> None:
    pair = await web.login()
    client = web.client()
    client.cookies.set(web.config.refresh_cookie_name, pair.refresh_token)
    response = await client.post(TOKEN, data={"grant_type": "refresh_token"})
    assert_oauth_error(response, 400, "invalid_request")
    assert (await web.issuer.session(pair.session_id)) is not None


# -- RFC 7009 §2: revocation -----------------------------------------------------------------


async def test_rfc7009_2_1_revoking_a_refresh_token_ends_its_session(web: WebApp) -> None:
    pair = await web.login()
    client = web.client()
    response = await client.post(
        REVOKE, data={"token": pair.refresh_token, "token_type_hint": "refresh_token"}
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert_oauth_error(
        await grant(client, **refresh_params(pair.refresh_token)), 400, "invalid_grant"
    )
    me = await client.get("/me", headers=bearer(pair.access_token))
    assert me.status_code == 401
    assert me.json()["error"] == "token_revoked"


async def test_rfc7009_2_1_revoking_an_access_token_denies_it_in_every_process(
    web: WebApp,
) -> None:
    pair = await web.login()
    other_process = RevocationMirror(web.store, clock=web.clock)
    await other_process.load()
    client = web.client()
    response = await client.post(
        REVOKE, data={"token": pair.access_token, "token_type_hint": "access_token"}
    )
    assert response.status_code == 200
    me = await client.get("/me", headers=bearer(pair.access_token))
    assert me.status_code == 401
    assert me.json()["error"] == "token_revoked"
    await other_process.sync()
    with pytest.raises(TokenRevoked):
        other_process.check(web.kit.verifier.verify(pair.access_token))
    # Only that token: the session goes on.
    assert (await grant(client, **refresh_params(pair.refresh_token))).status_code == 200


@memory_only
@pytest.mark.parametrize("hint", ["access_token", "refresh_token", "id_token"])
async def test_rfc7009_2_1_a_wrong_or_unknown_hint_does_not_stop_the_search(
    web: WebApp, hint: str
) -> None:
    client = web.client()
    session = await web.login("alice")
    await client.post(REVOKE, data={"token": session.refresh_token, "token_type_hint": hint})
    assert await web.issuer.session(session.session_id) is None
    access = await web.login("bob")
    await client.post(REVOKE, data={"token": access.access_token, "token_type_hint": hint})
    me = await client.get("/me", headers=bearer(access.access_token))
    assert me.status_code == 401
    assert me.json()["error"] == "token_revoked"


@memory_only
async def test_rfc7009_2_2_invalid_unknown_expired_and_revoked_tokens_get_200(
    web: WebApp,
) -> None:
    client = web.client()
    expired = await web.login("carol")
    revoked = await web.login("dave")
    await client.post(REVOKE, data={"token": revoked.access_token})
    web.clock.advance(web.kit.settings.access_ttl + web.kit.settings.leeway + 1)
    forged = "rt1.c2lkc2lkc2lkc2lkc2lkc2lkc2lk.1." + "A" * 43
    for token in ["garbage", forged, "a.b.c", expired.access_token, revoked.access_token, "é"]:
        response = await client.post(REVOKE, data={"token": token})
        assert response.status_code == 200, (token, response.text)


@memory_only
async def test_rfc7009_2_1_the_token_parameter_is_required(web: WebApp) -> None:
    response = await web.client().post(REVOKE, data={"token_type_hint": "access_token"})
    assert_oauth_error(response, 400, "invalid_request")
    get = await web.client().get(REVOKE, params={"token": "x"})
    assert get.status_code == 405


@pytest.mark.system
async def test_rfc7009_2_2_1_store_unavailable_is_503_and_the_token_lives(
    faulty_web: WebApp,
) -> None:
    web, fault = faulty_web, faulty_web.fault
    assert fault is not None
    pair = await web.login()
    fault.cut()
    response = await web.client().post(REVOKE, data={"token": pair.refresh_token})
    assert_oauth_error(response, 503, "temporarily_unavailable")
    assert response.headers["retry-after"] == "1"
    fault.restore()
    assert await web.issuer.session(pair.session_id) is not None


# -- RFC 7662 §2: introspection --------------------------------------------------------------


async def test_rfc7662_2_2_an_active_token_answers_active_and_its_claims(web: WebApp) -> None:
    pair = await web.login("alice", role="user")
    response = await web.client().post(
        INTROSPECT, data={"token": pair.access_token}, headers=INTROSPECTOR
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["active"] is True
    assert body["sub"] == "alice"
    assert body["sid"] == pair.session_id
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "authenticated user"
    assert body["exp"] == pair.claims.exp
    assert body["jti"] == pair.claims.jti
    assert body["iss"] == web.kit.settings.issuer


async def test_rfc7662_2_2_inactive_tokens_answer_only_active_false(web: WebApp) -> None:
    client = web.client()
    revoked = await web.login("alice")
    ended = await web.login("bob")
    expired = await web.login("carol")
    await client.post(REVOKE, data={"token": revoked.access_token})
    await web.issuer.logout(ended.session_id)
    tokens = [revoked.access_token, ended.access_token, "garbage", expired.refresh_token]
    for token in tokens:
        response = await client.post(INTROSPECT, data={"token": token}, headers=INTROSPECTOR)
        assert (response.status_code, response.json()) == (200, {"active": False}), token
    web.clock.advance(web.kit.settings.access_ttl + web.kit.settings.leeway + 1)
    response = await client.post(
        INTROSPECT, data={"token": expired.access_token}, headers=INTROSPECTOR
    )
    assert response.json() == {"active": False}


@memory_only
async def test_rfc7662_2_1_the_endpoint_requires_authorization(web: WebApp) -> None:
    pair = await web.login("bob", role="user")
    admin = await web.login("alice", role="admin")
    client = web.client()
    data = {"token": pair.access_token}
    anonymous = await client.post(INTROSPECT, data=data)
    assert_oauth_error(anonymous, 401, "invalid_client")
    assert "Basic" in anonymous.headers["www-authenticate"]
    assert "Bearer" in anonymous.headers["www-authenticate"]
    wrong = await client.post(
        INTROSPECT, data=data, headers=basic(INTROSPECTION_CLIENT[0], "x" * 26)
    )
    assert_oauth_error(wrong, 401, "invalid_client")
    assert wrong.headers["www-authenticate"].startswith("Basic ")
    unknown = await client.post(
        INTROSPECT, data=data, headers=basic("nobody", INTROSPECTION_CLIENT[1])
    )
    assert_oauth_error(unknown, 401, "invalid_client")
    garbled = await client.post(INTROSPECT, data=data, headers={"Authorization": "Basic %%%"})
    assert_oauth_error(garbled, 401, "invalid_client")
    user_role = await client.post(INTROSPECT, data=data, headers=bearer(pair.access_token))
    assert_oauth_error(user_role, 403, "insufficient_scope")
    by_role = await client.post(INTROSPECT, data=data, headers=bearer(admin.access_token))
    assert by_role.status_code == 200
    assert by_role.json()["active"] is True


@memory_only
async def test_rfc7662_2_1_the_bearer_must_come_in_the_header_not_a_cookie(
    web: WebApp,
) -> None:
    pair = await web.login("bob")
    client = await web.cookie_client("alice", role="admin")  # an admin's cookies
    response = await client.post(
        INTROSPECT, data={"token": pair.access_token}, headers=web.csrf(client)
    )
    assert_oauth_error(response, 401, "invalid_client")


@memory_only
async def test_rfc7662_2_1_token_is_required_and_the_hint_does_not_stop_the_search(
    web: WebApp,
) -> None:
    pair = await web.login()
    client = web.client()
    missing = await client.post(INTROSPECT, data={"token_type_hint": "x"}, headers=INTROSPECTOR)
    assert_oauth_error(missing, 400, "invalid_request")
    hinted = await client.post(
        INTROSPECT,
        data={"token": pair.access_token, "token_type_hint": "refresh_token"},
        headers=INTROSPECTOR,
    )
    assert hinted.json()["active"] is True


async def test_introspection_is_rate_limited_per_caller(make_web: MakeWeb) -> None:
    options = OAuthConfig(introspection_clients=dict([INTROSPECTION_CLIENT]), introspection_limit=2)
    web = await make_web(oauth=options)
    pair = await web.login()
    client = web.client()
    for _ in range(2):
        response = await client.post(
            INTROSPECT, data={"token": pair.access_token}, headers=INTROSPECTOR
        )
        assert response.status_code == 200
    limited = await client.post(INTROSPECT, data={"token": pair.access_token}, headers=INTROSPECTOR)
    assert_oauth_error(limited, 429, "temporarily_unavailable")
    assert int(limited.headers["retry-after"]) >= 1


@memory_only
async def test_introspection_with_stale_revocation_state_is_503_not_a_guess(web: WebApp) -> None:
    pair = await web.login()
    web.make_stale()
    response = await web.client().post(
        INTROSPECT, data={"token": pair.access_token}, headers=INTROSPECTOR
    )
    assert_oauth_error(response, 503, "temporarily_unavailable")


# -- RFC 8414: metadata ----------------------------------------------------------------------


def _mounted_oauth_paths(web: WebApp) -> set[str]:
    return {f"{web.config.prefix}{route.path}" for route in web.oauth.routes()}


@pytest.mark.parametrize(
    "options",
    [
        None,
        OAuthConfig(),
        OAuthConfig(introspection_role="admin"),
        OAuthConfig(introspection_clients={"rs": "s" * 16}),
    ],
)
@memory_only
async def test_rfc8414_metadata_lists_exactly_the_mounted_endpoints(
    make_web: MakeWeb, options: OAuthConfig | None
) -> None:
    web = await make_web(oauth=options)
    client = web.client()
    response = await client.get(METADATA)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    listed = {urlsplit(url).path for name, url in document.items() if name.endswith("_endpoint")}
    assert listed == _mounted_oauth_paths(web)
    # Every listed endpoint answers POST (not 404/405); every other OAuth path is 404.
    for path in ["/auth/token", "/auth/revoke", "/auth/introspect", "/auth/authorize"]:
        status = (await client.post(path, data={})).status_code
        assert (status not in (404, 405)) == (path in listed), (path, status)
    jwks = await client.get(urlsplit(document["jwks_uri"]).path)
    assert jwks.status_code == 200
    assert "keys" in jwks.json()
    assert ("introspection_endpoint_auth_methods_supported" in document) == (
        "/auth/introspect" in listed
    )


@memory_only
async def test_rfc8414_2_required_members_and_the_truth_about_grants(web: WebApp) -> None:
    document = (await web.client().get(METADATA)).json()
    issuer = web.kit.settings.issuer
    assert document["issuer"] == issuer  # §3.3: identical to the issuer identifier
    assert urlsplit(issuer).query == ""
    assert urlsplit(issuer).fragment == ""
    assert document["response_types_supported"] == []  # no authorization endpoint
    assert "authorization_endpoint" not in document
    assert document["grant_types_supported"] == ["refresh_token"]
    assert document["token_endpoint_auth_methods_supported"] == ["none"]
    assert document["revocation_endpoint_auth_methods_supported"] == ["none"]
    assert document["introspection_endpoint_auth_methods_supported"] == ["client_secret_basic"]
    for name in ("token_endpoint", "revocation_endpoint", "introspection_endpoint", "jwks_uri"):
        assert document[name].startswith(f"{issuer}/")


@memory_only
async def test_rfc8414_3_the_well_known_path_goes_before_the_issuers_path(web: WebApp) -> None:
    settings = web.kit.settings
    tenant = type(settings)(issuer="https://auth.example.test/tenant-1", audience=settings.audience)
    issuer = type(web.issuer)(web.kit.keyring, tenant, web.store)
    endpoints = OAuthEndpoints(issuer, web.verifier, config=web.config)
    assert endpoints.metadata_path() == "/.well-known/oauth-authorization-server/tenant-1"
    assert endpoints.metadata()["token_endpoint"] == "https://auth.example.test/tenant-1/auth/token"
    with pytest.raises(ValueError, match="no query or fragment"):
        OAuthEndpoints(issuer, web.verifier, options=OAuthConfig(base_url="https://a.test/?x=1"))


def test_oauth_config_refuses_weak_introspection_settings() -> None:
    with pytest.raises(ValueError, match="secret"):
        OAuthConfig(introspection_clients={"rs": "short"})
    with pytest.raises(ValueError, match="secret"):
        OAuthConfig(introspection_clients={"a:b": "s" * 16})
    with pytest.raises(ValueError, match="positive"):
        OAuthConfig(introspection_limit=0)


# -- bad input of any kind: a §5.2 answer, never a 500 --------------------------------------

OAUTH_ERRORS = {
    "invalid_request",
    "invalid_grant",
    "invalid_scope",
    "invalid_client",
    "unsupported_grant_type",
    "insufficient_scope",
    "temporarily_unavailable",
}
_NAMES = ["grant_type", "refresh_token", "client_id", "scope", "token", "token_type_hint", "x"]
_PIECES = ["refresh_token", "rt1.", "%", "%2", "%ff", "%C3%A9", "+", "&", "=", " ", "é", '"', ""]


def _random_form(rng: random.Random, path: str, tokens: list[str]) -> bytes:
    """Mostly a well-formed request for ``path`` with one thing wrong, sometimes junk."""
    if rng.random() < 0.7:
        token = rng.choice(tokens)
        fields = {"grant_type": "refresh_token", "refresh_token": token} if path == TOKEN else {}
        if path != TOKEN:
            fields["token"] = token
        for name in rng.sample(_NAMES, rng.randint(0, 2)):
            fields.setdefault(name, rng.choice([*_PIECES, "user", "admin", "access_token"]))
        if fields and rng.random() < 0.5:
            name = rng.choice(list(fields))
            fields[name] += "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 2)))
        pairs = [f"{name}={value}" for name, value in fields.items()]
        if pairs and rng.random() < 0.1:
            pairs.append(rng.choice(pairs))  # a repeated parameter
        return "&".join(pairs).encode("utf-8")
    junk = "".join(rng.choice(_PIECES + _NAMES) for _ in range(rng.randint(0, 12)))
    data = junk.encode("utf-8")
    if rng.random() < 0.2:
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
    return data


@memory_only
async def test_random_bodies_get_documented_answers_never_a_500(web: WebApp) -> None:
    rng = random.Random(14)  # fixed seed: the same requests every run
    pairs = [await web.login(f"user-{i}", role=rng.choice(["user", "admin"])) for i in range(6)]
    tokens = [t for p in pairs for t in (p.access_token, p.refresh_token)] + ["garbage"]
    client = web.client()
    content_types = [FORM["Content-Type"], f"{FORM['Content-Type']}; charset=UTF-8", "text/plain"]
    auths = [None, None, INTROSPECTOR, bearer(pairs[0].access_token), {"Authorization": "Basic !"}]
    seen: set[tuple[str, int, str]] = set()
    for _ in range(800):
        path = rng.choice([TOKEN, REVOKE, INTROSPECT])
        content_type = rng.choice(content_types) if rng.random() < 0.1 else content_types[0]
        headers = {"Content-Type": content_type}
        auth = rng.choice(auths)
        if auth is not None:
            headers.update(auth)
        body = _random_form(rng, path, tokens)
        response = await client.post(path, content=body, headers=headers)
        status = response.status_code
        assert status in (200, 400, 401, 403, 429, 503), (path, body, response.text)
        if status == 200:
            seen.add((path, status, ""))
            if path == TOKEN:  # keep some live refresh tokens in play
                tokens.append(response.json()["refresh_token"])
            continue
        answer = response.json()
        seen.add((path, status, answer["error"]))
        if answer["error"] in ("token_revoked", "token_expired", "token_invalid"):
            continue  # the middleware judged the Bearer header (documented in http.md)
        assert answer["error"] in OAUTH_ERRORS, (path, body, answer)
        assert ERROR_TEXT.match(answer["error_description"]), answer
    # The run reached every kind of answer, not only the first refusal.
    for expected in [
        (TOKEN, 200, ""),
        (TOKEN, 400, "invalid_grant"),
        (TOKEN, 400, "invalid_request"),
        (REVOKE, 200, ""),
        (INTROSPECT, 200, ""),
        (INTROSPECT, 401, "invalid_client"),
    ]:
        assert expected in seen, (expected, sorted(seen))
