"""Access tokens: the claims they carry and the signer that issues them.

Shape (RFC 9068): header ``{"alg", "kid", "typ": "at+jwt"}``; claims ``iss,
aud, sub, role, sid, jti, iat, nbf, exp`` and ``iat_us`` (the issue instant in
microseconds, which user-level revocations are ordered by; ``iat`` is its whole
seconds) plus any extra claims the application adds, which can never replace a
reserved one. A token bound to a DPoP key (RFC 9449) also carries
``cnf: {"jkt": <RFC 7638 thumbprint>}``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .clock import Clock, system_clock
from .jwk import b64url, to_low_s
from .keyring import KeyRing
from .settings import TokenSettings

RESERVED_CLAIMS: Final = frozenset(
    {"iss", "aud", "sub", "role", "sid", "jti", "iat", "iat_us", "nbf", "exp", "cnf"}
)
MICROS: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The verified claims of an access token.

    ``jkt`` is the thumbprint of the DPoP key the token is bound to (its
    ``cnf.jkt``), or None for a bearer token.
    """

    sub: str
    role: str
    sid: str
    jti: str
    iat: int
    nbf: int
    exp: int
    iss: str
    aud: str | tuple[str, ...]
    kid: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    jkt: str | None = None
    #: the issue instant in microseconds; 0 if the token did not carry ``iat_us``
    iat_us: int = 0

    @property
    def issued_us(self) -> int:
        """The issue instant in microseconds (``iat`` whole seconds if ``iat_us`` is absent)."""
        return self.iat_us or self.iat * MICROS

    def as_dict(self) -> dict[str, Any]:
        """All claims as they stood in the token (``aud`` as a string or list)."""
        precise = {"iat_us": self.iat_us} if self.iat_us else {}
        claims: dict[str, Any] = {
            **self.extra,
            "iss": self.iss,
            "aud": self.aud if isinstance(self.aud, str) else list(self.aud),
            "sub": self.sub,
            "role": self.role,
            "sid": self.sid,
            "jti": self.jti,
            "iat": self.iat,
            "nbf": self.nbf,
            "exp": self.exp,
            **precise,
        }
        if self.jkt is not None:
            claims["cnf"] = {"jkt": self.jkt}
        return claims


def check_extra_claims(extra_claims: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``extra_claims``, refused if it names a reserved claim or is not JSON.

    :raises ValueError: on a reserved name or a value JSON cannot encode.
    """
    extra = dict(extra_claims or {})
    clash = RESERVED_CLAIMS.intersection(extra)
    if clash:
        raise ValueError(f"extra_claims may not set reserved claims: {sorted(clash)}")
    try:
        json.dumps(extra, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError (lone surrogates) too
        raise ValueError(f"extra_claims must be JSON-serialisable UTF-8: {exc}") from None
    return extra


class AccessTokenSigner:
    """Signs access tokens with the keyring's active key."""

    def __init__(
        self, keyring: KeyRing, settings: TokenSettings, *, clock: Clock = system_clock
    ) -> None:
        self._keyring = keyring
        self._settings = settings
        self._clock = clock

    def issue(
        self,
        sub: str,
        role: str,
        sid: str,
        *,
        extra_claims: Mapping[str, Any] | None = None,
        not_before_us: int = 0,
        jkt: str | None = None,
    ) -> tuple[str, AccessClaims]:
        """A signed access token and its claims.

        :param not_before_us: the user's revocation instant (microseconds);
            ``iat_us`` is never earlier, so a token issued right after a
            revocation is not revoked by it. Revocation instants advance by one
            microsecond past the clock at most (docs/architecture.md), so
            ``iat`` is never ahead of the clock by more than clock skew.
        :param jkt: bind the token to this DPoP key thumbprint (``cnf.jkt``).
        :raises ValueError: if ``extra_claims`` names a reserved claim.
        """
        extra = check_extra_claims(extra_claims)
        key = self._keyring.signing_key()
        issued_us = max(int(self._clock() * MICROS), not_before_us)
        now = issued_us // MICROS
        claims = AccessClaims(
            sub=sub,
            role=role,
            sid=sid,
            jti=secrets.token_urlsafe(16),  # 128 random bits
            iat=now,
            nbf=now,
            exp=now + self._settings.access_ttl,
            iss=self._settings.issuer,
            aud=self._settings.audience,
            kid=key.kid,
            extra=extra,
            jkt=jkt,
            iat_us=issued_us,
        )
        payload = json.dumps(claims.as_dict(), separators=(",", ":")).encode("utf-8")
        signing_input = key.header_b64 + b"." + b64url(payload).encode("ascii")
        signature = key.algorithm.sign(signing_input, key.sign_key)
        if key.alg == "ES256":
            signature = to_low_s(signature)  # one spelling per token (see jwk.is_low_s)
        token = (signing_input + b"." + b64url(signature).encode("ascii")).decode("ascii")
        return token, claims
