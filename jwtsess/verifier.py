"""Strict access-token verification (RFC 8725, RFC 9068).

The order matters and is part of the contract:

1. size limit, before any base64 or JSON work;
2. shape: exactly three segments (no JWE, no JSON serialization, no refresh
   token); each is decoded only when needed, and must be canonical base64url;
3. header: strict JSON (no duplicate members), only ``alg``, ``kid`` and
   ``typ`` (so ``jwk``, ``jku``, ``x5u``, ``x5c``, ``crit`` and ``b64`` never
   work), ``typ`` must be ``at+jwt``;
4. key by ``kid`` alone; the key pins the algorithm and the header's ``alg``
   must equal it. No kid match means failure, never a search;
5. signature (non-empty), through PyJWT's algorithm object for that key;
6. claims, strict JSON again, then types, ``iss``, ``aud``, ``exp``, ``nbf``, ``iat``;
7. revocation, only after the signature verified.

Verified tokens are cached by their full string; a hit still checks expiry
and revocation on every call, and the cache is dropped when the key source changes.

The keys come from a ``KeySource``: a ``KeyRing`` (the issuing side's key
directory) or a ``JWKSKeySource`` (a service that only verifies). The checks
are the same with either.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from . import strict_json
from .access import MICROS, RESERVED_CLAIMS, AccessClaims
from .clock import Clock, system_clock
from .errors import AuthError, TokenExpired, TokenInvalid, TokenMalformed, UnknownKeyId
from .jwk import b64url_decode, is_low_s
from .keysource import KeySource
from .metrics import MetricsSink
from .refresh_token import REFRESH_TOKEN_PREFIX
from .settings import TokenSettings

ALLOWED_HEADER_MEMBERS: Final = frozenset({"alg", "kid", "typ"})
ACCEPTED_TYP: Final = frozenset({"at+jwt", "application/at+jwt"})
MAX_KID_LENGTH: Final = 128
MAX_STRING_CLAIM_LENGTH: Final = 512
_JKT_LENGTH: Final = 43  # base64url of a SHA-256 digest


class RevocationCheck(Protocol):
    """Anything that can say whether verified claims are revoked.

    ``check`` raises ``TokenRevoked`` (or ``RevocationStateStale``) and must
    not do network I/O: it runs on every request.
    """

    def check(self, claims: AccessClaims) -> None: ...


def _segment(segment: str, what: str) -> bytes:
    """Decode one base64url segment, refusing padding and non-canonical encodings
    (a second spelling of the same bytes would make token strings malleable)."""
    try:
        return b64url_decode(segment)
    except ValueError as exc:
        raise TokenMalformed(f"The token's {what} is {exc}.") from None


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = strict_json.loads(raw.decode("utf-8"))
    except strict_json.DuplicateMember:
        raise TokenInvalid(f"The token's {what} has a duplicate member.") from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise TokenMalformed(f"The token's {what} is not a JSON object.") from None
    if not isinstance(value, dict):
        raise TokenMalformed(f"The token's {what} is not a JSON object.")
    return value


def _numeric_date(claims: dict[str, Any], name: str) -> int:
    if name not in claims:
        raise TokenInvalid(f"The token has no '{name}' claim.")
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise TokenInvalid(f"The token's '{name}' claim is not a NumericDate.")
    return int(value)


def _confirmation(claims: dict[str, Any]) -> str | None:
    """The DPoP key thumbprint of ``cnf.jkt`` (RFC 9449 section 6), or None if unbound.

    A ``cnf`` this library cannot check (another confirmation method, extra
    members) makes the token invalid rather than a bearer token.
    """
    cnf = claims.get("cnf")
    if cnf is None:
        return None
    jkt = cnf.get("jkt") if isinstance(cnf, dict) and len(cnf) == 1 else None
    if not isinstance(jkt, str) or len(jkt) != _JKT_LENGTH:
        raise TokenInvalid("The token's 'cnf' claim is not a DPoP key thumbprint.")
    return jkt


def _string_claim(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_STRING_CLAIM_LENGTH:
        raise TokenInvalid(f"The token's '{name}' claim is missing or not a string.")
    return value


class Verifier:
    """Verifies access tokens against a key source.

    :param keyring: the keys (a ``KeyRing`` or a ``JWKSKeySource``); the token's
        ``kid`` chooses one.
    :param settings: issuer, audience, leeway, size and cache limits.
    :param clock: wall-clock seconds.
    :param revocation: checked after the signature on every call (cache hits too).
    :param metrics: counts verifications by result (``jwtsess.metrics``).
    """

    def __init__(
        self,
        keyring: KeySource,
        settings: TokenSettings,
        *,
        clock: Clock = system_clock,
        revocation: RevocationCheck | None = None,
        metrics: MetricsSink | None = None,
    ) -> None:
        self._keyring = keyring
        self._metrics = metrics
        # Dispatch once, here: without metrics, verify is _verify itself (no extra
        # call on the per-request path).
        self.verify = self._verify_counted if metrics is not None else self._verify  # type: ignore[method-assign]
        self._settings = settings
        self._clock = clock
        self.revocation = revocation
        self._cache: dict[str, AccessClaims] = {}
        self._cache_size = settings.verified_cache_size
        self._leeway = settings.leeway
        self._cache_generation = keyring.generation

    @property
    def clock(self) -> Clock:
        """The wall clock that decides expiry (also used to close expiring websockets)."""
        return self._clock

    def verify(self, token: str) -> AccessClaims:
        """Verify ``token`` and return its claims.

        :raises TokenMalformed: not a compact JWS within the size limit.
        :raises TokenInvalid: header, key, signature, type or claims are wrong.
        :raises TokenExpired: ``exp`` (plus leeway) has passed.
        :raises TokenRevoked: the revocation check refused it.
        """
        return self._verify(token)

    @property
    def keys(self) -> KeySource:
        """The key source given at construction."""
        return self._keyring

    async def wait_for_key(self, error: BaseException) -> bool:
        """After ``verify`` raised ``UnknownKeyId``: wait (bounded) for the key source
        to look for that kid again. True if it knows the kid now (verify once more).

        A local ``KeyRing`` has already looked; a ``JWKSKeySource`` refetches
        (single-flight, rate-limited). ``error`` may also be an exception caused by
        ``UnknownKeyId``; anything else answers False at once.
        """
        unknown = error if isinstance(error, UnknownKeyId) else error.__cause__
        if not isinstance(unknown, UnknownKeyId) or unknown.kid is None:
            return False
        return await self._keyring.wait_for_key(unknown.kid)

    @property
    def metrics(self) -> MetricsSink | None:
        """The metrics sink given at construction (fixed: ``verify`` is chosen by it)."""
        return self._metrics

    def _verify_counted(self, token: str) -> AccessClaims:
        metrics = self._metrics
        if metrics is None:
            return self._verify(token)
        try:
            claims = self._verify(token)
        except AuthError as error:
            metrics.rejected(error.code)
            raise
        metrics.verified()
        return claims

    def _verify(self, token: str) -> AccessClaims:
        keyring = self._keyring
        keyring.check()
        if keyring.generation != self._cache_generation:
            self._cache.clear()
            self._cache_generation = keyring.generation
        try:
            claims = self._cache.get(token)
        except TypeError:  # unhashable: certainly not a token
            claims = None
        if claims is None:
            claims = self._verify_uncached(token)
            if self._cache_size:
                if len(self._cache) >= self._cache_size:
                    # Evict the oldest entry (dicts keep insertion order).
                    del self._cache[next(iter(self._cache))]
                self._cache[token] = claims
        elif claims.exp + self._leeway <= self._clock():
            del self._cache[token]
            raise TokenExpired()
        if self.revocation is not None:
            self.revocation.check(claims)
        return claims

    def _verify_uncached(self, token: object) -> AccessClaims:
        settings = self._settings
        if not isinstance(token, str) or not token:
            raise TokenMalformed("The token is empty or not a string.")
        if len(token) > settings.max_token_bytes:
            raise TokenMalformed(f"The token is longer than {settings.max_token_bytes} bytes.")
        if not token.isascii():
            raise TokenMalformed("The token has characters outside base64url.")
        if token.startswith(REFRESH_TOKEN_PREFIX):
            raise TokenInvalid("A refresh token is not an access token.")
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenMalformed("The token is not a compact JWS of three segments.")
        header_seg, payload_seg, signature_seg = parts

        header = _json_object(_segment(header_seg, "header"), "header")
        if not header.keys() <= ALLOWED_HEADER_MEMBERS:
            # Never echo the member name: it is attacker text (and may not be Latin-1).
            raise TokenInvalid("The token's header has an unsupported parameter.")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYP:
            raise TokenInvalid("The token's typ is not at+jwt.")
        kid = header.get("kid")
        if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
            raise TokenInvalid("The token's kid is missing or not a short string.")
        key = self._keyring.verification_key(kid)
        if key is None:
            raise UnknownKeyId(kid=kid)
        if header.get("alg") != key.alg:
            raise TokenInvalid("The token's alg does not match its key.")

        signature = _segment(signature_seg, "signature")
        if not signature:
            raise TokenMalformed("The token's signature is empty.")
        if key.alg == "ES256" and not is_low_s(signature):
            # (r, n - s) verifies too; accepting only low s keeps one spelling per token.
            raise TokenInvalid("The token's signature is not canonical.")
        signing_input = token[: len(header_seg) + 1 + len(payload_seg)].encode("ascii")
        if not key.algorithm.verify(signing_input, key.verify_key, signature):
            raise TokenInvalid("The token's signature does not verify.")

        return self._check_claims(_json_object(_segment(payload_seg, "payload"), "payload"), kid)

    def _check_claims(self, claims: dict[str, Any], kid: str) -> AccessClaims:
        settings = self._settings
        exp = _numeric_date(claims, "exp")
        nbf = _numeric_date(claims, "nbf")
        iat = _numeric_date(claims, "iat")
        if claims.get("iss") != settings.issuer:
            raise TokenInvalid("The token's issuer is not accepted.")
        aud = claims.get("aud")
        if isinstance(aud, list) and all(isinstance(a, str) for a in aud):
            aud = tuple(aud)
            if settings.audience not in aud:
                raise TokenInvalid("The token's audience is not accepted.")
        elif aud != settings.audience:
            raise TokenInvalid("The token's audience is not accepted.")
        iat_us = claims.get("iat_us", 0)
        # Optional (tokens of other issuers lack it); when present it must agree with iat.
        if "iat_us" in claims and (type(iat_us) is not int or iat_us // MICROS != iat):
            raise TokenInvalid("The token's iat_us does not match its iat.")
        result = AccessClaims(
            sub=_string_claim(claims, "sub"),
            role=_string_claim(claims, "role"),
            sid=_string_claim(claims, "sid"),
            jti=_string_claim(claims, "jti"),
            iat=iat,
            nbf=nbf,
            exp=exp,
            iss=settings.issuer,
            aud=aud,
            kid=kid,
            extra={k: v for k, v in claims.items() if k not in RESERVED_CLAIMS},
            jkt=_confirmation(claims),
            iat_us=iat_us,
        )
        now = self._clock()
        if exp + settings.leeway <= now:
            raise TokenExpired()
        if nbf - settings.leeway > now:
            raise TokenInvalid("The token is not valid yet.")
        if iat - settings.leeway > now:
            raise TokenInvalid("The token was issued in the future.")
        return result

    def clear_cache(self) -> None:
        self._cache.clear()
