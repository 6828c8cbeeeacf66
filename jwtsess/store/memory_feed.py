"""The half of MemoryStore that holds no session: the revocation feed, rate-limit
buckets and one-time values (as ``redis_feed`` is for RedisStore)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from .base import FeedBatch, Revocation


class MemoryFeed:
    """The feed (entries numbered from 1), buckets and one-time values, in this process."""

    def __init__(self) -> None:
        self._feed: deque[tuple[int, Revocation]] = deque()
        self._last_id = 0
        self._max_trimmed_id = 0
        self._wakeup: asyncio.Event | None = None
        self._buckets: dict[str, tuple[float, int]] = {}  # bucket -> (window end, count)
        self._once: dict[str, float] = {}  # claim_once key -> until

    def _append(self, revocation: Revocation) -> None:
        self._last_id += 1
        self._feed.append((self._last_id, revocation))
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def _trim(self, now: float) -> None:
        while self._feed and self._feed[0][1].until <= now:
            self._max_trimmed_id = self._feed.popleft()[0]

    def _sweep_feed(self, now: float) -> None:
        """Drop what has expired: feed entries, bucket windows, one-time values."""
        self._trim(now)
        for bucket in [b for b, (end, _) in self._buckets.items() if end <= now]:
            del self._buckets[bucket]
        for key in [k for k, until in self._once.items() if until <= now]:
            del self._once[key]

    def _sweep(self, now: float) -> None:
        self._sweep_feed(now)

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
