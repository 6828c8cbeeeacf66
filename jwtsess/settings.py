"""One typed options object for the token layer, with documented defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenSettings:
    """What every access token carries and how strictly it is checked.

    :param issuer: the ``iss`` claim; checked by exact string match.
    :param audience: the ``aud`` claim a token must name.
    :param access_ttl: access-token lifetime in seconds (default 15 minutes).
    :param leeway: clock skew tolerated on ``exp``, ``nbf`` and ``iat``, in seconds
        (2 to 300; default 10).
    :param max_token_bytes: longer tokens are refused before any decoding.
    :param verified_cache_size: how many verified tokens are remembered (0 disables).
    """

    issuer: str
    audience: str
    access_ttl: int = 900
    leeway: int = 10
    max_token_bytes: int = 4096
    verified_cache_size: int = 10_000

    def __post_init__(self) -> None:
        # Real checks, not asserts: ``python -O`` must not switch them off.
        if not self.issuer or not self.audience:
            raise ValueError("issuer and audience must be non-empty strings")
        if not 1 <= self.access_ttl <= 24 * 3600:
            raise ValueError("access_ttl must be between 1 second and 24 hours")
        # At least 2 s: after a user-level revocation new tokens carry an iat up
        # to a second or two ahead (docs/architecture.md, "Revocation").
        if not 2 <= self.leeway <= 300:
            raise ValueError("leeway must be between 2 and 300 seconds")
        if not 256 <= self.max_token_bytes <= 65536:
            raise ValueError("max_token_bytes must be between 256 and 65536")
        if self.verified_cache_size < 0:
            raise ValueError("verified_cache_size must be >= 0")
