"""Key material: generation, loading, public JWKs and RFC 7638 thumbprints.

All cryptography goes through ``cryptography`` (key generation, PEM) and
PyJWT's algorithm objects (sign, verify, JWK export). One ``SigningKey`` holds a
key already prepared for its single algorithm, so no per-token key parsing
happens on the request path.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import Algorithm

from .errors import KeyringError

SUPPORTED_ALGORITHMS: Final = ("HS256", "RS256", "ES256", "EdDSA")
SYMMETRIC_ALGORITHMS: Final = frozenset({"HS256"})
RSA_BITS: Final = 2048
HMAC_SECRET_BYTES: Final = 32  # 256 bits, RFC 7518 section 3.2 minimum for HS256
ACCESS_TOKEN_TYP: Final = "at+jwt"

# RFC 7638 section 3.2: the required members of each key type, in the order
# the thumbprint hashes them (lexicographic).
_THUMBPRINT_MEMBERS: Final[Mapping[str, tuple[str, ...]]] = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "oct": ("k", "kty"),
}
_PUBLIC_MEMBERS: Final[Mapping[str, tuple[str, ...]]] = {
    "RSA": ("kty", "n", "e"),
    "EC": ("kty", "crv", "x", "y"),
    "OKP": ("kty", "crv", "x"),
}


# The order of the P-256 group: an ECDSA signature (r, s) also verifies as
# (r, n - s). ES256 tokens are signed and accepted with s <= n / 2 only.
P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def is_low_s(raw_signature: bytes) -> bool:
    """Whether a raw 64-byte ES256 signature r||s has the canonical low s."""
    return len(raw_signature) == 64 and int.from_bytes(raw_signature[32:]) <= P256_ORDER // 2


def to_low_s(raw_signature: bytes) -> bytes:
    """The canonical spelling (low s) of a raw 64-byte ES256 signature."""
    s = int.from_bytes(raw_signature[32:])
    if s <= P256_ORDER // 2:
        return raw_signature
    return raw_signature[:32] + (P256_ORDER - s).to_bytes(32)


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JOSE writes it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class NotCanonical(ValueError):
    """Base64url that decodes, but is not the one spelling ``b64url`` gives its bytes."""


def b64url_decode(text: str) -> bytes:
    """Unpadded base64url to bytes, refusing every other spelling of them.

    Re-encoding must give back the very same text: this refuses padding, stray
    characters and non-zero trailing bits.

    :raises NotCanonical: it decodes, but is not written the one way.
    :raises ValueError: not base64url at all.

    The exception's message is the reason ("not canonical base64url", "not
    base64url"), for the caller's own error to quote.
    """
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None
    if b64url(raw) != text:
        raise NotCanonical("not canonical base64url")
    return raw


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a JWK, base64url-encoded."""
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        raise ValueError(f"unsupported kty for a thumbprint: {kty!r}")
    canonical = {name: jwk[name] for name in members}
    encoded = json.dumps(canonical, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return b64url(hashlib.sha256(encoded).digest())


def generate_key_material(alg: str) -> bytes:
    """New key material for ``alg``: a PKCS#8 PEM, or a random secret for HS256."""
    if alg == "HS256":
        return secrets.token_bytes(HMAC_SECRET_BYTES)
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise KeyringError(f"unsupported algorithm {alg!r}; choose one of {SUPPORTED_ALGORITHMS}")
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key of the ring, prepared for exactly one algorithm.

    ``header_b64`` is the constant protected header of every token this key
    signs; ``public_jwk`` is None for HMAC keys, whose secret is never published.
    """

    kid: str
    alg: str
    algorithm: Algorithm
    sign_key: Any
    verify_key: Any
    public_jwk: Mapping[str, str] | None
    header_b64: bytes = field(repr=False)


def _check_private_key(alg: str, key: object, source: str) -> None:
    expected: tuple[type, ...]
    if alg == "RS256":
        expected = (rsa.RSAPrivateKey,)
    elif alg == "ES256":
        expected = (ec.EllipticCurvePrivateKey,)
    else:
        expected = (ed25519.Ed25519PrivateKey,)
    if not isinstance(key, expected):
        raise KeyringError(f"{source}: the key is not a private key for {alg}")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < RSA_BITS:
        raise KeyringError(f"{source}: RSA key of {key.key_size} bits; at least {RSA_BITS} needed")
    if isinstance(key, ec.EllipticCurvePrivateKey) and not isinstance(key.curve, ec.SECP256R1):
        raise KeyringError(f"{source}: ES256 needs a P-256 key, not {key.curve.name}")


def public_jwk_of(alg: str, public_key: Any) -> dict[str, str]:
    """The public JWK (only the public members) plus ``alg`` and ``use``."""
    algorithm = jwt.get_algorithm_by_name(alg)
    full = algorithm.to_jwk(public_key, as_dict=True)
    kty = str(full["kty"])
    jwk = {name: str(full[name]) for name in _PUBLIC_MEMBERS[kty]}
    jwk["kid"] = thumbprint(jwk)
    jwk["alg"] = alg
    jwk["use"] = "sig"
    return jwk


def kid_for(alg: str, material: bytes) -> str:
    """The kid a key must carry: its thumbprint, or a fresh random id for HMAC."""
    if alg in SYMMETRIC_ALGORITHMS:
        return "hs-" + secrets.token_hex(8)
    private = serialization.load_pem_private_key(material, password=None)
    return public_jwk_of(alg, private.public_key())["kid"]


def load_signing_key(kid: str, alg: str, material: bytes, *, source: str) -> SigningKey:
    """Prepare stored material for signing and verifying with ``alg``.

    For asymmetric keys the stored ``kid`` must equal the key's thumbprint, so a
    manifest edited by hand cannot point a kid at the wrong key.
    """
    if alg not in SUPPORTED_ALGORITHMS:
        raise KeyringError(f"{source}: unsupported algorithm {alg!r}")
    algorithm = jwt.get_algorithm_by_name(alg)
    public_jwk: dict[str, str] | None
    sign_key: Any
    verify_key: Any
    if alg in SYMMETRIC_ALGORITHMS:
        if len(material) < HMAC_SECRET_BYTES:
            raise KeyringError(f"{source}: HMAC secret shorter than {HMAC_SECRET_BYTES} bytes")
        sign_key = verify_key = material
        public_jwk = None
    else:
        try:
            private = serialization.load_pem_private_key(material, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyringError(f"{source}: not a readable unencrypted PEM private key") from exc
        _check_private_key(alg, private, source)
        sign_key = private
        verify_key = private.public_key()
        public_jwk = public_jwk_of(alg, verify_key)
        if public_jwk["kid"] != kid:
            raise KeyringError(
                f"{source}: kid {kid!r} is not the key's RFC 7638 thumbprint {public_jwk['kid']!r}"
            )
    header = json.dumps(
        {"alg": alg, "kid": kid, "typ": ACCESS_TOKEN_TYP}, separators=(",", ":")
    ).encode("utf-8")
    return SigningKey(
        kid=kid,
        alg=alg,
        algorithm=algorithm,
        sign_key=sign_key,
        verify_key=verify_key,
        public_jwk=public_jwk,
        header_b64=b64url(header).encode("ascii"),
    )
