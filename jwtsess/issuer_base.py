"""The Issuer's state, and what it does besides issuing: ending sessions, reading them.

``Issuer`` (issuer.py) adds login and refresh. Every revocation goes through
``_revoke``: the store call (one atomic step that also writes the feed), this
process's mirror, the audit event.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .access import AccessClaims, AccessTokenSigner, check_extra_claims
from .audit import AuditEvent, AuditEventName, AuditHook, Auditor
from .clock import Clock, system_clock
from .errors import SessionNotFound, StoreUnavailable
from .keyring import KeyRing
from .limits import AddressLimiter
from .metrics import MetricsSink
from .mirror import RevocationMirror
from .refresh_token import is_session_id
from .sessions import ClientMetadata, SessionInfo, SessionPolicy, SessionStatus
from .settings import TokenSettings
from .store.base import SessionStore

if TYPE_CHECKING:
    from .issuer import ClaimsLoader

MAX_USER_ID_LENGTH = 256

logger = logging.getLogger("jwtsess.issuer")

R = TypeVar("R")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: no token or JSON answer could carry them
        return False
    return True


def check_identity(user_id: object, role: object) -> None:
    if not isinstance(user_id, str) or not 0 < len(user_id) <= MAX_USER_ID_LENGTH:
        raise ValueError(f"user_id must be a non-empty string of at most {MAX_USER_ID_LENGTH}")
    if not isinstance(role, str) or not role:
        raise ValueError("role must be a non-empty string")
    if not (_utf8(user_id) and _utf8(role)):
        raise ValueError("user_id and role must be valid UTF-8 text")


class IssuerBase:
    """State, mirror sync, audit, and the operations that end or read sessions."""

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
        self._policy = policy or SessionPolicy()
        if self._policy.absolute_ttl > keyring.manifest.max_session_ttl:
            raise ValueError(
                f"absolute_ttl {self._policy.absolute_ttl}s exceeds the keyring's max_session_ttl "
                f"{keyring.manifest.max_session_ttl:g}s; raise it in keys/manifest.json"
            )
        self._keyring = keyring
        self._settings = settings
        self._store = store
        self._claims_loader = claims_loader
        self._clock = clock
        self._auditor = Auditor(audit_hook)
        self._signer = AccessTokenSigner(keyring, settings, clock=clock)
        self._mirror = mirror
        self._metrics = metrics
        limit = self._policy.address_refresh_limit
        self._addresses = (
            AddressLimiter(limit, self._policy.refresh_window) if limit is not None else None
        )
        # Long enough to outlive every access token issued before a revocation:
        # lifetime, the verifier's leeway, and one second of iat rounding.
        self._revocation_ttl = settings.access_ttl + settings.leeway + 1

    @property
    def settings(self) -> TokenSettings:
        return self._settings

    @property
    def policy(self) -> SessionPolicy:
        return self._policy

    @property
    def revocation_ttl(self) -> int:
        """Seconds a revocation lasts: every token it covers has expired by then."""
        return self._revocation_ttl

    async def _sync_mirror(self) -> None:
        if self._mirror is None:
            return
        try:
            await self._mirror.sync()
        except StoreUnavailable:
            # The revocation itself was committed; the mirror's feed task will
            # deliver it once the store answers again.
            logger.warning("mirror could not catch up after a revocation; the feed will")

    async def _revoke(
        self,
        change: Awaitable[R],
        event: AuditEventName,
        audit: Callable[[R], dict[str, Any]],
        metadata: ClientMetadata | None = None,
    ) -> R:
        """A revocation: the store call, then this process's mirror, then the audit event."""
        result = await change
        await self._sync_mirror()
        await self._audit(event, metadata=metadata, **audit(result))
        return result

    async def _audit(
        self,
        event: AuditEventName,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        metadata: ClientMetadata | None = None,
        **details: Any,
    ) -> None:
        await self._auditor.emit(
            AuditEvent(
                event=event,
                at=self._clock(),
                user_id=user_id,
                session_id=session_id,
                ip=metadata.ip if metadata else None,
                user_agent=metadata.user_agent if metadata else None,
                details=details,
            )
        )

    # -- ending sessions ---------------------------------------------------------------

    async def logout(self, sid: str, *, metadata: ClientMetadata | None = None) -> bool:
        """End one session and revoke its access tokens. False if it was not live."""
        if not is_session_id(sid):
            return False
        ended = await self._revoke(
            self._store.revoke_session(sid, now=self._clock(), revocation_ttl=self._revocation_ttl),
            "logout",
            lambda info: {"user_id": info.user_id if info else None, "session_id": sid},
            metadata,
        )
        return ended is not None

    async def revoke_session(
        self, user_id: str, sid: str, *, metadata: ClientMetadata | None = None
    ) -> bool:
        """End ``sid`` if, and only if, it belongs to ``user_id`` (a user revoking a device)."""
        if not is_session_id(sid):
            return False
        session = await self._store.get(sid, now=self._clock())
        if session is None or session.user_id != user_id:
            return False
        await self._revoke(
            self._store.revoke_session(sid, now=self._clock(), revocation_ttl=self._revocation_ttl),
            "session_revoked",
            lambda _: {"user_id": user_id, "session_id": sid},
            metadata,
        )
        return True

    async def logout_others(self, sid: str, *, metadata: ClientMetadata | None = None) -> list[str]:
        """End every other session of ``sid``'s user. Returns the ended sids.

        :raises SessionNotFound: ``sid`` itself is not live.
        """
        if not is_session_id(sid):
            raise SessionNotFound()
        return await self._revoke(
            self._store.logout_others(sid, now=self._clock(), revocation_ttl=self._revocation_ttl),
            "logout_others",
            lambda ended: {"session_id": sid, "ended": len(ended)},
            metadata,
        )

    async def logout_all(
        self,
        user_id: str,
        *,
        session_id: str | None = None,
        metadata: ClientMetadata | None = None,
    ) -> list[str]:
        """End every session of the user and revoke every access token issued so far.

        :param session_id: the caller's own session, when a user logs out
            everywhere: if it has already ended (another logout-all won the
            race), nothing happens and ``[]`` is returned.
        :returns: the ended sids.
        """
        ended = await self._store.logout_all(
            user_id, now=self._clock(), revocation_ttl=self._revocation_ttl, sid=session_id
        )
        if ended is None:
            return []
        await self._sync_mirror()
        await self._audit(
            "logout_all",
            user_id=user_id,
            session_id=session_id,
            metadata=metadata,
            ended=len(ended),
        )
        return ended

    async def logout_everywhere(
        self, user_id: str, *, metadata: ClientMetadata | None = None
    ) -> list[str]:
        """Deprecated name of ``logout_all``."""
        warnings.warn(
            "Issuer.logout_everywhere is deprecated; use Issuer.logout_all",
            DeprecationWarning,
            stacklevel=2,
        )
        return await self.logout_all(user_id, metadata=metadata)

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
            check_identity(user_id, role)
        extra = check_extra_claims(extra_claims) if extra_claims is not None else None
        await self._revoke(
            self._store.reissue(
                user_id,
                now=self._clock(),
                revocation_ttl=self._revocation_ttl,
                role=role,
                extra_claims=extra,
            ),
            "reissue",
            lambda _: {"user_id": user_id, "role_changed": role is not None},
        )

    async def revoke_access_token(self, claims: AccessClaims) -> None:
        """Revoke one access token until it expires."""
        await self._revoke(
            self._store.revoke_token(
                claims.jti, now=self._clock(), until=claims.exp + self._settings.leeway
            ),
            "token_revoked",
            lambda _: {"user_id": claims.sub, "session_id": claims.sid},
        )

    # -- reading -------------------------------------------------------------------------

    async def sessions(self, user_id: str) -> list[SessionInfo]:
        """The user's live sessions, oldest first."""
        return await self._store.list_for_user(user_id, now=self._clock())

    async def session(self, sid: str) -> SessionInfo | None:
        """One live session, or None."""
        if not is_session_id(sid):
            return None
        return await self._store.get(sid, now=self._clock())

    async def session_status(self, claims: AccessClaims) -> SessionStatus:
        """Where an access token and its session stand, now."""
        session = await self.session(claims.sid)
        return SessionStatus(claims, session, now=self._clock())
