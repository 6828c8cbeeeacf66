"""jwtsess.client with a DPoP key: proofs on every request and refresh, nonce challenges.

The flow is stepped by hand; every proof it produces is checked by the server
side (``DPoPVerifier``) for the request it went with.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import httpx
import pytest

from jwtsess import DPoPKey, DPoPSettings, DPoPVerifier
from jwtsess.client import JWTSessAuth
from jwtsess.dpop_checks import normalize_htu
from tests.support.kit import MutableClock

BASE = "http://api.test"
NONCE_SECRET = b"n" * 32


def dpop_pair(gen: int) -> dict[str, Any]:
    return {
        "access_token": f"access-{gen}",
        "refresh_token": f"refresh-{gen}",
        "token_type": "DPoP",
        "expires_in": 60,
    }


def step(
    flow: Generator[httpx.Request, httpx.Response, None], response: httpx.Response
) -> httpx.Request | None:
    try:
        return flow.send(response)
    except StopIteration:
        return None


def check_proof(
    verifier: DPoPVerifier, request: httpx.Request | None, key: DPoPKey, token: str | None
) -> None:
    """The request carries a proof the server accepts for it (and for ``token``)."""
    assert request is not None
    checked = verifier.verify(
        request.headers["dpop"],
        method=request.method,
        htu=normalize_htu(str(request.url)),
        access_token=token,
        jkt=key.jkt,
    )
    assert checked.jkt == key.jkt


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


def test_a_dpop_pair_needs_its_key(clock: MutableClock) -> None:
    with pytest.raises(ValueError, match="dpop_key"):
        JWTSessAuth.from_token_response(dpop_pair(0), clock=clock)


def test_requests_carry_the_dpop_scheme_and_a_fresh_proof(clock: MutableClock) -> None:
    key = DPoPKey.generate("EdDSA", clock=clock)
    verifier = DPoPVerifier(clock=clock)
    auth = JWTSessAuth.from_token_response(dpop_pair(0), clock=clock, dpop_key=key)
    first = next(auth.sync_auth_flow(httpx.Request("GET", f"{BASE}/me?page=2")))
    second = next(auth.sync_auth_flow(httpx.Request("GET", f"{BASE}/me?page=2")))
    assert first.headers["authorization"] == "DPoP access-0"
    check_proof(verifier, first, key, "access-0")
    assert first.headers["dpop"] != second.headers["dpop"]  # a new jti each time


def test_a_nonce_challenge_is_answered_once_with_the_nonce(clock: MutableClock) -> None:
    key = DPoPKey.generate(clock=clock)
    server = DPoPVerifier(DPoPSettings(nonce_secret=NONCE_SECRET), clock=clock)
    auth = JWTSessAuth.from_token_response(dpop_pair(0), clock=clock, dpop_key=key)
    flow = auth.sync_auth_flow(httpx.Request("POST", f"{BASE}/orders", json={"n": 1}))
    first_proof = next(flow).headers["dpop"]
    nonce = server.current_nonce()
    assert nonce is not None
    challenge = httpx.Response(
        401,
        headers={
            "WWW-Authenticate": 'DPoP algs="ES256", error="use_dpop_nonce"',
            "DPoP-Nonce": nonce,
        },
        json={"error": "use_dpop_nonce"},
    )
    retried = step(flow, challenge)
    check_proof(server, retried, key, "access-0")
    assert retried is not None
    assert json.loads(retried.content) == {"n": 1}
    assert step(flow, httpx.Response(200)) is None
    # The nonce is kept for the next requests.
    check_proof(server, next(auth.sync_auth_flow(httpx.Request("GET", BASE))), key, "access-0")
    assert first_proof != retried.headers["dpop"]


def test_refresh_carries_a_proof_and_follows_a_nonce_challenge(clock: MutableClock) -> None:
    key = DPoPKey.generate(clock=clock)
    server = DPoPVerifier(DPoPSettings(nonce_secret=NONCE_SECRET), clock=clock)
    auth = JWTSessAuth.from_token_response(dpop_pair(0), clock=clock, dpop_key=key)
    flow = auth.sync_auth_flow(httpx.Request("GET", f"{BASE}/me"))
    next(flow)
    refresh = step(flow, httpx.Response(401, json={"error": "token_expired"}))
    assert refresh is not None
    assert refresh.url.path == "/auth/refresh"
    assert "authorization" not in refresh.headers
    nonce = server.current_nonce()
    challenged = httpx.Response(
        401, headers={"DPoP-Nonce": str(nonce)}, json={"error": "use_dpop_nonce"}
    )
    again = step(flow, challenged)
    assert again is not None
    assert again.url.path == "/auth/refresh"
    check_proof(server, again, key, None)
    retried = step(flow, httpx.Response(200, json=dpop_pair(1)))
    assert retried is not None
    assert retried.headers["authorization"] == "DPoP access-1"
    check_proof(server, retried, key, "access-1")


async def test_async_flow_signs_and_follows_the_nonce(clock: MutableClock) -> None:
    key = DPoPKey.generate(clock=clock)
    server = DPoPVerifier(DPoPSettings(nonce_secret=NONCE_SECRET), clock=clock)
    auth = JWTSessAuth.from_token_response(dpop_pair(0), clock=clock, dpop_key=key)
    flow = auth.async_auth_flow(httpx.Request("GET", f"{BASE}/me"))
    await flow.__anext__()
    challenge = httpx.Response(
        401, headers={"DPoP-Nonce": str(server.current_nonce())}, json={"error": "use_dpop_nonce"}
    )
    retried = await flow.asend(challenge)
    check_proof(server, retried, key, "access-0")


def test_a_bearer_pair_with_a_key_stays_bearer(clock: MutableClock) -> None:
    key = DPoPKey.generate(clock=clock)
    body = {**dpop_pair(0), "token_type": "Bearer"}
    auth = JWTSessAuth.from_token_response(body, clock=clock, dpop_key=key)
    sent = next(auth.sync_auth_flow(httpx.Request("GET", BASE)))
    assert sent.headers["authorization"] == "Bearer access-0"
    assert "dpop" not in sent.headers
