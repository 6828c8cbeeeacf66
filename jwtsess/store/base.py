"""The SessionStore contract every backend implements (tests/test_store_contract.py).

A store holds sessions (refresh-token families) and the revocation feed. Every
method that changes state does it in one atomic step, and writes the
revocations that the change causes in that same step. Times are epoch seconds
passed in by the caller (the issuer's clock), never read by the store, so
frozen-time tests and several processes agree on what "now" is.

Failures to reach the backend raise ``StoreUnavailable``; nothing is then
half-written, because each step is atomic.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..sessions import ClientMetadata, Rotation, SessionInfo

#: Revocation kinds in the feed.
REVOKE_TOKEN: Final = "jti"  # one access token
REVOKE_SESSION: Final = "sid"  # every access token of one session
REVOKE_USER: Final = "user"  # every access token of a user issued before ``value2``

RevocationKind = Literal["jti", "sid", "user"]


@dataclass(frozen=True, slots=True)
class Revocation:
    """One feed entry.

    For ``jti`` and ``sid`` entries, ``subject`` is the token or session id.
    For ``user`` entries, ``subject`` is the user id and ``not_before`` the
    instant (whole seconds) before which that user's tokens are revoked.
    ``until`` is when every token the entry could affect has expired; after it,
    the entry is dropped everywhere.
    """

    kind: RevocationKind
    subject: str
    until: float
    not_before: int = 0


@dataclass(frozen=True, slots=True)
class FeedBatch:
    """Entries read from the feed, and the cursor to resume from."""

    entries: Sequence[Revocation]
    cursor: str
    reset: bool = False  # True: ``entries`` is the whole live window, replacing what you had


@dataclass(frozen=True, slots=True)
class NewSession:
    sid: str
    user_id: str
    role: str
    extra_claims: Mapping[str, Any]
    metadata: ClientMetadata


class SessionStore(abc.ABC):
    """Sessions, rotation with reuse detection, and the revocation feed."""

    # -- sessions ----------------------------------------------------------------

    @abc.abstractmethod
    async def create(
        self, session: NewSession, *, now: float, absolute_ttl: float, idle_ttl: float
    ) -> int:
        """Store a new session at generation 0. Returns the user's not-before instant (or 0)."""

    @abc.abstractmethod
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
        """Check-and-rotate in one atomic step.

        - ``generation`` is current: the session moves to ``generation + 1``.
        - ``generation`` is the predecessor and its rotation is at most
          ``grace`` seconds old: nothing changes; the current generation is
          returned (outcome ``"grace"``).
        - any other generation: theft. The session is deleted and a ``sid``
          revocation valid for ``revocation_ttl`` is written; ``RefreshReused``.
        - no such session, or idle/absolute lifetime over: ``SessionNotFound``.

        The idle lifetime is the one the session was created with.
        """

    @abc.abstractmethod
    async def get(self, sid: str, *, now: float) -> SessionInfo | None:
        """The live session ``sid``, or None."""

    @abc.abstractmethod
    async def list_for_user(self, user_id: str, *, now: float) -> list[SessionInfo]:
        """The user's live sessions, oldest first."""

    @abc.abstractmethod
    async def update_claims(
        self, sid: str, role: str, extra_claims: Mapping[str, Any], *, now: float
    ) -> bool:
        """Replace the claims stored with a session (a claims loader changed them)."""

    # -- revocation (each writes the feed in the same step) ------------------------

    @abc.abstractmethod
    async def revoke_session(
        self, sid: str, *, now: float, revocation_ttl: float
    ) -> SessionInfo | None:
        """End one session and revoke its access tokens. Returns it, or None if not live.

        The revocation is written even when the session has already ended,
        because its access tokens may still be live.
        """

    @abc.abstractmethod
    async def revoke_other_sessions(
        self, sid: str, *, now: float, revocation_ttl: float
    ) -> list[str]:
        """End every session of ``sid``'s user except ``sid``. Returns the ended sids."""

    @abc.abstractmethod
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
        """Revoke every access token of the user issued up to now.

        With ``end_sessions`` (logout everywhere) every session ends too and the
        ended sids are returned. Without it (reissue) sessions live on and the
        next refresh issues fresh tokens; ``role``/``extra_claims``, if given,
        replace the claims stored with every session of the user.
        """

    @abc.abstractmethod
    async def revoke_token(self, jti: str, *, now: float, until: float) -> None:
        """Revoke one access token until its expiry."""

    # -- rate limiting ---------------------------------------------------------------

    @abc.abstractmethod
    async def hit_rate_limit(
        self, buckets: Sequence[str], *, now: float, limit: int, window: float
    ) -> float:
        """Count one request in each bucket (fixed windows of ``window`` seconds).

        Returns 0 if every bucket is within ``limit``, else the seconds until the
        fullest bucket's window ends (the ``Retry-After``). Buckets expire with
        their window.
        """

    @abc.abstractmethod
    async def refund_rate_limit(self, buckets: Sequence[str], *, now: float, window: float) -> None:
        """Take back one request counted by ``hit_rate_limit`` at ``now`` (same ``window``).

        Only the window containing ``now`` is touched, a count never goes below
        zero, and a bucket whose window has ended stays gone. For limits that
        count failures: count every attempt atomically, refund the ones that
        succeeded (``LoginLimiter``).
        """

    # -- one-time values -------------------------------------------------------------

    @abc.abstractmethod
    async def claim_once(self, key: str, *, now: float, until: float) -> bool:
        """Record ``key`` until ``until``; True if it was not recorded yet.

        One atomic step, shared by every process (DPoP proof ``jti``s at the
        token endpoints). Entries expire at ``until``.
        """

    # -- the feed ------------------------------------------------------------------

    @abc.abstractmethod
    async def feed_snapshot(self, *, now: float) -> FeedBatch:
        """Every live revocation, and the cursor after the newest (``reset=True``)."""

    @abc.abstractmethod
    async def feed_resume(self, cursor: str, *, now: float) -> FeedBatch:
        """Entries after ``cursor`` without waiting, for a reader coming back.

        If an entry after ``cursor`` has been trimmed since, the reader fell
        behind: returns a snapshot instead (``reset=True``).
        """

    @abc.abstractmethod
    async def feed_wait(self, cursor: str, *, block: float) -> FeedBatch:
        """Entries after ``cursor``, waiting up to ``block`` seconds for one.

        An empty batch on timeout is a heartbeat: proof the feed is alive.
        """

    @abc.abstractmethod
    async def trim_feed(self, *, now: float) -> int:
        """Drop the oldest entries whose ``until`` has passed. Returns how many remain."""

    async def close(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing
        """Release connections."""
