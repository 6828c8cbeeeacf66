"""Sessions bound to a DPoP key at login (RFC 9449): tokens, refreshes and the token endpoint.

Run on every store (memory, one Redis, a cluster) through the test app, with
proofs built by hand (tests/support/dpop.py) and, at the end, by ``JWTSessAuth``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from jwtsess import DPoPKey
from jwtsess.client import JWTSessAuth
from tests.support.dpop import ProofMaker
from tests.support.web_app import BASE_URL, MakeWeb, WebApp

LOGIN = f"{BASE_URL}/auth/login"
REFRESH = f"{BASE_URL}/auth/refresh"
TOKEN = f"{BASE_URL}/auth/token"
ME = f"{BASE_URL}/me"


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    value: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return value


async def bound_login(web: WebApp, client: httpx.AsyncClient, key: ProofMaker) -> dict[str, Any]:
    proof = key.proof("POST", LOGIN, iat=web.clock())
    answer = await client.post("/auth/login", json={"user_id": "alice"}, headers={"DPoP": proof})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def me(web: WebApp, client: httpx.AsyncClient, key: ProofMaker, token: str) -> httpx.Response:
    proof = key.proof("GET", ME, iat=web.clock(), access_token=token)
    return await client.get("/me", headers={"Authorization": f"DPoP {token}", "DPoP": proof})


async def refresh(
    web: WebApp, client: httpx.AsyncClient, token: str, key: ProofMaker | None
) -> httpx.Response:
    headers = {"DPoP": key.proof("POST", REFRESH, iat=web.clock())} if key else {}
    return await client.post("/auth/refresh", json={"refresh_token": token}, headers=headers)


async def test_login_with_a_proof_binds_the_session(make_web: MakeWeb) -> None:
    web = await make_web("ES256")
    client, key = web.client(), ProofMaker()
    pair = await bound_login(web, client, key)
    assert pair["token_type"] == "DPoP"
    assert claims_of(pair["access_token"])["cnf"] == {"jkt": key.jkt}
    answer = await me(web, client, key, pair["access_token"])
    assert answer.status_code == 200, answer.text


async def test_login_without_a_proof_stays_a_bearer_session(make_web: MakeWeb) -> None:
    web = await make_web()
    answer = await web.client().post("/auth/login", json={"user_id": "alice"})
    assert answer.json()["token_type"] == "Bearer"
    assert "cnf" not in claims_of(answer.json()["access_token"])


async def test_a_bound_session_refreshes_only_with_its_key(make_web: MakeWeb) -> None:
    web = await make_web("ES256")
    client, key, thief = web.client(), ProofMaker(), ProofMaker()
    pair = await bound_login(web, client, key)
    for attempt in (None, thief):  # no proof, then a valid proof from another key
        refused = await refresh(web, client, pair["refresh_token"], attempt)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"] == "invalid_dpop_proof"
    fresh = await refresh(web, client, pair["refresh_token"], key)  # nothing changed meanwhile
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["token_type"] == "DPoP"
    assert claims_of(fresh.json()["access_token"])["cnf"] == {"jkt": key.jkt}
    assert (await me(web, client, key, fresh.json()["access_token"])).status_code == 200


async def test_a_refresh_proof_is_used_once(make_web: MakeWeb) -> None:
    web = await make_web("ES256")
    client, key = web.client(), ProofMaker()
    pair = await bound_login(web, client, key)
    proof = {"DPoP": key.proof("POST", REFRESH, iat=web.clock())}
    body = {"refresh_token": pair["refresh_token"]}
    assert (await client.post("/auth/refresh", json=body, headers=proof)).status_code == 200
    again = await client.post("/auth/refresh", json=body, headers=proof)
    assert again.status_code == 401
    assert again.json()["error"] == "invalid_dpop_proof"


async def test_the_grace_window_answers_only_the_bound_key(make_web: MakeWeb) -> None:
    web = await make_web("ES256")
    client, key, thief = web.client(), ProofMaker(), ProofMaker()
    pair = await bound_login(web, client, key)
    first = await refresh(web, client, pair["refresh_token"], key)
    racing = await refresh(web, client, pair["refresh_token"], key)  # a racing tab: same key
    assert racing.status_code == 200, racing.text
    assert racing.json()["refresh_token"] == first.json()["refresh_token"]
    # The same stale token with another key inside the window: theft, the session ends.
    stolen = await refresh(web, client, pair["refresh_token"], thief)
    assert stolen.json()["error"] == "refresh_reused"
    after = await refresh(web, client, first.json()["refresh_token"], key)
    assert after.json()["error"] == "session_not_found"


async def test_the_token_endpoint_needs_the_bound_key(make_web: MakeWeb) -> None:
    web = await make_web("ES256")
    client, key, thief = web.client(), ProofMaker(), ProofMaker()
    pair = await bound_login(web, client, key)
    form = {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
    refused = await client.post(
        "/auth/token", data=form, headers={"DPoP": thief.proof("POST", TOKEN, iat=web.clock())}
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_dpop_proof"
    answer = await client.post(
        "/auth/token", data=form, headers={"DPoP": key.proof("POST", TOKEN, iat=web.clock())}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["token_type"] == "DPoP"
    assert claims_of(answer.json()["access_token"])["cnf"] == {"jkt": key.jkt}


async def test_metadata_lists_the_proof_algorithms(make_web: MakeWeb) -> None:
    web = await make_web()
    answer = await web.client().get("/.well-known/oauth-authorization-server")
    assert answer.json()["dpop_signing_alg_values_supported"] == [
        "ES256",
        "EdDSA",
        "RS256",
        "PS256",
    ]


async def test_jwtsessauth_keeps_a_bound_session_alive(make_web: MakeWeb) -> None:
    web = await make_web("EdDSA")
    key = DPoPKey.generate("ES256", clock=web.clock)
    async with web.client() as http:
        login = await http.post(
            "/auth/login", json={"user_id": "alice"}, headers={"DPoP": key.proof("POST", LOGIN)}
        )
        auth = JWTSessAuth.from_token_response(login.json(), clock=web.clock, dpop_key=key)
        first = auth.tokens
        assert (await http.get("/me", auth=auth)).status_code == 200
        web.clock.advance(web.kit.settings.access_ttl + 60)  # expired: refresh, with a proof
        answer = await http.get("/me", auth=auth)
        assert answer.status_code == 200, answer.text
        assert auth.tokens is not None
        assert first is not None
        assert auth.tokens.access_token != first.access_token
        assert claims_of(auth.tokens.access_token)["cnf"] == {"jkt": key.jkt}


async def test_adpop_login_makes_the_key_and_follows_a_nonce(make_web: MakeWeb) -> None:
    from jwtsess import DPoPSettings
    from jwtsess.client import adpop_login

    web = await make_web("ES256", dpop=DPoPSettings(nonce_secret=b"n" * 32))
    async with web.client() as http:
        auth = await adpop_login(
            http, "/auth/login", json={"user_id": "alice"}, alg="EdDSA", clock=web.clock
        )
        assert auth.dpop_key is not None
        assert auth.tokens is not None
        assert auth.tokens.token_type == "DPoP"
        assert claims_of(auth.tokens.access_token)["cnf"] == {"jkt": auth.dpop_key.jkt}
        assert (await http.get("/me", auth=auth)).status_code == 200
