"""Reading a JWK Set (RFC 7517) strictly, for a service that only verifies.

``parse_jwks`` turns the bytes of a JWKS document into public verification
keys, or raises ``KeyringError`` naming the problem. The whole document is
refused when any key we would use is wrong, so a half-broken publication never
replaces a good key set:

- only RS256 (RSA, at least 2048 bits), ES256 (EC P-256, a point on the curve)
  and EdDSA (OKP Ed25519) keys; ``kty``, ``crv``, ``alg`` and ``use`` must agree;
- a symmetric key (``kty`` ``oct``, or an HS* ``alg``) is a configuration error:
  an HMAC secret can never be public, and HS256 tokens cannot be verified from
  a JWKS;
- private members (``d``, ``p``, ``q``, ``dp``, ``dq``, ``qi``, ``oth``, ``k``)
  are refused: a JWKS that publishes a private key is an incident, not an input;
- every usable key has a unique ``kid`` and an ``alg``; numbers are canonical
  unpadded base64url.

Keys that are not for us are skipped, not refused: ``use`` other than ``sig``
(encryption keys share JWKS documents with signing keys at many providers), and
algorithms this library does not verify (PS256, RS512, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import Algorithm

from . import strict_json
from .errors import KeyringError
from .jwk import RSA_BITS, b64url_decode

MAX_JWKS_BYTES: Final = 256 * 1024
MAX_JWKS_KEYS: Final = 100
MAX_RSA_BITS: Final = 8192  # a bigger modulus only makes every verification slower
MAX_KID_LENGTH: Final = 128
PRIVATE_MEMBERS: Final = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
VERIFY_ALGORITHMS: Final = ("RS256", "ES256", "EdDSA")
_KTY_FOR: Final[Mapping[str, tuple[str, str | None]]] = {
    "RS256": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "EdDSA": ("OKP", "Ed25519"),
}


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A verification key read from a JWKS: no private half, one algorithm."""

    kid: str
    alg: str
    algorithm: Algorithm = field(repr=False, compare=False)
    verify_key: Any = field(repr=False, compare=False)
    members: tuple[tuple[str, str], ...] = field(repr=False)  # the public members, compared


def _b64(jwk: Mapping[str, Any], name: str, where: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise KeyringError(f"{where}: member {name!r} is missing or not a string")
    try:
        return b64url_decode(value)
    except ValueError as exc:
        raise KeyringError(f"{where}: member {name!r} is {exc}") from None


def _rsa(jwk: Mapping[str, Any], where: str) -> rsa.RSAPublicKey:
    n_raw, e_raw = _b64(jwk, "n", where), _b64(jwk, "e", where)
    n, e = int.from_bytes(n_raw), int.from_bytes(e_raw)
    if not RSA_BITS <= n.bit_length() <= MAX_RSA_BITS:
        raise KeyringError(
            f"{where}: RSA key of {n.bit_length()} bits; {RSA_BITS} to {MAX_RSA_BITS} needed"
        )
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise KeyringError(f"{where}: not a valid RSA public key ({exc})") from None


def _ec(jwk: Mapping[str, Any], where: str) -> ec.EllipticCurvePublicKey:
    x, y = _b64(jwk, "x", where), _b64(jwk, "y", where)
    if len(x) != 32 or len(y) != 32:
        raise KeyringError(f"{where}: P-256 coordinates must be 32 bytes each")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
    except ValueError:
        raise KeyringError(f"{where}: the point is not on the P-256 curve") from None


def _okp(jwk: Mapping[str, Any], where: str) -> ed25519.Ed25519PublicKey:
    x = _b64(jwk, "x", where)
    if len(x) != 32:
        raise KeyringError(f"{where}: an Ed25519 public key is 32 bytes")
    return ed25519.Ed25519PublicKey.from_public_bytes(x)


_PUBLIC: Final[Mapping[str, tuple[str, ...]]] = {
    "RSA": ("n", "e"),
    "EC": ("crv", "x", "y"),
    "OKP": ("crv", "x"),
}


def _key(jwk: Any, where: str) -> PublicKey | None:
    """One JWK: a key, None if it is not a signing key for us, or KeyringError."""
    if not isinstance(jwk, dict):
        raise KeyringError(f"{where}: not a JSON object")
    kty, alg, use = jwk.get("kty"), jwk.get("alg"), jwk.get("use")
    if kty == "oct" or (isinstance(alg, str) and alg.upper().startswith("HS")):
        raise KeyringError(
            f"{where}: a symmetric key (kty oct / {alg or 'HS*'}) has no place in a public-only "
            "key source; HS256 tokens can only be verified where the secret is. Use RS256, "
            "ES256 or EdDSA for services that verify from a JWKS"
        )
    private = [name for name in PRIVATE_MEMBERS if name in jwk]
    if private:
        raise KeyringError(f"{where}: private key members {private} published in a JWKS")
    if use is not None and use != "sig":
        return None  # an encryption key: not ours to use
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    if alg not in VERIFY_ALGORITHMS:
        return None  # no alg (cannot be pinned) or one this library does not verify
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
        raise KeyringError(f"{where}: 'kid' is missing or not a short string")
    where = f"{where} (kid {kid!r})"
    want_kty, want_crv = _KTY_FOR[alg]
    if kty != want_kty or (want_crv is not None and jwk.get("crv") != want_crv):
        raise KeyringError(
            f"{where}: alg {alg} needs kty {want_kty}"
            + (f" and crv {want_crv}" if want_crv else "")
            + f", not kty {kty!r} crv {jwk.get('crv')!r}"
        )
    verify_key: Any
    if kty == "RSA":
        verify_key = _rsa(jwk, where)
    elif kty == "EC":
        verify_key = _ec(jwk, where)
    else:
        verify_key = _okp(jwk, where)
    return PublicKey(
        kid=kid,
        alg=alg,
        algorithm=jwt.get_algorithm_by_name(alg),
        verify_key=verify_key,
        members=(("alg", alg), *((name, str(jwk[name])) for name in _PUBLIC[kty])),
    )


def parse_jwks(raw: bytes, *, source: str) -> dict[str, PublicKey]:
    """The usable verification keys of a JWKS document, by kid.

    :param raw: the document's bytes (at most ``MAX_JWKS_BYTES``).
    :param source: where it came from, for error messages.
    :raises KeyringError: the document or one of its signing keys is wrong, or
        it holds no usable key.
    """
    if len(raw) > MAX_JWKS_BYTES:
        raise KeyringError(f"{source}: larger than {MAX_JWKS_BYTES} bytes")
    try:
        document = strict_json.loads(raw.decode("utf-8"))
    except strict_json.DuplicateMember:
        raise KeyringError(f"{source}: a JSON object has a duplicate member") from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise KeyringError(f"{source}: not a JSON document") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise KeyringError(f"{source}: not a JWK Set (no 'keys' array)")
    if len(keys) > MAX_JWKS_KEYS:
        raise KeyringError(f"{source}: more than {MAX_JWKS_KEYS} keys")
    found: dict[str, PublicKey] = {}
    for index, jwk in enumerate(keys):
        key = _key(jwk, f"{source}: keys[{index}]")
        if key is None:
            continue
        if key.kid in found:
            raise KeyringError(f"{source}: kid {key.kid!r} appears twice")
        found[key.kid] = key
    if not found:
        raise KeyringError(f"{source}: no RS256, ES256 or EdDSA signing key")
    return found
