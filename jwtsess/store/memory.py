"""MemoryStore: the embedded default for a single process, and the readable spec.

Same semantics as RedisStore's Lua scripts, held to them by the contract suite
and by the stateful model test (tests/test_store_model.py), which drives both
with the same random operation sequences. Each method runs without an
``await`` inside its critical section, so on one event loop every state change
is atomic. State is bounded: expired sessions are swept at most once a minute
(by the caller's clock), and feed entries are trimmed once their ``until``
passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..access import MICROS
from ..errors import DPoPProofInvalid, RateLimited, RefreshReused, SessionNotFound
from ..sessions import (
    KEY_BINDING_PREFIX,
    ClientMetadata,
    SessionGrant,
    SessionInfo,
    SessionPolicy,
    session_expiry,
)
from .base import (
    GRACE_ANSWERS_SPENT,
    REVOKE_SESSION,
    REVOKE_TOKEN,
    REVOKE_USER,
    NewSession,
    Revocation,
    RevocationKind,
    SessionStore,
)
from .memory_feed import MemoryFeed

SWEEP_INTERVAL = 60.0


def retry_seconds(ms: int) -> int:
    """A ``Retry-After`` in whole seconds (at least 1) for ``ms`` milliseconds."""
    return max(1, -(-ms // 1000))


@dataclass(slots=True)
class _Session:
    """One session; every instant and duration in whole milliseconds, as in Redis."""

    sid: str
    user_id: str
    role: str
    extra_claims: Mapping[str, Any]
    generation: int
    rotated_at: int
    created_at: int
    last_used_at: int
    absolute_expires_at: int
    idle_ttl: int
    user_agent: str | None
    ip: str | None
    binding: str
    grace_answers: int = 0  # given for the current generation
    window_end: int = 0  # the rate-limit window and what it counted
    window_count: int = 0

    @property
    def expires_at(self) -> int:
        return session_expiry(self.absolute_expires_at, self.last_used_at, self.idle_ttl)

    def info(self) -> SessionInfo:
        return SessionInfo(
            sid=self.sid,
            user_id=self.user_id,
            role=self.role,
            extra_claims=self.extra_claims,
            generation=self.generation,
            created_at=self.created_at / 1000,
            last_used_at=self.last_used_at / 1000,
            expires_at=self.expires_at / 1000,
            absolute_expires_at=self.absolute_expires_at / 1000,
            user_agent=self.user_agent,
            ip=self.ip,
            binding=self.binding,
        )


def _ms(seconds: float) -> int:
    # Every instant goes through whole milliseconds, as in Redis, so both stores
    # answer alike (the model test compares them exactly).
    return round(seconds * 1000)


class MemoryStore(MemoryFeed, SessionStore):
    """Sessions and the revocation feed in this process's memory."""

    def __init__(self) -> None:
        super().__init__()
        self._sessions: dict[str, _Session] = {}
        self._by_user: dict[str, set[str]] = {}
        self._user_not_before: dict[str, tuple[int, int]] = {}  # user -> (nbf µs, until ms)
        self._next_sweep = 0.0

    # -- helpers (t: now in ms) ------------------------------------------------------

    def _live(self, sid: str, t: int) -> _Session | None:
        session = self._sessions.get(sid)
        if session is not None and session.expires_at <= t:
            self._drop(session)
            return None
        return session

    def _drop(self, session: _Session) -> None:
        self._sessions.pop(session.sid, None)
        sids = self._by_user.get(session.user_id)
        if sids is not None:
            sids.discard(session.sid)
            if not sids:
                del self._by_user[session.user_id]

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        t = _ms(now)
        for session in [s for s in self._sessions.values() if s.expires_at <= t]:
            self._drop(session)
        for user, (_, until) in list(self._user_not_before.items()):
            if until <= t:
                del self._user_not_before[user]
        self._sweep_feed(now)

    def _not_before(self, user_id: str, t: int) -> int:
        entry = self._user_not_before.get(user_id)
        return entry[0] if entry is not None and entry[1] > t else 0

    def _revocation_until(self, user_id: str, t: int, ttl: int) -> int:
        # A session's tokens carry iat_us <= max(now, the user's not-before):
        # its revocation outlives them all.
        return max(t, -(-self._not_before(user_id, t) // 1000)) + ttl

    def _publish(self, kind: RevocationKind, subject: str, until_ms: int, nbf: int = 0) -> None:
        self._append(Revocation(kind, subject, until_ms / 1000, nbf))

    def _end(self, session: _Session, t: int, ttl: int) -> None:
        """Drop a session and revoke its access tokens."""
        self._drop(session)
        self._publish(REVOKE_SESSION, session.sid, self._revocation_until(session.user_id, t, ttl))

    def _grant(
        self, outcome: Literal["created", "rotated", "grace"], session: _Session, t: int
    ) -> SessionGrant:
        return SessionGrant(outcome, session.info(), self._not_before(session.user_id, t))

    # -- sessions ------------------------------------------------------------------

    async def create(
        self, session: NewSession, *, now: float, absolute_ttl: float, idle_ttl: float
    ) -> SessionGrant:
        self._sweep(now)
        t = _ms(now)
        stored = _Session(
            sid=session.sid,
            user_id=session.user_id,
            role=session.role,
            extra_claims=dict(session.extra_claims),
            generation=0,
            rotated_at=t,
            created_at=t,
            last_used_at=t,
            absolute_expires_at=t + _ms(absolute_ttl),
            idle_ttl=_ms(idle_ttl),
            user_agent=session.metadata.user_agent,
            ip=session.metadata.ip,
            binding=session.binding,
        )
        self._sessions[session.sid] = stored
        self._by_user.setdefault(session.user_id, set()).add(session.sid)
        return self._grant("created", stored, t)

    async def rotate(
        self,
        sid: str,
        generation: int,
        *,
        now: float,
        policy: SessionPolicy,
        metadata: ClientMetadata,
        revocation_ttl: float,
        binding: str = "",
        address_retry_after: float = 0.0,
    ) -> SessionGrant:
        t = _ms(now)
        session = self._live(sid, t)
        if session is None:
            raise SessionNotFound()
        # 1. The generation decides, before any limit: theft is always detected.
        outcome: Literal["rotated", "grace"]
        if generation == session.generation:
            if session.binding.startswith(KEY_BINDING_PREFIX) and binding != session.binding:
                raise DPoPProofInvalid("The session is bound to a key: send its proof.")
            outcome = "rotated"
        elif (
            generation == session.generation - 1
            and t - session.rotated_at < _ms(policy.grace)
            and binding == session.binding
        ):
            if session.grace_answers >= policy.grace_answers:
                raise RateLimited(GRACE_ANSWERS_SPENT, retry_after=1)
            outcome = "grace"
        else:
            self._end(session, t, _ms(revocation_ttl))
            raise RefreshReused(sid=sid, user_id=session.user_id)
        # 2. The limits, for a request that may go ahead. Refused requests do not count.
        window = _ms(policy.refresh_window)
        if session.window_end <= t:
            session.window_end, session.window_count = (t // window + 1) * window, 0
        if session.window_count >= policy.refresh_limit:
            raise RateLimited(retry_after=retry_seconds(session.window_end - t))
        if address_retry_after > 0:
            raise RateLimited(retry_after=retry_seconds(_ms(address_retry_after)))
        session.window_count += 1
        # 3. Commit.
        if outcome == "rotated":
            session.generation += 1
            session.rotated_at = t
            session.binding = binding
            session.grace_answers = 0
        else:
            session.grace_answers += 1
        session.last_used_at = t
        if metadata.user_agent is not None:
            session.user_agent = metadata.user_agent
        if metadata.ip is not None:
            session.ip = metadata.ip
        return self._grant(outcome, session, t)

    async def get(self, sid: str, *, now: float) -> SessionInfo | None:
        session = self._live(sid, _ms(now))
        return session.info() if session is not None else None

    async def list_for_user(self, user_id: str, *, now: float) -> list[SessionInfo]:
        t = _ms(now)
        live = [self._live(sid, t) for sid in sorted(self._by_user.get(user_id, ()))]
        return sorted(
            (s.info() for s in live if s is not None), key=lambda s: (s.created_at, s.sid)
        )

    async def update_claims(
        self, sid: str, role: str, extra_claims: Mapping[str, Any], *, now: float
    ) -> bool:
        session = self._live(sid, _ms(now))
        if session is None:
            return False
        session.role, session.extra_claims = role, dict(extra_claims)
        return True

    # -- revocation ------------------------------------------------------------------

    async def revoke_session(
        self, sid: str, *, now: float, revocation_ttl: float
    ) -> SessionInfo | None:
        t, ttl = _ms(now), _ms(revocation_ttl)
        session = self._live(sid, t)
        if session is None:
            # Written even so: the session's access tokens may still be live.
            self._publish(REVOKE_SESSION, sid, t + ttl)
            return None
        info = session.info()
        self._end(session, t, ttl)
        return info

    async def logout_others(self, sid: str, *, now: float, revocation_ttl: float) -> list[str]:
        t, ttl = _ms(now), _ms(revocation_ttl)
        session = self._live(sid, t)
        if session is None:
            raise SessionNotFound()
        ended = []
        for other in sorted(self._by_user.get(session.user_id, ())):
            if other != sid:
                self._end(self._sessions[other], t, ttl)
                ended.append(other)
        return ended

    def _revoke_user(self, user_id: str, now: float, ttl: int) -> None:
        # Strictly increasing, at most one microsecond past the clock per
        # revocation: a token issued right after one carries iat_us equal to its
        # not-before and must still be caught by the next. A revocation takes far
        # longer than a microsecond, so the sequence never outruns the clock.
        t = _ms(now)
        not_before = max(int(now * MICROS) + 1, self._not_before(user_id, t) + 1)
        until = -(-not_before // 1000) + ttl
        self._user_not_before[user_id] = (not_before, until)
        self._publish(REVOKE_USER, user_id, until, not_before)

    async def logout_all(
        self, user_id: str, *, now: float, revocation_ttl: float, sid: str | None = None
    ) -> list[str] | None:
        t, ttl = _ms(now), _ms(revocation_ttl)
        if sid is not None:
            own = self._live(sid, t)
            if own is None or own.user_id != user_id:
                return None
        self._revoke_user(user_id, now, ttl)
        sids = sorted(self._by_user.get(user_id, ()))
        for ended in sids:
            # Exact, whatever the iat: every token of an ended session is revoked.
            self._end(self._sessions[ended], t, ttl)
        return sids

    async def reissue(
        self,
        user_id: str,
        *,
        now: float,
        revocation_ttl: float,
        role: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> None:
        t = _ms(now)
        self._revoke_user(user_id, now, _ms(revocation_ttl))
        for sid in sorted(self._by_user.get(user_id, ())):
            session = self._live(sid, t)
            if session is None:
                continue
            if role is not None:
                session.role = role
            if extra_claims is not None:
                session.extra_claims = dict(extra_claims)

    async def revoke_token(self, jti: str, *, now: float, until: float) -> None:
        self._publish(REVOKE_TOKEN, jti, _ms(until))
