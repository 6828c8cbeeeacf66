"""DPoP attacks (RFC 9449): each forged by hand, each refused with its stable code.

Proofs are built with ``cryptography`` alone (tests/support/dpop.py), so each
attack is exactly what the test's name says. The positive controls at the top
prove a well-made proof gets through; without them a broken helper would make
every attack pass for the wrong reason. Everything runs in-process against the
test app (tests/web_app.py) on a frozen clock.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from jwtsess.dpop import DPoPSettings
from jwtsess.store.memory import MemoryStore
from tests.support.dpop import ProofMaker, b64
from tests.support.kit import T0, TokenKit
from tests.support.web_app import WebApp, start_web, websocket_exchange

URL = "https://testserver/me"


@pytest.fixture
async def app(make_kit: Callable[..., TokenKit]) -> WebApp:
    return await start_web(make_kit("ES256"), MemoryStore())


@pytest.fixture
def client(app: WebApp) -> httpx.AsyncClient:
    return app.client()


def bound_token(app: WebApp, maker: ProofMaker) -> str:
    return app.kit.signer.issue("alice", "user", "sid-alice", jkt=maker.jkt)[0]


def dpop_headers(token: str, proof: str) -> dict[str, str]:
    return {"Authorization": f"DPoP {token}", "DPoP": proof}


def assert_refused(response: httpx.Response, code: str = "invalid_dpop_proof") -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == code
    www = response.headers["www-authenticate"]
    assert www.startswith('DPoP realm="jwtsess", algs="ES256 EdDSA RS256 PS256"'), www
    wire = {"invalid_dpop_proof": "invalid_dpop_proof", "use_dpop_nonce": "use_dpop_nonce"}
    assert f'error="{wire.get(code, "invalid_token")}"' in www


# -- positive controls ------------------------------------------------------------------------


@pytest.mark.parametrize("curve", ["ES256", "EdDSA"])
async def test_control_a_well_made_proof_is_accepted(app: WebApp, curve: str) -> None:
    private = (
        ec.generate_private_key(ec.SECP256R1())
        if curve == "ES256"
        else ed25519.Ed25519PrivateKey.generate()
    )
    maker = ProofMaker(private)
    token = bound_token(app, maker)
    response = await app.client().get(
        "/me", headers=dpop_headers(token, maker.proof("GET", URL, iat=T0, access_token=token))
    )
    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == "alice"


async def test_control_htu_is_compared_after_normalisation(
    app: WebApp, client: httpx.AsyncClient
) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    proof = maker.proof("GET", "HTTPS://TestServer:443/me?x=1#f", iat=T0, access_token=token)
    response = await client.get("/me?y=2", headers=dpop_headers(token, proof))
    assert response.status_code == 200, response.text


async def test_control_websocket_with_a_proof_is_accepted(app: WebApp) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    proof = maker.proof("GET", "wss://testserver/ws", iat=T0, access_token=token)
    result = await websocket_exchange(
        app.app, "/ws", headers=[("authorization", f"DPoP {token}"), ("dpop", proof)]
    )
    assert result.accepted
    assert json.loads(result.texts[0])["user_id"] == "alice"


# -- the attacks ---------------------------------------------------------------------------


async def test_replayed_proof_is_refused(app: WebApp, client: httpx.AsyncClient) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    proof = maker.proof("GET", URL, iat=T0, access_token=token)
    assert (await client.get("/me", headers=dpop_headers(token, proof))).status_code == 200
    assert_refused(await client.get("/me", headers=dpop_headers(token, proof)))


async def test_proof_for_another_method_is_refused(app: WebApp, client: httpx.AsyncClient) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    proof = maker.proof("POST", URL, iat=T0, access_token=token)
    assert_refused(await client.get("/me", headers=dpop_headers(token, proof)))


async def test_proof_for_another_url_is_refused(app: WebApp, client: httpx.AsyncClient) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    proof = maker.proof("GET", "https://testserver/admin", iat=T0, access_token=token)
    assert_refused(await client.get("/me", headers=dpop_headers(token, proof)))


async def test_proof_for_another_host_is_refused(app: WebApp, client: httpx.AsyncClient) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    proof = maker.proof("GET", "https://evil.example/me", iat=T0, access_token=token)
    assert_refused(await client.get("/me", headers=dpop_headers(token, proof)))


async def test_stale_iat_is_refused(app: WebApp, client: httpx.AsyncClient) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    settings = app.dpop.settings
    proof = maker.proof(
        "GET", URL, iat=T0 - settings.max_age - settings.leeway - 1, access_token=token
    )
    assert_refused(await client.get("/me", headers=dpop_headers(token, proof)))


async def test_future_iat_is_refused(app: WebApp, client: httpx.AsyncClient) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    proof = maker.proof("GET", URL, iat=T0 + app.dpop.settings.leeway + 1, access_token=token)
    assert_refused(await client.get("/me", headers=dpop_headers(token, proof)))


async def test_proof_signed_by_another_key_than_its_jwk_is_refused(
    app: WebApp, client: httpx.AsyncClient
) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    other = ec.generate_private_key(ec.SECP256R1())
    proof = maker.proof("GET", URL, iat=T0, access_token=token, signer=other)
    assert_refused(await client.get("/me", headers=dpop_headers(token, proof)))


async def test_token_bound_to_key_a_with_a_proof_from_key_b_is_refused(
    app: WebApp, client: httpx.AsyncClient
) -> None:
    key_a, key_b = ProofMaker(), ProofMaker()
    token = bound_token(app, key_a)
    proof = key_b.proof("GET", URL, iat=T0, access_token=token)  # valid, but key B's
    assert_refused(await client.get("/me", headers=dpop_headers(token, proof)))


async def test_missing_ath_is_refused(app: WebApp, client: httpx.AsyncClient) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    proof = maker.proof("GET", URL, iat=T0)
    assert_refused(await client.get("/me", headers=dpop_headers(token, proof)))


async def test_wrong_ath_is_refused(app: WebApp, client: httpx.AsyncClient) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    other_token = bound_token(app, maker)  # same key, another token
    proof = maker.proof("GET", URL, iat=T0, access_token=other_token)
    assert_refused(await client.get("/me", headers=dpop_headers(token, proof)))


async def test_alg_none_proof_is_refused(app: WebApp, client: httpx.AsyncClient) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    proof = maker.proof("GET", URL, iat=T0, access_token=token, header={"alg": "none"})
    unsigned = proof.rsplit(".", 1)[0] + "."
    assert_refused(await client.get("/me", headers=dpop_headers(token, unsigned)))
    assert_refused(await client.get("/me", headers=dpop_headers(token, proof)))


async def test_hmac_alg_proof_keyed_with_the_public_key_is_refused(
    app: WebApp, client: httpx.AsyncClient
) -> None:
    # Key confusion: HS256 "signed" with the public key the header itself carries.
    maker = ProofMaker()
    token = bound_token(app, maker)
    public = json.dumps(maker.jwk, separators=(",", ":")).encode()
    proof = maker.proof(
        "GET", URL, iat=T0, access_token=token, header={"alg": "HS256"}, hmac_key=public
    )
    assert_refused(await client.get("/me", headers=dpop_headers(token, proof)))


async def test_hmac_proof_with_a_symmetric_jwk_is_refused(
    app: WebApp, client: httpx.AsyncClient
) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    secret = b"k" * 32
    proof = maker.proof(
        "GET",
        URL,
        iat=T0,
        access_token=token,
        header={"alg": "HS256", "jwk": {"kty": "oct", "k": b64(secret)}},
        hmac_key=secret,
    )
    assert_refused(await client.get("/me", headers=dpop_headers(token, proof)))


async def test_private_key_members_in_jwk_are_refused(
    app: WebApp, client: httpx.AsyncClient
) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    assert isinstance(maker.private, ec.EllipticCurvePrivateKey)
    d = b64(maker.private.private_numbers().private_value.to_bytes(32, "big"))
    proof = maker.proof(
        "GET", URL, iat=T0, access_token=token, header={"jwk": {**maker.jwk, "d": d}}
    )
    response = await client.get("/me", headers=dpop_headers(token, proof))
    assert_refused(response)
    assert "private" in response.json()["detail"]


async def test_oversized_proof_is_refused(app: WebApp, client: httpx.AsyncClient) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    padding = "x" * app.dpop.settings.max_proof_bytes
    proof = maker.proof("GET", URL, iat=T0, access_token=token, claims={"pad": padding})
    assert_refused(await client.get("/me", headers=dpop_headers(token, proof)))


async def test_bound_token_sent_as_bearer_is_refused(
    app: WebApp, client: httpx.AsyncClient
) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"] == "dpop_required"
    www = response.headers["www-authenticate"]
    assert www.startswith('Bearer realm="jwtsess", error="invalid_token"'), www
    assert 'DPoP realm="jwtsess", algs="ES256 EdDSA RS256 PS256"' in www


async def test_bound_token_sent_as_bearer_with_a_valid_proof_is_refused(
    app: WebApp, client: httpx.AsyncClient
) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    proof = maker.proof("GET", URL, iat=T0, access_token=token)
    response = await client.get("/me", headers={"Authorization": f"Bearer {token}", "DPoP": proof})
    assert response.status_code == 401
    assert response.json()["error"] == "dpop_required"


async def test_bound_token_in_the_access_cookie_is_not_accepted(app: WebApp) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    client = app.client()
    client.cookies.set(app.config.access_cookie_name, token, domain="testserver")
    response = await client.get("/me")
    assert response.status_code == 401
    assert response.json()["error"] == "token_missing"  # the cookie counted for nothing


async def test_bound_token_without_a_proof_is_refused(
    app: WebApp, client: httpx.AsyncClient
) -> None:
    token = bound_token(app, ProofMaker())
    assert_refused(await client.get("/me", headers={"Authorization": f"DPoP {token}"}))


async def test_two_proof_headers_are_refused(app: WebApp, client: httpx.AsyncClient) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    proofs = [maker.proof("GET", URL, iat=T0, access_token=token) for _ in range(2)]
    headers = [("Authorization", f"DPoP {token}"), ("DPoP", proofs[0]), ("DPoP", proofs[1])]
    assert_refused(await client.get("/me", headers=headers))


async def test_unbound_token_with_the_dpop_scheme_is_refused(
    app: WebApp, client: httpx.AsyncClient
) -> None:
    maker = ProofMaker()
    token = app.kit.signer.issue("alice", "user", "sid-alice")[0]
    proof = maker.proof("GET", URL, iat=T0, access_token=token)
    assert_refused(await client.get("/me", headers=dpop_headers(token, proof)), "token_invalid")


async def test_wrong_typ_is_refused(app: WebApp, client: httpx.AsyncClient) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    proof = maker.proof("GET", URL, iat=T0, access_token=token, header={"typ": "JWT"})
    assert_refused(await client.get("/me", headers=dpop_headers(token, proof)))


async def test_access_token_as_proof_is_refused(app: WebApp, client: httpx.AsyncClient) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    assert_refused(await client.get("/me", headers=dpop_headers(token, token)))


async def test_jwk_of_the_wrong_type_for_the_alg_is_refused(
    app: WebApp, client: httpx.AsyncClient
) -> None:
    maker = ProofMaker(ed25519.Ed25519PrivateKey.generate())
    token = bound_token(app, maker)
    proof = maker.proof("GET", URL, iat=T0, access_token=token, header={"alg": "ES256"})
    assert_refused(await client.get("/me", headers=dpop_headers(token, proof)))


async def test_point_not_on_the_curve_is_refused(app: WebApp, client: httpx.AsyncClient) -> None:
    maker = ProofMaker()
    token = bound_token(app, maker)
    bad = {**maker.jwk, "y": b64((1).to_bytes(32, "big"))}
    proof = maker.proof("GET", URL, iat=T0, access_token=token, header={"jwk": bad})
    assert_refused(await client.get("/me", headers=dpop_headers(token, proof)))


async def test_websocket_without_a_proof_is_closed(app: WebApp) -> None:
    token = bound_token(app, ProofMaker())
    result = await websocket_exchange(app.app, "/ws", headers=[("authorization", f"DPoP {token}")])
    assert not result.accepted
    assert (result.close_code, result.close_reason) == (1008, "invalid_dpop_proof")


async def test_websocket_with_a_bound_token_as_bearer_is_closed(app: WebApp) -> None:
    token = bound_token(app, ProofMaker())
    result = await websocket_exchange(
        app.app, "/ws", headers=[("authorization", f"Bearer {token}")]
    )
    assert not result.accepted
    assert (result.close_code, result.close_reason) == (1008, "dpop_required")


# -- nonces (RFC 9449 section 9) ----------------------------------------------------------------


@pytest.fixture
async def nonce_app(make_kit: Callable[..., TokenKit]) -> WebApp:
    settings = DPoPSettings(nonce_secret=b"n" * 32, nonce_interval=300)
    return await start_web(make_kit("ES256"), MemoryStore(), dpop=settings)


async def test_proof_without_the_required_nonce_gets_a_nonce_challenge(nonce_app: WebApp) -> None:
    maker = ProofMaker()
    token = bound_token(nonce_app, maker)
    client = nonce_app.client()
    response = await client.get(
        "/me", headers=dpop_headers(token, maker.proof("GET", URL, iat=T0, access_token=token))
    )
    assert_refused(response, "use_dpop_nonce")
    nonce = response.headers["dpop-nonce"]
    retry = maker.proof("GET", URL, iat=T0, access_token=token, nonce=nonce)
    assert (await client.get("/me", headers=dpop_headers(token, retry))).status_code == 200


async def test_expired_nonce_is_refused(nonce_app: WebApp) -> None:
    maker = ProofMaker()
    token = bound_token(nonce_app, maker)
    nonce = nonce_app.dpop.current_nonce()
    assert nonce is not None
    nonce_app.clock.advance(2 * 300)  # two intervals: neither current nor previous
    token = bound_token(nonce_app, maker)
    proof = maker.proof("GET", URL, iat=nonce_app.clock(), access_token=token, nonce=nonce)
    response = await nonce_app.client().get("/me", headers=dpop_headers(token, proof))
    assert_refused(response, "use_dpop_nonce")
    assert response.headers["dpop-nonce"] != nonce


async def test_forged_nonce_is_refused(nonce_app: WebApp) -> None:
    maker = ProofMaker()
    token = bound_token(nonce_app, maker)
    current = nonce_app.dpop.current_nonce()
    assert current is not None
    forged = current[:-4] + ("AAAA" if not current.endswith("AAAA") else "BBBB")
    proof = maker.proof("GET", URL, iat=T0, access_token=token, nonce=forged)
    response = await nonce_app.client().get("/me", headers=dpop_headers(token, proof))
    assert_refused(response, "use_dpop_nonce")


# -- found by the black-box review of the demo (scripts/redteam.py) --------------------------


@contextlib.asynccontextmanager
async def _demo_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The demo (examples/app.py) in-process, its lifespan (the mirror) running."""
    from examples.app import DemoConfig, create_app

    config = DemoConfig(
        host="127.0.0.1",
        port=8000,
        keys_dir=str(tmp_path / "keys"),
        alg="ES256",
        access_ttl=900,
        secure_cookies=False,
        redis_url=None,
    )
    app = create_app(config)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 50000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=DEMO) as client,
    ):
        yield client


