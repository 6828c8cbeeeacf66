"""Issuer: login, refresh with reuse detection, logout and friends.

The issuer owns policy (lifetimes, grace, claims); the store owns state and
makes each change atomic. A refresh is: check the refresh token's MAC (no
store call for garbage), one store round trip to check-and-rotate, then sign.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .access import AccessClaims, AccessTokenSigner, check_extra_claims
from .audit import AuditEvent, AuditEventName, AuditHook, Auditor
from .clock import Clock, system_clock
from .errors import AuthError, RefreshReused, SessionNotFound, StoreUnavailable
from .keyring import KeyRing
from .metrics import MetricsSink
from .mirror import RevocationMirror
from .refresh_token import decode_refresh_token, encode_refresh_token, is_session_id, new_session_id
from .sessions import ClientMetadata, SessionInfo, SessionPolicy, TokenPair
from .settings import TokenSettings
from .store.base import NewSession, SessionStore

MAX_USER_ID_LENGTH = 256

logger = logging.getLogger("jwtsess.issuer")


@dataclass(frozen=True, slots=True)
class UserClaims:
    """What a claims loader returns for a user: the claims the next token carries."""

    role: str
    extra_claims: Mapping[str, Any] = field(default_factory=dict)


#: ``async (user_id) -> UserClaims | None``; None means the user is gone.
ClaimsLoader = Callable[[str], Awaitable[UserClaims | None]]


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: no token or JSON answer could carry them
        return False
    return True


def _check_identity(user_id: object, role: object) -> None:
    if not isinstance(user_id, str) or not 0 < len(user_id) <= MAX_USER_ID_LENGTH:
        raise ValueError(f"user_id must be a non-empty string of at most {MAX_USER_ID_LENGTH}")
    if not isinstance(role, str) or not role:
        raise ValueError("role must be a non-empty string")
    if not (_utf8(user_id) and _utf8(role)):
        raise ValueError("user_id and role must be valid UTF-8 text")


class Issuer:
    """Opens, rotates and ends sessions.

    :param keyring: signs access tokens and MACs refresh tokens.
    :param settings: access-token settings (issuer, audience, lifetime, leeway).
    :param store: where sessions and the revocation feed live.
    :param policy: session lifetimes and the refresh grace window.
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

    def __init__(
        self,
        keyring: KeyRing,
        settings: TokenSettings,
        store: SessionStore,
        *,
        policy: SessionPolicy | None = None,
        claims_loader: ClaimsLoader | None = None,
        clock: Clock = system_clock,
        audit_hook: AuditHook | None = None,
        mirror: RevocationMirror | None = None,
        metrics: MetricsSink | None = None,
    ) -> None:
        if settings.access_ttl > keyring.manifest.max_token_ttl:
            raise ValueError(
                f"access_ttl {settings.access_ttl}s exceeds the keyring's max_token_ttl "
                f"{keyring.manifest.max_token_ttl:g}s; raise it in keys/manifest.json"
            )
        self.policy = policy or SessionPolicy()
        if self.policy.absolute_ttl > keyring.manifest.max_session_ttl:
            raise ValueError(
                f"absolute_ttl {self.policy.absolute_ttl}s exceeds the keyring's max_session_ttl "
                f"{keyring.manifest.max_session_ttl:g}s; raise it in keys/manifest.json"
            )
        self.keyring = keyring
        self.settings = settings
        self.store = store
        self.claims_loader = claims_loader
        self.clock = clock
        self.auditor = Auditor(audit_hook)
        self.signer = AccessTokenSigner(keyring, settings, clock=clock)
        self.mirror = mirror
        self.metrics = metrics
        # Long enough to outlive every access token issued before a revocation:
        # lifetime, the verifier's leeway, and one second of iat rounding.
        self.revocation_ttl = settings.access_ttl + settings.leeway + 1

    async def _sync_mirror(self) -> None:
        if self.mirror is None:
            return
        try:
            await self.mirror.sync()
        except StoreUnavailable:
            # The revocation itself was committed; the mirror's feed task will
            # deliver it once the store answers again.
            logger.warning("mirror could not catch up after a revocation; the feed will")

    # -- tokens ----------------------------------------------------------------------

    def _pair(
        self,
        session: SessionInfo,
        role: str,
        extra: Mapping[str, Any],
        nbf: int,
        outcome: str = "login",
    ) -> TokenPair:
        token, claims = self.signer.issue(
            session.user_id, role, session.sid, extra_claims=extra, not_before=nbf
        )
        refresh = encode_refresh_token(self.keyring.refresh_secret, session.sid, session.generation)
        return TokenPair(
            access_token=token,
            refresh_token=refresh,
            expires_in=claims.exp - int(self.clock()),
            session_id=session.sid,
            claims=claims,
            refresh_expires_at=session.expires_at,
            outcome=outcome,
        )

    async def _audit(
        self,
        event: AuditEventName,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        metadata: ClientMetadata | None = None,
        **details: Any,
    ) -> None:
        await self.auditor.emit(
            AuditEvent(
                event=event,
                at=self.clock(),
                user_id=user_id,
                session_id=session_id,
                ip=metadata.ip if metadata else None,
                user_agent=metadata.user_agent if metadata else None,
                details=details,
            )
        )

    async def login(
        self,
        user_id: str,
        role: str,
        *,
        extra_claims: Mapping[str, Any] | None = None,
        metadata: ClientMetadata | None = None,
    ) -> TokenPair:
        """Open a session for a user the application has authenticated.

        :raises ValueError: on an empty user id or role, or bad extra claims.
        :raises StoreUnavailable: the store could not be reached; no session exists.
        """
        _check_identity(user_id, role)
        extra = check_extra_claims(extra_claims)
        meta = (metadata or ClientMetadata()).bounded()
        sid = new_session_id(user_id)
        now = self.clock()
        nbf = await self.store.create(
            NewSession(sid, user_id, role, extra, meta),
            now=now,
            absolute_ttl=self.policy.absolute_ttl,
            idle_ttl=self.policy.idle_ttl,
        )
        session = SessionInfo(
            sid=sid,
            user_id=user_id,
            role=role,
            extra_claims=extra,
            generation=0,
            created_at=now,
            last_used_at=now,
            expires_at=now + min(self.policy.absolute_ttl, self.policy.idle_ttl),
            absolute_expires_at=now + self.policy.absolute_ttl,
            user_agent=meta.user_agent,
            ip=meta.ip,
        )
        pair = self._pair(session, role, extra, nbf)
        await self._audit("login", user_id=user_id, session_id=sid, metadata=meta)
        return pair

    async def refresh(
        self, refresh_token: str, metadata: ClientMetadata | None = None
    ) -> TokenPair:
        """Rotate a refresh token and issue a fresh pair.

        :raises TokenMalformed: not a refresh token of ours (no store call).
        :raises TokenInvalid: a refresh token of ours whose MAC does not verify (no store call).
        :raises SessionNotFound: the session ended, expired, or its user is gone.
        :raises RefreshReused: theft; the session has been revoked.
        :raises StoreUnavailable: nothing was rotated; retrying with the same token is safe.
        """
        if self.metrics is None:
            return await self._refresh(refresh_token, metadata)
        start = time.perf_counter()
        try:
            pair = await self._refresh(refresh_token, metadata)
        except AuthError as error:
            self.metrics.refreshed(error.code, time.perf_counter() - start)
            raise
        self.metrics.refreshed(pair.outcome, time.perf_counter() - start)
        return pair

    async def _refresh(self, refresh_token: str, metadata: ClientMetadata | None) -> TokenPair:
        ref = decode_refresh_token(self.keyring, refresh_token)  # any listed secret
        meta = (metadata or ClientMetadata()).bounded()
        try:
            rotation = await self.store.rotate(
                ref.sid,
                ref.gen,
                now=self.clock(),
                grace=self.policy.grace,
                metadata=meta,
                revocation_ttl=self.revocation_ttl,
            )
        except RefreshReused as exc:
            await self._audit(
                "reuse_detected",
                user_id=exc.user_id,
                session_id=ref.sid,
                metadata=meta,
                generation=ref.gen,
            )
            await self._sync_mirror()
            raise
        session = rotation.session
        role, extra = session.role, session.extra_claims
        if self.claims_loader is not None:
            loaded = await self.claims_loader(session.user_id)
            if loaded is None:
                await self.store.revoke_session(
                    session.sid, now=self.clock(), revocation_ttl=self.revocation_ttl
                )
                await self._sync_mirror()
                await self._audit(
                    "session_revoked",
                    user_id=session.user_id,
                    session_id=session.sid,
                    metadata=meta,
                    reason="user_gone",
                )
                raise SessionNotFound()
            _check_identity(session.user_id, loaded.role)
            new_extra = check_extra_claims(loaded.extra_claims)
            if (loaded.role, new_extra) != (role, dict(extra)):
                await self.store.update_claims(
                    session.sid, loaded.role, new_extra, now=self.clock()
                )
                role, extra = loaded.role, new_extra
        pair = self._pair(session, role, extra, rotation.user_not_before, rotation.outcome)
        await self._audit(
            "refresh" if rotation.outcome == "rotated" else "refresh_grace",
            user_id=session.user_id,
            session_id=session.sid,
            metadata=meta,
            generation=session.generation,
        )
        return pair

    # -- ending sessions ---------------------------------------------------------------

    async def logout(self, sid: str, *, metadata: ClientMetadata | None = None) -> bool:
        """End one session and revoke its access tokens. False if it was not live."""
        if not is_session_id(sid):
            return False
        ended = await self.store.revoke_session(
            sid, now=self.clock(), revocation_ttl=self.revocation_ttl
        )
        await self._sync_mirror()
        await self._audit(
            "logout", user_id=ended.user_id if ended else None, session_id=sid, metadata=metadata
        )
        return ended is not None

    async def revoke_session(
        self, user_id: str, sid: str, *, metadata: ClientMetadata | None = None
    ) -> bool:
        """End ``sid`` if, and only if, it belongs to ``user_id`` (a user revoking a device)."""
        if not is_session_id(sid):
            return False
        session = await self.store.get(sid, now=self.clock())
        if session is None or session.user_id != user_id:
            return False
        await self.store.revoke_session(sid, now=self.clock(), revocation_ttl=self.revocation_ttl)
        await self._sync_mirror()
        await self._audit("session_revoked", user_id=user_id, session_id=sid, metadata=metadata)
        return True

    async def logout_others(self, sid: str, *, metadata: ClientMetadata | None = None) -> list[str]:
        """End every other session of ``sid``'s user. Returns the ended sids.

        :raises SessionNotFound: ``sid`` itself is not live.
        """
        if not is_session_id(sid):
            raise SessionNotFound()
        ended = await self.store.revoke_other_sessions(
            sid, now=self.clock(), revocation_ttl=self.revocation_ttl
        )
        await self._sync_mirror()
        await self._audit("logout_others", session_id=sid, metadata=metadata, ended=len(ended))
        return ended

    async def logout_everywhere(
        self, user_id: str, *, metadata: ClientMetadata | None = None
    ) -> list[str]:
        """End every session of the user and revoke every access token issued so far."""
        ended = await self.store.revoke_user(
            user_id, now=self.clock(), revocation_ttl=self.revocation_ttl, end_sessions=True
        )
        await self._sync_mirror()
        await self._audit("logout_all", user_id=user_id, metadata=metadata, ended=len(ended))
        return ended

    async def reissue(
        self,
        user_id: str,
        *,
        role: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> None:
        """Revoke the user's access tokens but keep the sessions.

        The next refresh issues tokens with the new ``role``/``extra_claims``
        (when given, they replace the claims stored with every session).
        """
        if role is not None:
            _check_identity(user_id, role)
        extra = check_extra_claims(extra_claims) if extra_claims is not None else None
        await self.store.revoke_user(
            user_id,
            now=self.clock(),
            revocation_ttl=self.revocation_ttl,
            end_sessions=False,
            role=role,
            extra_claims=extra,
        )
        await self._sync_mirror()
        await self._audit("reissue", user_id=user_id, role_changed=role is not None)

    async def revoke_access_token(self, claims: AccessClaims) -> None:
        """Revoke one access token until it expires."""
        await self.store.revoke_token(
            claims.jti, now=self.clock(), until=claims.exp + self.settings.leeway
        )
        await self._sync_mirror()
        await self._audit("token_revoked", user_id=claims.sub, session_id=claims.sid)

    # -- reading -------------------------------------------------------------------------

    async def sessions(self, user_id: str) -> list[SessionInfo]:
        """The user's live sessions, oldest first."""
        return await self.store.list_for_user(user_id, now=self.clock())

    async def session(self, sid: str) -> SessionInfo | None:
        """One live session, or None."""
        if not is_session_id(sid):
            return None
        return await self.store.get(sid, now=self.clock())
