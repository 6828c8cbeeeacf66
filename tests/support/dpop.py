"""DPoP proofs built by hand from RFC 9449 and ``cryptography`` alone (no jwtsess code).

Attack tests forge proofs with exactly the flaw their name says; the positive
controls prove that ``ProofMaker`` makes proofs the server accepts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

Json = Mapping[str, Any]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def ath(access_token: str) -> str:
    """RFC 9449 section 4.2: base64url(SHA-256(ASCII access token))."""
    return b64(hashlib.sha256(access_token.encode("ascii")).digest())


def public_jwk(private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> dict[str, str]:
    if isinstance(private, ed25519.Ed25519PrivateKey):
        from cryptography.hazmat.primitives import serialization

        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}
    numbers = private.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64(numbers.x.to_bytes(32, "big")),
        "y": b64(numbers.y.to_bytes(32, "big")),
    }


def thumbprint(jwk: Json) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, no whitespace."""
    required = {
        "EC": ("crv", "kty", "x", "y"),
        "OKP": ("crv", "kty", "x"),
        "RSA": ("e", "kty", "n"),
    }
    members = {name: jwk[name] for name in required[str(jwk["kty"])]}
    text = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return b64(hashlib.sha256(text.encode("utf-8")).digest())


def sign(private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey, data: bytes) -> bytes:
    """A JWS signature: raw r||s for ES256 (RFC 7518 section 3.4), raw bytes for EdDSA."""
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return private.sign(data)
    r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass
class ProofMaker:
    """One client key; ``proof(...)`` builds a proof, every part overridable."""

    private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def alg(self) -> str:
        return "EdDSA" if isinstance(self.private, ed25519.Ed25519PrivateKey) else "ES256"

    @property
    def jwk(self) -> dict[str, str]:
        return public_jwk(self.private)

    @property
    def jkt(self) -> str:
        return thumbprint(self.jwk)

    def proof(
        self,
        htm: str,
        htu: str,
        *,
        iat: float,
        access_token: str | None = None,
        nonce: str | None = None,
        header: Json | None = None,
        claims: Json | None = None,
        drop: tuple[str, ...] = (),
        signer: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | None = None,
        hmac_key: bytes | None = None,
        signature: bytes | None = None,
    ) -> str:
        """A proof; ``header``/``claims`` override members, ``drop`` removes claims,
        ``signer`` signs with another key than the header's, ``hmac_key`` makes an
        HS256 MAC, ``signature`` replaces the signature bytes."""
        head: dict[str, Any] = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.jwk}
        head.update(header or {})
        body: dict[str, Any] = {
            "jti": secrets.token_urlsafe(12),
            "htm": htm,
            "htu": htu,
            "iat": int(iat),
        }
        if access_token is not None:
            body["ath"] = ath(access_token)
        if nonce is not None:
            body["nonce"] = nonce
        body.update(claims or {})
        for name in drop:
            body.pop(name, None)
        signing_input = (
            b64(json.dumps(head, separators=(",", ":")).encode())
            + "."
            + b64(json.dumps(body, separators=(",", ":")).encode())
        )
        if signature is None:
            if hmac_key is not None:
                signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
            else:
                signature = sign(signer or self.private, signing_input.encode())
        return signing_input + "." + b64(signature)
