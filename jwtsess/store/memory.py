"""MemoryStore: the embedded default for a single process.

Same semantics as RedisStore, checked by the same contract suite. Each method
runs without an ``await`` inside its critical section, so on one event loop
every state change is atomic. State is bounded: expired sessions are swept
at most once a minute (by the caller's clock), and feed entries are trimmed
once their ``until`` passes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import RefreshReused, SessionNotFound
from ..sessions import ClientMetadata, Rotation, SessionInfo
from .base import (
    REVOKE_SESSION,
    REVOKE_TOKEN,
    REVOKE_USER,
    FeedBatch,
    NewSession,
    Revocation,
    SessionStore,
)

SWEEP_INTERVAL = 60.0


@dataclass(slots=True)
class _Session:
    sid: str
    user_id: str
    role: str
    extra_claims: Mapping[str, Any]
    generation: int
    rotated_at: float
    created_at: float
    last_used_at: float
    absolute_expires_at: float
    idle_ttl: float
    user_agent: str | None
    ip: str | None

    @property
    def expires_at(self) -> float:
        return min(self.absolute_expires_at, self.last_used_at + self.idle_ttl)

    def info(self) -> SessionInfo:
        return SessionInfo(
            sid=self.sid,
            user_id=self.user_id,
            role=self.role,
            extra_claims=self.extra_claims,
            generation=self.generation,
            created_at=self.created_at,
            last_used_at=self.last_used_at,
            expires_at=self.expires_at,
            absolute_expires_at=self.absolute_expires_at,
            user_agent=self.user_agent,
            ip=self.ip,
        )


class MemoryStore(SessionStore):
    """Sessions and the revocation feed in this process's memory."""

    def __init__(self) -> None:
        self._sessions: dict[str, _Session] = {}
        self._by_user: dict[str, set[str]] = {}
        self._user_not_before: dict[str, tuple[int, float]] = {}  # user -> (nbf, until)
        self._feed: deque[tuple[int, Revocation]] = deque()
        self._last_id = 0
        self._max_trimmed_id = 0
        self._next_sweep = 0.0
        self._wakeup: asyncio.Event | None = None
        self._buckets: dict[str, tuple[float, int]] = {}  # bucket -> (window end, count)
        self._once: dict[str, float] = {}  # claim_once key -> until

    # -- helpers -------------------------------------------------------------------

    def _live(self, sid: str, now: float) -> _Session | None:
        session = self._sessions.get(sid)
        if session is not None and session.expires_at <= now:
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
        for session in [s for s in self._sessions.values() if s.expires_at <= now]:
            self._drop(session)
        for user, (_, until) in list(self._user_not_before.items()):
            if until <= now:
                del self._user_not_before[user]
        self._trim(now)
        for bucket in [b for b, (end, _) in self._buckets.items() if end <= now]:
            del self._buckets[bucket]
        for key in [k for k, until in self._once.items() if until <= now]:
            del self._once[key]

    def _not_before(self, user_id: str, now: float) -> int:
        entry = self._user_not_before.get(user_id)
        return entry[0] if entry is not None and entry[1] > now else 0

    def _publish(self, revocation: Revocation) -> None:
        self._last_id += 1
        self._feed.append((self._last_id, revocation))
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def _trim(self, now: float) -> None:
        while self._feed and self._feed[0][1].until <= now:
            self._max_trimmed_id = self._feed.popleft()[0]

    # -- sessions ------------------------------------------------------------------

    async def create(
        self, session: NewSession, *, now: float, absolute_ttl: float, idle_ttl: float
    ) -> int:
        self._sweep(now)
        self._sessions[session.sid] = _Session(
            sid=session.sid,
            user_id=session.user_id,
            role=session.role,
            extra_claims=dict(session.extra_claims),
            generation=0,
            rotated_at=now,
            created_at=now,
            last_used_at=now,
            absolute_expires_at=now + absolute_ttl,
            idle_ttl=idle_ttl,
            user_agent=session.metadata.user_agent,
            ip=session.metadata.ip,
        )
        self._by_user.setdefault(session.user_id, set()).add(session.sid)
        return self._not_before(session.user_id, now)

    async def rotate(
        self,
        sid: str,
        generation: int,
        *,
        now: float,
        grace: float,
        metadata: ClientMetadata,
        revocation_ttl: float,
    ) -> Rotation:
        session = self._live(sid, now)
        if session is None:
            raise SessionNotFound()
        if generation == session.generation:
            session.generation += 1
            session.rotated_at = now
            outcome: Any = "rotated"
        elif generation == session.generation - 1 and now - session.rotated_at < grace:
            outcome = "grace"
        else:
            self._drop(session)
            self._publish(Revocation(REVOKE_SESSION, sid, now + revocation_ttl))
            raise RefreshReused(sid=sid, user_id=session.user_id)
        session.last_used_at = now
        if metadata.user_agent is not None:
            session.user_agent = metadata.user_agent
        if metadata.ip is not None:
            session.ip = metadata.ip
        return Rotation(outcome, session.info(), self._not_before(session.user_id, now))

    async def get(self, sid: str, *, now: float) -> SessionInfo | None:
        session = self._live(sid, now)
        return session.info() if session is not None else None

    async def list_for_user(self, user_id: str, *, now: float) -> list[SessionInfo]:
        live = [self._live(sid, now) for sid in list(self._by_user.get(user_id, ()))]
        return sorted((s.info() for s in live if s is not None), key=lambda s: s.created_at)

    async def update_claims(
        self, sid: str, role: str, extra_claims: Mapping[str, Any], *, now: float
    ) -> bool:
        session = self._live(sid, now)
        if session is None:
            return False
        session.role, session.extra_claims = role, dict(extra_claims)
        return True

    # -- revocation ------------------------------------------------------------------

    async def revoke_session(
        self, sid: str, *, now: float, revocation_ttl: float
    ) -> SessionInfo | None:
        # The revocation is written even if the session has already ended:
        # its access tokens may still be live.
        session = self._live(sid, now)
        self._publish(Revocation(REVOKE_SESSION, sid, now + revocation_ttl))
        if session is None:
            return None
        self._drop(session)
        return session.info()

    async def revoke_other_sessions(
        self, sid: str, *, now: float, revocation_ttl: float
    ) -> list[str]:
        session = self._live(sid, now)
        if session is None:
            raise SessionNotFound()
        ended = []
        for other in sorted(self._by_user.get(session.user_id, ())):
            if other != sid:
                self._drop(self._sessions[other])
                self._publish(Revocation(REVOKE_SESSION, other, now + revocation_ttl))
                ended.append(other)
        return ended

    async def revoke_user(
        self,
        user_id: str,
        *,
        now: float,
        revocation_ttl: float,
        end_sessions: bool,
        role: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> list[str]:
        # Strictly increasing: a token issued after a revocation in the same
        # second carries iat == the previous not-before, and must still be caught.
        not_before = max(int(now) + 1, self._not_before(user_id, now) + 1)
        until = not_before + revocation_ttl
        self._user_not_before[user_id] = (not_before, until)
        self._publish(Revocation(REVOKE_USER, user_id, until, not_before))
        sids = sorted(self._by_user.get(user_id, ()))
        if end_sessions:
            for sid in sids:
                self._drop(self._sessions[sid])
                # Exact, whatever the iat: every token of an ended session is revoked.
                self._publish(Revocation(REVOKE_SESSION, sid, now + revocation_ttl))
            return sids
        for sid in sids:
            session = self._sessions[sid]
            if role is not None:
                session.role = role
            if extra_claims is not None:
                session.extra_claims = dict(extra_claims)
        return []

    async def revoke_token(self, jti: str, *, now: float, until: float) -> None:
        self._publish(Revocation(REVOKE_TOKEN, jti, until))

    # -- rate limiting -----------------------------------------------------------------

    async def hit_rate_limit(
        self, buckets: Sequence[str], *, now: float, limit: int, window: float
    ) -> float:
        self._sweep(now)
        retry_after = 0.0
        for bucket in buckets:
            end, count = self._buckets.get(bucket, (0.0, 0))
            if end <= now:
                end, count = (now // window + 1) * window, 0
            self._buckets[bucket] = (end, count + 1)
            if count + 1 > limit:
                retry_after = max(retry_after, end - now)
        return retry_after

    async def refund_rate_limit(self, buckets: Sequence[str], *, now: float, window: float) -> None:
        end_of_window = (now // window + 1) * window
        for bucket in buckets:
            end, count = self._buckets.get(bucket, (0.0, 0))
            if end == end_of_window and end > now and count > 0:
                self._buckets[bucket] = (end, count - 1)

    # -- one-time values -----------------------------------------------------------------

    async def claim_once(self, key: str, *, now: float, until: float) -> bool:
        self._sweep(now)
        held = self._once.get(key)
        if held is not None and held > now:
            return False
        self._once[key] = until
        return True

    # -- the feed --------------------------------------------------------------------

    async def feed_snapshot(self, *, now: float) -> FeedBatch:
        self._trim(now)
        return FeedBatch([r for _, r in self._feed], str(self._last_id), reset=True)

    async def feed_resume(self, cursor: str, *, now: float) -> FeedBatch:
        after = int(cursor)
        if self._max_trimmed_id > after:
            return await self.feed_snapshot(now=now)
        return FeedBatch([r for i, r in self._feed if i > after], str(self._last_id))

    async def feed_wait(self, cursor: str, *, block: float) -> FeedBatch:
        after = int(cursor)
        if self._last_id <= after:
            if self._wakeup is None:
                self._wakeup = asyncio.Event()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=block)
            except TimeoutError:
                return FeedBatch([], cursor)
        return FeedBatch([r for i, r in self._feed if i > after], str(self._last_id))

    async def trim_feed(self, *, now: float) -> int:
        self._trim(now)
        return len(self._feed)
