"""RevocationMirror: every live revocation, in this process's memory, fed by the store.

The verifier asks the mirror on every request: a few dictionary lookups, no
I/O. A background task keeps the mirror current. At start it loads the live
window (``feed_snapshot``); after that it tails the feed (``feed_wait``, a
blocking read that returns as soon as anything is written, or empty after
``block`` seconds). After a failure it resumes from its cursor
(``feed_resume``), and if the store trimmed entries it never saw, it merges a
fresh snapshot. Revocations only ever add: an entry leaves the mirror when its
``until`` passes, never because the store forgot it (a Redis that restarted
empty must not un-revoke anything).

Every successful read, empty or not, counts as hearing from the feed, so a
quiet feed is told apart from a dead one without a separate heartbeat key. If
nothing has been heard for ``stale_after`` seconds, ``check`` applies the
policy: ``fail_closed`` raises ``RevocationStateStale`` (HTTP 503), and
``fail_open`` accepts and counts it in ``stale_accepts``. Each stale spell is
logged once: a WARNING when it starts (saying which policy now applies) and
an INFO when the feed is heard again (saying how long it lasted). A mirror
that was never loaded refuses every token and logs an ERROR naming
``mirror.start()``, whatever the policy: that is a wiring mistake, not an outage.

Its state is private; read it through ``healthy``, ``lag()``, ``len()``,
``revokes()``, ``stale_accepts`` and ``resyncs``. Use it as
``async with mirror:`` (start, then stop) or call ``start()`` / ``stop()`` from
the app's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Literal

from .access import AccessClaims
from .clock import Clock, system_clock
from .errors import RevocationStateStale, StoreUnavailable, TokenRevoked
from .store.base import (
    REVOKE_SESSION,
    REVOKE_TOKEN,
    FeedBatch,
    Revocation,
    RevocationKind,
    SessionStore,
)

logger = logging.getLogger("jwtsess.mirror")

StalenessPolicy = Literal["fail_closed", "fail_open"]
RevocationListener = Callable[[list[Revocation]], None]


class RevocationMirror:
    """In-memory revocation state for one process.

    :param store: the store whose feed to follow.
    :param clock: wall-clock seconds (entry expiry, feed trimming).
    :param stale_after: seconds without hearing from the feed before ``policy`` applies.
    :param policy: ``"fail_closed"`` (default) or ``"fail_open"``.
    :param block: longest a feed read waits; keep it well below ``stale_after``.
    :param sweep_interval: seconds between dropping expired entries (the writers trim the feed).
    :param listener: called with every batch applied (metrics, tests).
    :param monotonic: the staleness clock.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        clock: Clock = system_clock,
        stale_after: float = 5.0,
        policy: StalenessPolicy = "fail_closed",
        block: float = 1.0,
        sweep_interval: float = 5.0,
        listener: RevocationListener | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if policy not in ("fail_closed", "fail_open"):
            raise ValueError("policy must be 'fail_closed' or 'fail_open'")
        if not 0 < block < stale_after:
            raise ValueError("block must be positive and shorter than stale_after")
        self._store = store
        self._policy: StalenessPolicy = policy
        self._stale_after = stale_after
        self._block = block
        self._sweep_interval = sweep_interval
        self._clock = clock
        self._monotonic = monotonic
        # subject -> until (epoch seconds); user -> (not-before in microseconds, until)
        self._denied_tokens: dict[str, float] = {}
        self._denied_sessions: dict[str, float] = {}
        self._user_not_before: dict[str, tuple[int, float]] = {}
        self._cursor: str | None = None
        self._stale_at = float("-inf")  # last heard + stale_after: one comparison per request
        self._stale_since: float | None = None  # set while a stale spell has been reported
        self._stale_accepts = 0
        self._resyncs = 0
        self._never_loaded_reported = False
        self._next_sweep = 0.0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._progress = asyncio.Event()
        self._listeners: list[RevocationListener] = [] if listener is None else [listener]

    # -- configuration (read-only) ----------------------------------------------------

    @property
    def store(self) -> SessionStore:
        return self._store

    @property
    def policy(self) -> StalenessPolicy:
        return self._policy

    @property
    def stale_after(self) -> float:
        return self._stale_after

    @property
    def block(self) -> float:
        return self._block

    # -- the per-request check (no I/O) ------------------------------------------------

    def check(self, claims: AccessClaims) -> None:
        """Raise if ``claims`` are revoked, or if the mirror is stale under fail_closed."""
        if self._monotonic() > self._stale_at:
            self._stale()
        if claims.jti in self._denied_tokens or claims.sid in self._denied_sessions:
            raise TokenRevoked()
        if self._user_not_before:
            user = self._user_not_before.get(claims.sub)
            if user is not None and claims.issued_us < user[0]:
                raise TokenRevoked()

    def _stale(self) -> None:
        if self._stale_at == float("-inf"):
            # Never loaded: a wiring mistake, refused under either policy.
            if not self._never_loaded_reported:
                self._never_loaded_reported = True
                logger.error(
                    "the revocation mirror was never started: every token is refused with "
                    "503 revocation_state_stale. Call `await mirror.start()` in the app's "
                    "lifespan (or use `async with mirror:`)"
                )
            raise RevocationStateStale("Revocation state has not been loaded yet.")
        if self._stale_since is None:
            self._stale_since = self._stale_at
            following = "" if self._task is not None else " (not following: call mirror.start())"
            if self._policy == "fail_closed":
                logger.warning(
                    "revocation feed silent for over %.1fs%s: this process now refuses every "
                    "token with 503 revocation_state_stale (fail_closed) until it hears from it",
                    self._stale_after,
                    following,
                )
            else:
                logger.warning(
                    "revocation feed silent for over %.1fs%s: accepting tokens (fail_open) "
                    "without revocations made since, until it hears from it",
                    self._stale_after,
                    following,
                )
        if self._policy == "fail_closed":
            raise RevocationStateStale()
        self._stale_accepts += 1

    @property
    def healthy(self) -> bool:
        """Whether the feed was heard within ``stale_after``."""
        return self._monotonic() <= self._stale_at

    def lag(self) -> float:
        """Seconds since the last successful feed read (``inf`` if never)."""
        return max(0.0, self._monotonic() - (self._stale_at - self._stale_after))

    @property
    def stale_accepts(self) -> int:
        """Tokens accepted while stale under ``fail_open``."""
        return self._stale_accepts

    @property
    def resyncs(self) -> int:
        """Full reloads of the live window (the start, and after falling behind a trim)."""
        return self._resyncs

    @property
    def cursor(self) -> str | None:
        """The feed position this mirror has applied up to (None before loading)."""
        return self._cursor

    def revokes(self, kind: RevocationKind, subject: str) -> bool:
        """Whether a live ``kind`` revocation of ``subject`` is held (tests, health checks)."""
        if kind == REVOKE_TOKEN:
            return subject in self._denied_tokens
        if kind == REVOKE_SESSION:
            return subject in self._denied_sessions
        return subject in self._user_not_before

    def __len__(self) -> int:
        return len(self._denied_tokens) + len(self._denied_sessions) + len(self._user_not_before)

    # -- applying the feed ------------------------------------------------------------------

    def apply(self, entries: Iterable[Revocation]) -> None:
        """Add revocations (idempotent; the latest user not-before wins)."""
        now = self._clock()
        applied = []
        for entry in entries:
            if entry.until <= now:
                continue  # guards only tokens that have expired already
            if entry.kind == REVOKE_TOKEN:
                self._denied_tokens[entry.subject] = max(
                    entry.until, self._denied_tokens.get(entry.subject, 0.0)
                )
            elif entry.kind == REVOKE_SESSION:
                self._denied_sessions[entry.subject] = max(
                    entry.until, self._denied_sessions.get(entry.subject, 0.0)
                )
            else:
                old = self._user_not_before.get(entry.subject, (0, 0.0))
                self._user_not_before[entry.subject] = (
                    max(old[0], entry.not_before_us),
                    max(old[1], entry.until),
                )
            applied.append(entry)
        if applied:
            for listener in tuple(self._listeners):
                try:
                    listener(applied)
                except Exception:
                    # One subscriber's bug must not stop the feed for everyone else.
                    logger.exception("revocation listener %r failed", listener)

    def add_listener(self, listener: RevocationListener) -> Callable[[], None]:
        """Call ``listener`` with every batch of revocations applied from now on.

        The listener runs inside ``apply`` on the event loop that follows the
        feed: it must not block (schedule work instead). Its exceptions are
        logged and do not stop the feed. Returns a function that removes it.
        """
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def sweep(self) -> None:
        """Drop entries whose tokens have all expired."""
        now = self._clock()
        for table in (self._denied_tokens, self._denied_sessions):
            for subject in [s for s, until in table.items() if until <= now]:
                del table[subject]
        for user in [u for u, (_, until) in self._user_not_before.items() if until <= now]:
            del self._user_not_before[user]

    def _heard(self, batch: FeedBatch) -> None:
        if batch.reset:
            self._resyncs += 1
        # Healthy first, so a listener that verifies tokens sees a fresh mirror.
        now = self._monotonic()
        self._stale_at = now + self._stale_after
        if self._stale_since is not None:
            logger.info(
                "revocation feed heard again: tokens are checked again after %.1fs stale "
                "(%s; %d accepted unchecked)",
                now - self._stale_since,
                self._policy,
                self._stale_accepts,
            )
            self._stale_since = None
        self.apply(batch.entries)
        self._cursor = batch.cursor
        self._progress.set()
        self._progress = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------

    async def load(self) -> None:
        """Load the live window now.

        :raises StoreUnavailable: the store could not be reached.
        """
        self._heard(await self._store.feed_snapshot(now=self._clock()))

    async def sync(self) -> None:
        """Catch up with the feed now (after a revocation made by this process)."""
        if self._cursor is None:
            await self.load()
        else:
            self._heard(await self._store.feed_resume(self._cursor, now=self._clock()))

    async def start(self) -> None:
        """Load the live window, then follow the feed in a background task.

        :raises StoreUnavailable: the initial load failed (fail fast at start-up).
        """
        await self.load()
        self._task = asyncio.create_task(self._follow(), name="jwtsess-revocation-mirror")

    async def __aenter__(self) -> RevocationMirror:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop following. Returns within about ``block`` seconds.

        The follower is asked to finish its current read rather than being
        cancelled inside it: cancelling a blocking read in redis.asyncio can
        leave the task waiting until the connection closes.
        """
        task = self._task
        if task is None:
            return
        self._stopping = True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self._block + 1.0)
        except TimeoutError:
            # On Python 3.11 a cancel can be swallowed inside redis-py's own
            # wait_for; cancel again until the task is really done.
            for _ in range(10):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), timeout=0.5)
                if task.done():
                    break
        if task.done():
            self._task = None
            self._stopping = False  # only now: a live follower must keep seeing the flag
        else:
            logger.error("revocation mirror follower did not stop")

    async def wait_for_progress(self, timeout: float) -> bool:  # noqa: ASYNC109 - plain API for tests and health checks
        """Wait until the next successful feed read (tests, health checks)."""
        try:
            await asyncio.wait_for(self._progress.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _follow(self) -> None:
        backoff = 0.05
        broken = False
        while not self._stopping:
            try:
                if self._cursor is None:
                    await self.load()
                elif broken:
                    self._heard(await self._store.feed_resume(self._cursor, now=self._clock()))
                    logger.info("revocation feed back; resumed from %s", self._cursor)
                if broken:
                    broken, backoff = False, 0.05
                if self._cursor is not None:
                    self._heard(await self._store.feed_wait(self._cursor, block=self._block))
                now = self._clock()
                if now >= self._next_sweep:
                    self._next_sweep = now + self._sweep_interval
                    self.sweep()
            except StoreUnavailable:
                if not broken:
                    logger.warning("revocation feed unreachable; retrying")
                broken = True
                # Wait before reconnecting so a down Redis is not hammered.
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._block)