DEMO = "http://127.0.0.1:8000"


async def _bound_login(client: httpx.AsyncClient, key: ProofMaker) -> dict[str, str]:
    proof = key.proof("POST", f"{DEMO}/auth/login", iat=time.time())
    answer = await client.post(
        "/auth/login",
        json={"username": "bob", "password": "bob-demo-password"},
        headers={"DPoP": proof},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["token_type"] == "DPoP"
    pair: dict[str, str] = answer.json()
    return pair


async def test_copied_refresh_token_of_a_bound_session_cannot_revoke_it(tmp_path: Path) -> None:
    """docs/architecture.md: a thief holding only a bound session's refresh token
    "cannot log the user out". ``POST /auth/revoke`` (RFC 7009) took the copied
    token without a proof and ended the session. Now a bound session's current
    refresh token is revoked only with a proof from its key (``invalid_dpop_proof``
    otherwise, and nothing changes); the owner, with its key, still can."""
    key = ProofMaker()
    async with _demo_client(tmp_path) as client:
        pair = await _bound_login(client, key)
        thief = await client.post("/auth/revoke", data={"token": pair["refresh_token"]})
        assert thief.status_code == 400, thief.text
        assert thief.json()["error"] == "invalid_dpop_proof"
        other = ProofMaker().proof("POST", f"{DEMO}/auth/revoke", iat=time.time())
        thief = await client.post(
            "/auth/revoke", data={"token": pair["refresh_token"]}, headers={"DPoP": other}
        )
        assert thief.status_code == 400, thief.text
        me = key.proof("GET", f"{DEMO}/me", iat=time.time(), access_token=pair["access_token"])
        alive = await client.get("/me", headers=dpop_headers(pair["access_token"], me))
        assert alive.status_code == 200, alive.text

        mine = key.proof("POST", f"{DEMO}/auth/revoke", iat=time.time())
        owner = await client.post(
            "/auth/revoke", data={"token": pair["refresh_token"]}, headers={"DPoP": mine}
        )
        assert owner.status_code == 200, owner.text
        again = key.proof("POST", f"{DEMO}/auth/refresh", iat=time.time())
        refused = await client.post(
            "/auth/refresh", json={"refresh_token": pair["refresh_token"]}, headers={"DPoP": again}
        )
        assert refused.status_code == 401


async def test_copied_bound_access_token_cannot_be_revoked_without_its_key(
    tmp_path: Path,
) -> None:
    """The same through the access token: ``/auth/revoke`` denied a copied DPoP-bound
    access token by its ``jti`` without any proof. Now it needs the bound key's proof."""
    key = ProofMaker()
    async with _demo_client(tmp_path) as client:
        pair = await _bound_login(client, key)
        token = pair["access_token"]
        thief = await client.post("/auth/revoke", data={"token": token})
        assert thief.status_code == 400, thief.text
        assert thief.json()["error"] == "invalid_dpop_proof"
        me = key.proof("GET", f"{DEMO}/me", iat=time.time(), access_token=token)
        alive = await client.get("/me", headers=dpop_headers(token, me))
        assert alive.status_code == 200, alive.text

        mine = key.proof("POST", f"{DEMO}/auth/revoke", iat=time.time())
        owner = await client.post("/auth/revoke", data={"token": token}, headers={"DPoP": mine})
        assert owner.status_code == 200, owner.text
        me = key.proof("GET", f"{DEMO}/me", iat=time.time(), access_token=token)
        gone = await client.get("/me", headers=dpop_headers(token, me))
        assert gone.status_code == 401


async def test_introspection_does_not_present_a_bound_token_as_bearer(tmp_path: Path) -> None:
    """RFC 9449 section 6.2: ``/auth/introspect`` answered ``token_type: "Bearer"`` for a
    DPoP-bound token. A resource server that trusts ``token_type`` (another language,
    no local verification) would then accept the copied token without a proof. It now
    says ``"DPoP"``, next to ``cnf.jkt``; an unbound token stays ``"Bearer"``."""
    key = ProofMaker()
    async with _demo_client(tmp_path) as client:
        bound = await _bound_login(client, key)
        admin = await client.post(
            "/auth/login", json={"username": "alice", "password": "alice-demo-password"}
        )
        auth = {"Authorization": f"Bearer {admin.json()['access_token']}"}
        answer = await client.post(
            "/auth/introspect", data={"token": bound["access_token"]}, headers=auth
        )
        assert answer.json()["active"] is True, answer.text
        assert answer.json()["cnf"] == {"jkt": key.jkt}
        assert answer.json()["token_type"] == "DPoP"
        plain = await client.post(
            "/auth/introspect", data={"token": admin.json()["access_token"]}, headers=auth
        )
        assert plain.json()["token_type"] == "Bearer"
