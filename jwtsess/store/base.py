"""The SessionStore contract every backend implements (tests/test_store_contract.py).

A store holds sessions (refresh-token families) and the revocation feed. Every
method that changes state does it in one atomic step, and writes the
revocations that the change causes in that same step. Times are epoch seconds
passed in by the caller (the issuer's clock), never read by the store, so
frozen-time tests and several processes agree on what "now" is.

Failures to reach the backend raise ``StoreUnavailable``; nothing is then
half-written, because each step is atomic.

MemoryStore is the readable specification; tests/test_store_model.py drives it
and RedisStore with the same random operation sequences and requires the same
answers, sessions and feed.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..sessions import ClientMetadata, SessionGrant, SessionInfo, SessionPolicy

#: Revocation kinds in the feed.
REVOKE_TOKEN: Final = "jti"  # one access token
REVOKE_SESSION: Final = "sid"  # every access token of one session
REVOKE_USER: Final = "user"  # every access token of a user issued before ``not_before_us``

RevocationKind = Literal["jti", "sid", "user"]

#: The detail of the ``RateLimited`` a rotation raises past ``SessionPolicy.grace_answers``.
GRACE_ANSWERS_SPENT: Final = "Too many answers for one refresh token."


@dataclass(frozen=True, slots=True)
class Revocation:
    """One feed entry.

    For ``jti`` and ``sid`` entries, ``subject`` is the token or session id.
    For ``user`` entries, ``subject`` is the user id and ``not_before_us`` the
    instant (microseconds) before which that user's tokens are revoked: a token
    is revoked if its ``iat_us`` is earlier. ``until`` is when every token the
    entry could affect has expired; after it, the entry is dropped everywhere.
    """

    kind: RevocationKind
    subject: str
    until: float
    not_before_us: int = 0


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
    #: the client's binding (``client_fingerprint`` or ``key_binding``); "" for none
    binding: str = ""


class SessionStore(abc.ABC):
    """Sessions, rotation with reuse detection, and the revocation feed."""

    # -- sessions ----------------------------------------------------------------

    @abc.abstractmethod
    async def create(
        self, session: NewSession, *, now: float, absolute_ttl: float, idle_ttl: float
    ) -> SessionGrant:
        """Store a new session at generation 0 (outcome ``"created"``)."""

    @abc.abstractmethod
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
        """Check-and-rotate in one atomic step. First the generation decides:

        - ``generation`` is current: the rotation may go ahead (below).
        - ``generation`` is the predecessor, its rotation is less than
          ``policy.grace`` seconds old and ``binding`` equals the binding the
          rotation recorded: a grace answer may be given (outcome ``"grace"``,
          nothing changes), at most ``policy.grace_answers`` per generation;
          past that, ``RateLimited`` (retry after 1 s) and nothing changes.
        - anything else is theft, whatever any limit says: the session is
          deleted and a ``sid`` revocation written; ``RefreshReused``.
        - no such session, or idle/absolute lifetime over: ``SessionNotFound``.

        A session whose binding is a key binding (``jkt:``) refuses a current
        generation presented with another binding: ``TokenInvalid``, nothing
        changes (the token leaked without its key; the owner keeps the session).

        Then the limits, for a request that may go ahead: more than
        ``policy.refresh_limit`` answers in the session's current window of
        ``policy.refresh_window`` seconds, or ``address_retry_after > 0`` (the
        caller's per-address limit), raise ``RateLimited`` and change nothing;
        refused requests are not counted. Otherwise the rotation (new
        generation, ``binding`` recorded) or grace answer is committed and
        counted.
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
    async def logout_others(self, sid: str, *, now: float, revocation_ttl: float) -> list[str]:
        """End every session of ``sid``'s user except ``sid``. Returns the ended sids.

        :raises SessionNotFound: ``sid`` itself is not live.
        """

    @abc.abstractmethod
    async def logout_all(
        self, user_id: str, *, now: float, revocation_ttl: float, sid: str | None = None
    ) -> list[str] | None:
        """End every session of the user and revoke every access token issued up to now.

        With ``sid`` (the caller's own session), nothing happens if that session
        is no longer live (None is returned): a logout-all racing another one
        must not move the user's not-before again. Otherwise returns the ended sids.
        """

    @abc.abstractmethod
    async def reissue(
        self,
        user_id: str,
        *,
        now: float,
        revocation_ttl: float,
        role: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> None:
        """Revoke every access token of the user issued up to now; keep the sessions.

        The next refresh issues fresh tokens; ``role``/``extra_claims``, if
        given, replace the claims stored with every session of the user.
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
