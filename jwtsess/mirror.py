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
``fail_open`` accepts with a rate-limited warning and counts it in
``stale_accepts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Literal

from .access import AccessClaims
from .clock import Clock, system_clock
from .errors import RevocationStateStale, StoreUnavailable, TokenRevoked
from .store.base import REVOKE_SESSION, REVOKE_TOKEN, FeedBatch, Revocation, SessionStore

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
        self.store = store
        self.policy: StalenessPolicy = policy
        self.stale_after = stale_after
        self.block = block
        self.sweep_interval = sweep_interval
        self.listener = listener
        self._clock = clock
        self._monotonic = monotonic
        # subject -> until (epoch seconds); user -> (not_before, until)
        self.denied_tokens: dict[str, float] = {}
        self.denied_sessions: dict[str, float] = {}
        self.user_not_before: dict[str, tuple[int, float]] = {}
        self.cursor: str | None = None
        self._stale_at = float("-inf")  # last heard + stale_after: one comparison per request
        self.stale_accepts = 0
        self.resyncs = 0
        self._last_warning = float("-inf")
        self._next_sweep = 0.0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._progress = asyncio.Event()
        self._listeners: list[RevocationListener] = []

    # -- the per-request check (no I/O) ------------------------------------------------

    @property
    def last_heard(self) -> float:
        """The monotonic instant of the last successful feed read."""
        return self._stale_at - self.stale_after

    @last_heard.setter
    def last_heard(self, instant: float) -> None:
        self._stale_at = instant + self.stale_after

    def check(self, claims: AccessClaims) -> None:
        """Raise if ``claims`` are revoked, or if the mirror is stale under fail_closed."""
        if self._monotonic() > self._stale_at:
            self._stale()
        if claims.jti in self.denied_tokens or claims.sid in self.denied_sessions:
            raise TokenRevoked()
        if self.user_not_before:
            user = self.user_not_before.get(claims.sub)
            if user is not None and claims.iat < user[0]:
                raise TokenRevoked()

    def _stale(self) -> None:
        if self.policy == "fail_closed":
            raise RevocationStateStale()
        self.stale_accepts += 1
        now = self._monotonic()
        if now - self._last_warning >= 10:
            self._last_warning = now
            logger.warning(
                "revocation feed silent for over %.1fs; accepting tokens (fail_open), %d so far",
                self.stale_after,
                self.stale_accepts,
            )

    @property
    def healthy(self) -> bool:
        return self._monotonic() <= self._stale_at

    def __len__(self) -> int:
        return len(self.denied_tokens) + len(self.denied_sessions) + len(self.user_not_before)

    # -- applying the feed ------------------------------------------------------------------

    def apply(self, entries: Iterable[Revocation]) -> None:
        """Add revocations (idempotent; the latest user not-before wins)."""
        now = self._clock()
        applied = []
        for entry in entries:
            if entry.until <= now:
                continue  # guards only tokens that have expired already
            if entry.kind == REVOKE_TOKEN:
                self.denied_tokens[entry.subject] = max(
                    entry.until, self.denied_tokens.get(entry.subject, 0.0)
                )
            elif entry.kind == REVOKE_SESSION:
                self.denied_sessions[entry.subject] = max(
                    entry.until, self.denied_sessions.get(entry.subject, 0.0)
                )
            else:
                old = self.user_not_before.get(entry.subject, (0, 0.0))
                self.user_not_before[entry.subject] = (
                    max(old[0], entry.not_before),
                    max(old[1], entry.until),
                )
            applied.append(entry)
        if applied:
            if self.listener is not None:
                self.listener(applied)
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
        for table in (self.denied_tokens, self.denied_sessions):
            for subject in [s for s, until in table.items() if until <= now]:
                del table[subject]
        for user in [u for u, (_, until) in self.user_not_before.items() if until <= now]:
            del self.user_not_before[user]

    def _heard(self, batch: FeedBatch) -> None:
        if batch.reset:
            self.resyncs += 1
        # Healthy first, so a listener that verifies tokens sees a fresh mirror.
        self.last_heard = self._monotonic()
        self.apply(batch.entries)
        self.cursor = batch.cursor
        self._progress.set()
        self._progress = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------

    async def load(self) -> None:
        """Load the live window now.

        :raises StoreUnavailable: the store could not be reached.
        """
        self._heard(await self.store.feed_snapshot(now=self._clock()))

    async def sync(self) -> None:
        """Catch up with the feed now (after a revocation made by this process)."""
        if self.cursor is None:
            await self.load()
        else:
            self._heard(await self.store.feed_resume(self.cursor, now=self._clock()))

    async def start(self) -> None:
        """Load the live window, then follow the feed in a background task.

        :raises StoreUnavailable: the initial load failed (fail fast at start-up).
        """
        await self.load()
        self._task = asyncio.create_task(self._follow(), name="jwtsess-revocation-mirror")

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
            await asyncio.wait_for(asyncio.shield(task), timeout=self.block + 1.0)
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
                if self.cursor is None:
                    await self.load()
                elif broken:
                    self._heard(await self.store.feed_resume(self.cursor, now=self._clock()))
                    logger.info("revocation feed back; resumed from %s", self.cursor)
                if broken:
                    broken, backoff = False, 0.05
                if self.cursor is not None:
                    self._heard(await self.store.feed_wait(self.cursor, block=self.block))
                now = self._clock()
                if now >= self._next_sweep:
                    self._next_sweep = now + self.sweep_interval
                    self.sweep()
            except StoreUnavailable:
                if not broken:
                    logger.warning("revocation feed unreachable; retrying")
                broken = True
                # Wait before reconnecting so a down Redis is not hammered.
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.block)
