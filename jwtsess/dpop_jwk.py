"""DPoP keys: the client's public JWK checked and built (server side), and a
key that signs proofs (client side).

A proof's ``jwk`` header is attacker input. It must be a public key of exactly
the type its ``alg`` needs (ES256: EC P-256; EdDSA: OKP Ed25519; RS256 and
PS256: RSA of 2048 to 8192 bits), every number in canonical base64url, and
nothing private (``d``, ``p``, ``q``, ``dp``, ``dq``, ``qi``, ``oth``, ``k``):
a client that sends its private key has lost it, so the proof is refused.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import Algorithm

from .clock import Clock, system_clock
from .jwk import b64url, b64url_decode, thumbprint, to_low_s

#: The proof algorithms jwtsess accepts, in the order a challenge lists them.
PROOF_ALGORITHMS: Final = ("ES256", "EdDSA", "RS256", "PS256")
_KTY: Final = {"ES256": "EC", "EdDSA": "OKP", "RS256": "RSA", "PS256": "RSA"}
_PUBLIC: Final = {"EC": ("crv", "x", "y"), "OKP": ("crv", "x"), "RSA": ("n", "e")}
_PRIVATE: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# Members that describe a key without changing it (WebCrypto exports ext and key_ops).
_DESCRIPTIVE: Final = frozenset({"kty", "alg", "use", "kid", "key_ops", "ext"})
_MIN_RSA_BITS: Final = 2048
_MAX_RSA_BITS: Final = 8192


def _number(jwk: Mapping[str, Any], name: str, max_bytes: int) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= (max_bytes * 4 + 2) // 3:
        raise ValueError(f"'{name}' is missing or too long")
    try:
        return b64url_decode(value)
    except ValueError as exc:
        raise ValueError(f"'{name}' is {exc}") from None


@dataclass(frozen=True, slots=True)
class ProofKey:
    """A client's public key from a proof header, ready to verify with one algorithm."""

    alg: str
    jkt: str
    algorithm: Algorithm
    public_key: Any

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        return bool(self.algorithm.verify(signing_input, self.public_key, signature))


def proof_key(alg: str, jwk: object) -> ProofKey:
    """Check a proof's ``jwk`` for ``alg`` and build the key.

    :raises ValueError: not a JSON object, wrong type for ``alg``, private or
        unknown members, numbers not canonical, point not on the curve, RSA too
        small or too large.
    """
    if not isinstance(jwk, dict):
        raise ValueError("not a JSON object")
    if _PRIVATE.intersection(jwk):
        raise ValueError("it holds private key members")
    kty = _KTY[alg]
    if jwk.get("kty") != kty:
        raise ValueError(f"{alg} needs a key of type {kty}")
    if not jwk.keys() <= _DESCRIPTIVE.union(_PUBLIC[kty]):
        raise ValueError("it has an unsupported member")
    if "alg" in jwk and jwk["alg"] != alg:
        raise ValueError("its alg differs from the proof's")
    public_key: Any
    if kty == "EC":
        if jwk.get("crv") != "P-256":
            raise ValueError("ES256 needs the P-256 curve")
        x, y = _number(jwk, "x", 32), _number(jwk, "y", 32)
        if len(x) != 32 or len(y) != 32:
            raise ValueError("P-256 coordinates are 32 bytes")
        public_key = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x), int.from_bytes(y), ec.SECP256R1()
        ).public_key()  # ValueError when the point is not on the curve
    elif kty == "OKP":
        if jwk.get("crv") != "Ed25519":
            raise ValueError("EdDSA needs the Ed25519 curve")
        x = _number(jwk, "x", 32)
        if len(x) != 32:
            raise ValueError("an Ed25519 key is 32 bytes")
        public_key = ed25519.Ed25519PublicKey.from_public_bytes(x)
    else:
        n, e = _number(jwk, "n", _MAX_RSA_BITS // 8), _number(jwk, "e", 8)
        modulus, exponent = int.from_bytes(n), int.from_bytes(e)
        if not _MIN_RSA_BITS <= modulus.bit_length() <= _MAX_RSA_BITS or n[0] == 0:
            raise ValueError(f"RSA keys are {_MIN_RSA_BITS} to {_MAX_RSA_BITS} bits")
        if exponent < 3 or exponent % 2 == 0 or e[0] == 0:
            raise ValueError("the RSA exponent is not valid")
        public_key = rsa.RSAPublicNumbers(exponent, modulus).public_key()
    return ProofKey(
        alg=alg,
        jkt=thumbprint(jwk),
        algorithm=jwt.get_algorithm_by_name(alg),
        public_key=public_key,
    )


class DPoPKey:
    """A client's DPoP key pair: signs proofs (RFC 9449 section 4.2).

    Keep one per session: the session is bound to its thumbprint (``jkt``).

    :param private_key: a P-256 (ES256) or Ed25519 (EdDSA) private key.
    :param clock: epoch seconds, for ``iat``.
    """

    def __init__(
        self,
        private_key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
        *,
        clock: Clock = system_clock,
    ) -> None:
        if isinstance(private_key, ed25519.Ed25519PrivateKey):
            self.alg = "EdDSA"
        elif isinstance(private_key, ec.EllipticCurvePrivateKey) and isinstance(
            private_key.curve, ec.SECP256R1
        ):
            self.alg = "ES256"
        else:
            raise ValueError("a DPoP key is a P-256 or an Ed25519 private key")
        self._private = private_key
        self._algorithm = jwt.get_algorithm_by_name(self.alg)
        full = json.loads(self._algorithm.to_jwk(private_key.public_key()))
        self.public_jwk: dict[str, str] = {
            name: str(full[name]) for name in ("kty", *_PUBLIC[full["kty"]])
        }
        self.jkt = thumbprint(self.public_jwk)
        self.clock = clock
        header = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.public_jwk}
        self._header = b64url(json.dumps(header, separators=(",", ":")).encode())

    @classmethod
    def generate(cls, alg: str = "ES256", *, clock: Clock = system_clock) -> DPoPKey:
        """A new key pair for ``alg`` (``ES256`` or ``EdDSA``)."""
        if alg == "ES256":
            return cls(ec.generate_private_key(ec.SECP256R1()), clock=clock)
        if alg == "EdDSA":
            return cls(ed25519.Ed25519PrivateKey.generate(), clock=clock)
        raise ValueError("alg must be ES256 or EdDSA")

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
    ) -> str:
        """A fresh proof for one request.

        :param url: the request URL; its query and fragment are left out of ``htu``.
        :param access_token: the token sent with it (adds ``ath``).
        :param nonce: the server's latest ``DPoP-Nonce``.
        """
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": url.split("#", 1)[0].split("?", 1)[0],
            "iat": int(self.clock()),
        }
        if access_token is not None:
            claims["ath"] = b64url(hashlib.sha256(access_token.encode("ascii")).digest())
        if nonce is not None:
            claims["nonce"] = nonce
        payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{self._header}.{payload}".encode("ascii")
        signature = self._algorithm.sign(signing_input, self._private)
        if self.alg == "ES256":
            signature = to_low_s(signature)
        return f"{self._header}.{payload}.{b64url(signature)}"
