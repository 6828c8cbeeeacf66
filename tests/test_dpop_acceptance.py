"""Issue 17 acceptance: the demo, served by uvicorn, and a client written only against RFC 9449.

The client here uses joserfc and the RFC's text, nothing from jwtsess: it
makes an EC P-256 key, builds each proof (``typ`` ``dpop+jwt``, ``jwk``,
``jti``, ``htm``, ``htu``, ``iat``, ``ath``), computes ``ath`` and the RFC 7638
thumbprint with joserfc, and speaks plain HTTP with httpx. The demo must bind
the session to that key, accept the bound token with a proof, refuse it as
Bearer, refuse a replayed proof, and refresh only with the bound key, on its
JSON route and on the OAuth token endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jws
from joserfc.jwk import ECKey

from tests.support.servers import Server, running_uvicorn

pytestmark = pytest.mark.system  # serves the demo under uvicorn

CREDENTIALS = {"username": "alice", "password": "alice-demo-password"}


class RFC9449Client:
    """A DPoP client from the RFC alone: one key, proofs built by hand, signed by joserfc."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.key = ECKey.generate_key("P-256")
        self.jwk = self.key.as_dict(private=False)

    @property
    def thumbprint(self) -> str:
        return str(self.key.thumbprint())  # RFC 7638, SHA-256

    def proof(self, htm: str, path: str, *, access_token: str | None = None) -> str:
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": htm,
            "htu": self.base + path,
            "iat": int(time.time()),
        }
        if access_token is not None:
            digest = hashlib.sha256(access_token.encode("ascii")).digest()
            claims["ath"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}
        return str(jws.serialize_compact(header, json.dumps(claims).encode(), self.key))


def unverified_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Server]:
    env = {"JWTSESS_KEYS_DIR": str(tmp_path / "keys"), "REDIS_URL": None}
    with running_uvicorn(env=env) as server:
        yield server


def test_demo_serves_a_dpop_bound_session_to_an_rfc_9449_client(demo: Server) -> None:
    base = f"http://127.0.0.1:{demo.port}"
    client = RFC9449Client(base)
    with httpx.Client(base_url=base, timeout=10) as http:
        # Login with a proof: the session is bound to the client's key.
        login = http.post(
            "/auth/login", json=CREDENTIALS, headers={"DPoP": client.proof("POST", "/auth/login")}
        )
        assert login.status_code == 200, login.text
        pair = login.json()
        assert pair["token_type"] == "DPoP"
        access = pair["access_token"]
        assert unverified_claims(access)["cnf"] == {"jkt": client.thumbprint}

        # The bound token with a proof for this request: accepted.
        proof = client.proof("GET", "/me", access_token=access)
        me = http.get("/me", headers={"Authorization": f"DPoP {access}", "DPoP": proof})
        assert me.status_code == 200, me.text
        assert me.json()["sub"] == "alice"

        # The same proof again: a replay, refused.
        replay = http.get("/me", headers={"Authorization": f"DPoP {access}", "DPoP": proof})
        assert replay.status_code == 401
        assert replay.json()["error"] == "invalid_dpop_proof"
        assert replay.headers["www-authenticate"].startswith("DPoP ")

        # The same access token as a bearer token: refused.
        bearer = http.get("/me", headers={"Authorization": f"Bearer {access}"})
        assert bearer.status_code == 401
        assert bearer.json()["error"] == "dpop_required"

        # Refresh without a proof, or with another key's proof: refused, nothing changes.
        refresh_body = {"refresh_token": pair["refresh_token"]}
        assert http.post("/auth/refresh", json=refresh_body).status_code == 401
        thief = RFC9449Client(base)
        stolen = http.post(
            "/auth/refresh",
            json=refresh_body,
            headers={"DPoP": thief.proof("POST", "/auth/refresh")},
        )
        assert stolen.status_code == 401
        assert stolen.json()["error"] == "invalid_dpop_proof"

        # Refresh with the bound key: a new pair, still bound to it.
        fresh = http.post(
            "/auth/refresh",
            json=refresh_body,
            headers={"DPoP": client.proof("POST", "/auth/refresh")},
        )
        assert fresh.status_code == 200, fresh.text
        assert fresh.json()["token_type"] == "DPoP"
        assert unverified_claims(fresh.json()["access_token"])["cnf"] == {"jkt": client.thumbprint}

        # The OAuth token endpoint (RFC 6749 section 6) with the bound key, then with the thief's.
        form = {"grant_type": "refresh_token", "refresh_token": fresh.json()["refresh_token"]}
        refused = http.post(
            "/auth/token", data=form, headers={"DPoP": thief.proof("POST", "/auth/token")}
        )
        assert refused.status_code in (400, 401)
        assert refused.json()["error"] == "invalid_dpop_proof"
        token = http.post(
            "/auth/token", data=form, headers={"DPoP": client.proof("POST", "/auth/token")}
        )
        assert token.status_code == 200, token.text
        assert token.json()["token_type"] == "DPoP"
        newest = token.json()["access_token"]
        check = http.get(
            "/me",
            headers={
                "Authorization": f"DPoP {newest}",
                "DPoP": client.proof("GET", "/me", access_token=newest),
            },
        )
        assert check.status_code == 200, check.text
