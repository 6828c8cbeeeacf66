"""Issuer: login, refresh with reuse detection, logout and friends.

The issuer owns policy (lifetimes, grace, limits, claims); the store owns state
and makes each change atomic. A refresh is: check the refresh token's MAC (no
store call for garbage), one store round trip to check-and-rotate (reuse
detection first, then the rate limit), then sign. Every entry point (the JSON
route, the OAuth token endpoint, the client) goes through ``Issuer.refresh``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .access import check_extra_claims
from .errors import AuthError, ClaimsUnavailable, RateLimited, RefreshReused, SessionNotFound
from .issuer_base import MAX_USER_ID_LENGTH, IssuerBase, check_identity
from .refresh_token import decode_refresh_token, encode_refresh_token, new_session_id
from .sessions import (
    MAX_BINDING_LENGTH,
    ClientMetadata,
    SessionGrant,
    SessionInfo,
    TokenPair,
    bound_jkt,
    client_fingerprint,
)
from .store.base import NewSession

logger = logging.getLogger("jwtsess.issuer")

__all__ = ["MAX_USER_ID_LENGTH", "ClaimsLoader", "Issuer", "UserClaims"]


@dataclass(frozen=True, slots=True)
class UserClaims:
    """What a claims loader returns for a user: the claims the next token carries."""

    role: str
    extra_claims: Mapping[str, Any] = field(default_factory=dict)


#: ``async (user_id) -> UserClaims | None``; None means the user is gone.
ClaimsLoader = Callable[[str], Awaitable[UserClaims | None]]


async def _load_claims(loader: ClaimsLoader, user_id: str) -> UserClaims | None:
    """The application's loader, its failure turned into ``ClaimsUnavailable``.

    The rotation is committed by now; a 503 lets the same client retry inside
    the grace window, where an unhandled exception would be a 500 whose retry
    after the window counts as theft. One log line, no traceback: the loader's
    exception is the application's to report.
    """
    try:
        return await loader(user_id)
    except Exception as error:
        logger.warning(
            "claims loader failed during a refresh (%s: %s); answered claims_unavailable",
            type(error).__name__,
            error,
        )
        raise ClaimsUnavailable() from None


class Issuer(IssuerBase):
    """Opens, rotates and ends sessions.

    :param keyring: signs access tokens and MACs refresh tokens.
    :param settings: access-token settings (issuer, audience, lifetime, leeway).
    :param store: where sessions and the revocation feed live.
    :param policy: session lifetimes, the refresh grace window and rate limits.
    :param claims_loader: called at every refresh so role changes reach the next
        access token; returning None ends the session.
    :param audit_hook: async callable receiving every ``AuditEvent``.
    :param mirror: this process's revocation mirror; it catches up right after
        every revocation made here, so a logout is enforced in this process
        before the call returns (other processes follow within milliseconds).
    :param metrics: records refresh latency and reuse detections (``jwtsess.metrics``).
    :raises ValueError: if ``settings.access_ttl`` exceeds the keyring's
        ``max_token_ttl``, or ``policy.absolute_ttl`` its ``max_session_ttl``
        (``prune`` would then drop keys or refresh secrets still in use).
    """

    # -- tokens ----------------------------------------------------------------------

    def _pair(self, grant: SessionGrant, role: str, extra: Mapping[str, Any]) -> TokenPair:
        session = grant.session
        # A session bound to a DPoP key: its tokens carry cnf.jkt (RFC 9449 section 6).
        jkt = bound_jkt(session.binding)
        token, claims = self._signer.issue(
            session.user_id,
            role,
            session.sid,
            extra_claims=extra,
            not_before_us=grant.user_not_before_us,
            jkt=jkt,
        )
        refresh = encode_refresh_token(
            self._keyring.refresh_secret, session.sid, session.generation
        )
        return TokenPair(
            access_token=token,
            refresh_token=refresh,
            expires_in=claims.exp - int(self._clock()),
            session_id=session.sid,
            claims=claims,
            refresh_expires_at=session.expires_at,
            token_type="DPoP" if jkt is not None else "Bearer",
            outcome="login" if grant.outcome == "created" else grant.outcome,
        )

    @staticmethod
    def _binding(binding: str | None, meta: ClientMetadata) -> str:
        if binding is None:
            return client_fingerprint(meta.user_agent)
        if not isinstance(binding, str) or len(binding) > MAX_BINDING_LENGTH:
            raise ValueError(f"binding must be a string of at most {MAX_BINDING_LENGTH}")
        return binding

    async def login(
        self,
        user_id: str,
        role: str,
        *,
        extra_claims: Mapping[str, Any] | None = None,
        metadata: ClientMetadata | None = None,
        binding: str | None = None,
    ) -> TokenPair:
        """Open a session for a user the application has authenticated.

        :param binding: the client's binding (``key_binding(jkt)`` binds the
            session to a DPoP key: every refresh must present the same one);
            default: ``client_fingerprint`` of the user agent.
        :raises ValueError: on an empty user id or role, or bad extra claims.
        :raises StoreUnavailable: the store could not be reached; no session exists.
        """
        check_identity(user_id, role)
        extra = check_extra_claims(extra_claims)
        meta = (metadata or ClientMetadata()).bounded()
        sid = new_session_id(user_id)
        grant = await self._store.create(
            NewSession(sid, user_id, role, extra, meta, self._binding(binding, meta)),
            now=self._clock(),
            absolute_ttl=self._policy.absolute_ttl,
            idle_ttl=self._policy.idle_ttl,
        )
        pair = self._pair(grant, role, extra)
        await self._audit("login", user_id=user_id, session_id=sid, metadata=meta)
        return pair

    async def refresh(
        self,
        refresh_token: str,
        metadata: ClientMetadata | None = None,
        *,
        binding: str | None = None,
    ) -> TokenPair:
        """Rotate a refresh token and issue a fresh pair: the one refresh path.

        Reuse detection comes first and nothing switches it off: a stale token
        revokes its session whatever the limits say. Then the limits
        (``SessionPolicy.refresh_limit`` per session, in the store;
        ``address_refresh_limit`` per ``metadata.ip``, in this process).

        :param binding: who is asking: ``key_binding(jkt)`` for a DPoP-bound
            client, else ``client_fingerprint(...)``; default: the fingerprint of
            ``metadata.user_agent``. A grace answer goes only to the binding
            that rotated.
        :raises TokenMalformed: not a refresh token of ours (no store call).
        :raises TokenInvalid: a refresh token of ours whose MAC does not verify (no
            store call), or a key-bound session presented by another binding.
        :raises SessionNotFound: the session ended, expired, or its user is gone.
        :raises RefreshReused: theft; the session has been revoked.
        :raises RateLimited: too many refreshes (``retry_after``); nothing changed.
        :raises StoreUnavailable: nothing was rotated; retrying with the same token is safe.
        """
        if self._metrics is None:
            return await self._refresh(refresh_token, metadata, binding)
        start = time.perf_counter()
        try:
            pair = await self._refresh(refresh_token, metadata, binding)
        except AuthError as error:
            self._metrics.refreshed(error.code, time.perf_counter() - start)
            raise
        self._metrics.refreshed(pair.outcome, time.perf_counter() - start)
        return pair

    async def _refresh(
        self, refresh_token: str, metadata: ClientMetadata | None, binding: str | None
    ) -> TokenPair:
        ref = decode_refresh_token(self._keyring, refresh_token)  # any listed secret
        meta = (metadata or ClientMetadata()).bounded()
        now = self._clock()
        addresses = self._addresses
        try:
            grant = await self._store.rotate(
                ref.sid,
                ref.gen,
                now=now,
                policy=self._policy,
                metadata=meta,
                revocation_ttl=self._revocation_ttl,
                binding=self._binding(binding, meta),
                address_retry_after=addresses.retry_after(meta.ip, now) if addresses else 0.0,
            )
        except RefreshReused as exc:
            await self._sync_mirror()
            await self._audit(
                "reuse_detected",
                user_id=exc.user_id,
                session_id=ref.sid,
                metadata=meta,
                generation=ref.gen,
            )
            raise
        if addresses is not None:
            addresses.count(meta.ip, now)
        session = grant.session
        role, extra = session.role, session.extra_claims
        if self._claims_loader is not None:
            loaded = await _load_claims(self._claims_loader, session.user_id)
            if loaded is None:
                await self._revoke(
                    self._store.revoke_session(
                        session.sid, now=self._clock(), revocation_ttl=self._revocation_ttl
                    ),
                    "session_revoked",
                    lambda _: {
                        "user_id": session.user_id,
                        "session_id": session.sid,
                        "reason": "user_gone",
                    },
                    meta,
                )
                raise SessionNotFound()
            check_identity(session.user_id, loaded.role)
            new_extra = check_extra_claims(loaded.extra_claims)
            if (loaded.role, new_extra) != (role, dict(extra)):
                await self._store.update_claims(
                    session.sid, loaded.role, new_extra, now=self._clock()
                )
                role, extra = loaded.role, new_extra
        pair = self._pair(grant, role, extra)
        await self._audit(
            "refresh" if grant.outcome == "rotated" else "refresh_grace",
            user_id=session.user_id,
            session_id=session.sid,
            metadata=meta,
            generation=session.generation,
        )
        return pair

    # -- operations on a presented refresh token (the OAuth endpoints) ------------------

    async def refresh_token_session(self, refresh_token: str) -> SessionInfo | None:
        """The live session ``refresh_token`` names, if it is the current generation.

        :raises TokenMalformed: not shaped like a refresh token (no store call).
        :raises TokenInvalid: its MAC does not verify (no store call).
        """
        ref = decode_refresh_token(self._keyring, refresh_token)
        session = await self.session(ref.sid)
        return session if session is not None and session.generation == ref.gen else None

    async def revoke_refresh_token(
        self, refresh_token: str, *, metadata: ClientMetadata | None = None
    ) -> bool:
        """End the session ``refresh_token`` names (RFC 7009). False if it was not live.

        :raises TokenMalformed: not shaped like a refresh token (no store call).
        :raises TokenInvalid: its MAC does not verify (no store call).
        """
        ref = decode_refresh_token(self._keyring, refresh_token)
        return await self.logout(ref.sid, metadata=metadata)

    async def claim_once(self, key: str, *, now: float, until: float) -> bool:
        """Record a one-time value (a DPoP proof's ``jti``) in the store until
        ``until``; True the first time, across every process."""
        return await self._store.claim_once(key, now=now, until=until)

    async def rate_limit(self, bucket: str, *, limit: int, window: float) -> None:
        """Count one request in ``bucket`` (fixed windows in the store, shared by every
        process).

        :raises RateLimited: over ``limit`` in the current window (``retry_after`` set).
        """
        retry = await self._store.hit_rate_limit(
            [bucket], now=self._clock(), limit=limit, window=window
        )
        if retry > 0:
            raise RateLimited(retry_after=max(1, math.ceil(retry)))
