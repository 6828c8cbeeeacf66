"""The revocation feed on Redis: reading it (snapshot, resume, blocking wait), trimming it,
the rate-limit buckets and one-time values; the scripts these use, which touch no session.

Reading uses read commands only, so a verify-only service can follow the feed
as a read-only Redis user; the scripts that append also trim.

``RedisFeed`` is the half of ``RedisStore`` that only reads the stream or
counts requests; the state scripts that write it are in ``redis_scripts``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from ..errors import StoreUnavailable
from .base import FeedBatch, Revocation
from .redis_protocol import RedisKeys, parse_revocation
from .redis_scripts import TRIM_BATCH

logger = logging.getLogger("jwtsess.store")

#: KEYS: one counter per bucket. ARGV: now ms, limit, window ms.
#: Fixed windows aligned to multiples of the window. Returns 0 if every bucket
#: is within the limit, else the ms until the fullest bucket's window ends.
RATE_LIMIT: Final = r"""
local now, limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ends = (math.floor(now / window) + 1) * window
local retry = 0
for _, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('PEXPIRE', key, ends - now) end
  if count > limit then retry = ends - now end
end
return retry
"""

#: KEYS: one counter per bucket (the keys RATE_LIMIT counted in). ARGV: none.
#: Takes one back from each counter that still exists and is above zero; an
#: expired window is never recreated (DECR on a missing key would make one
#: without a TTL). DECR keeps the key's TTL. Returns nothing.
RATE_REFUND: Final = r"""
for _, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count > 0 then redis.call('DECR', key) end
end
return 0
"""

#: KEYS[1] feed. ARGV: now ms.
#: Removes the oldest entries whose ``until`` has passed; stops at the first
#: live one. Returns the stream length after trimming.
TRIM: Final = (
    TRIM_BATCH
    + r"""
local now = tonumber(ARGV[1])
while not trim_batch(KEYS[1], now) do end
return redis.call('XLEN', KEYS[1])
"""
)


def _stream_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def ms(seconds: float) -> int:
    return round(seconds * 1000)


class RedisFeed:
    """Script running, feed reading and rate-limit buckets for ``RedisStore``."""

    def __init__(self, client: aioredis.Redis | RedisCluster, *, prefix: str = "js") -> None:
        self.client = client
        self.prefix = prefix
        self.keys = RedisKeys(prefix)
        self.feed_key = self.keys.feed
        self.cluster = isinstance(client, RedisCluster)
        self._scripts: dict[str, AsyncScript] = {}

    async def _run(self, name: str, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.client.register_script(source)
        try:
            return await script(keys=list(keys), args=list(args))
        except (RedisError, OSError) as exc:
            logger.warning("redis script %s failed: %r", name, exc)
            raise StoreUnavailable() from exc

    async def _call(self, command: Awaitable[Any]) -> Any:
        try:
            return await command
        except (RedisError, OSError) as exc:
            logger.warning("redis feed read failed: %r", exc)
            raise StoreUnavailable() from exc

    # -- rate limiting -----------------------------------------------------------------

    async def hit_rate_limit(
        self, buckets: Sequence[str], *, now: float, limit: int, window: float
    ) -> float:
        keys = self._rate_limit_keys(buckets, now=now, window=window)
        args = [ms(now), limit, ms(window)]
        if not self.cluster:
            return int(await self._run("RATE_LIMIT", RATE_LIMIT, keys, args)) / 1000
        # Buckets live in different slots: one call each.
        retries = [int(await self._run("RATE_LIMIT", RATE_LIMIT, [key], args)) for key in keys]
        return max(retries, default=0) / 1000

    def _rate_limit_keys(self, buckets: Sequence[str], *, now: float, window: float) -> list[str]:
        # The window index is part of the key, so a bucket from an old window
        # (under an injected clock) never counts toward the current one.
        index = int(now // window)
        return [self.keys.bucket(bucket, index) for bucket in buckets]

    async def refund_rate_limit(self, buckets: Sequence[str], *, now: float, window: float) -> None:
        keys = self._rate_limit_keys(buckets, now=now, window=window)
        if not self.cluster:
            await self._run("RATE_REFUND", RATE_REFUND, keys, [])
            return
        for key in keys:
            await self._run("RATE_REFUND", RATE_REFUND, [key], [])

    # -- one-time values -------------------------------------------------------------

    async def claim_once(self, key: str, *, now: float, until: float) -> bool:
        # One SET NX with a relative expiry (time is the caller's, as everywhere).
        ttl = max(1, ms(until - now))
        done = await self._call(self.client.set(self.keys.once(key), "1", nx=True, px=ttl))
        return bool(done)

    # -- the feed ------------------------------------------------------------------

    # Reading the feed uses read commands only (XRANGE, XINFO STREAM, XREAD), so
    # a service that only verifies can follow it as a read-only Redis user.

    async def feed_snapshot(self, *, now: float) -> FeedBatch:
        entries: list[Revocation] = []
        cursor, start = "0-0", "-"
        while True:
            page = await self._call(self.client.xrange(self.feed_key, start, "+", count=1000))
            for entry_id, fields in page:
                revocation = parse_revocation(fields)
                if revocation is not None:
                    entries.append(revocation)
                cursor = entry_id
            if len(page) < 1000:
                break
            start = f"({cursor}"
        if cursor == "0-0":
            info = await self._feed_last_id()
            cursor = info or cursor
        return FeedBatch(entries, cursor, reset=True)

    async def _feed_info(self) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = await self.client.xinfo_stream(self.feed_key)
        except RedisError as exc:
            if "no such key" in str(exc).lower():
                return None
            raise StoreUnavailable() from exc
        except OSError as exc:
            raise StoreUnavailable() from exc
        return info

    async def _feed_last_id(self) -> str | None:
        info = await self._feed_info()
        return None if info is None else str(info["last-generated-id"])

    async def feed_resume(self, cursor: str, *, now: float) -> FeedBatch:
        page = await self._call(self.client.xrange(self.feed_key, f"({cursor}", "+", count=10000))
        # Read the entries first, then ask what was ever deleted: an entry after the
        # cursor trimmed before the read shows up here (a trim in between only
        # costs a needless snapshot).
        info = await self._feed_info()
        deleted = None if info is None else info.get("max-deleted-entry-id")
        if deleted is not None and _stream_id(str(deleted)) > _stream_id(cursor):
            return await self.feed_snapshot(now=now)
        entries = [r for r in (parse_revocation(fields) for _, fields in page) if r is not None]
        return FeedBatch(entries, page[-1][0] if page else cursor)

    async def feed_wait(self, cursor: str, *, block: float) -> FeedBatch:
        reply = await self._call(
            self.client.xread({self.feed_key: cursor}, count=10000, block=max(1, ms(block)))
        )
        if not reply:
            return FeedBatch([], cursor)
        # RESP2: [[key, [[id, fields], ...]]]; RESP3: {key: [[id, fields], ...]}
        messages = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
        entries = [r for r in (parse_revocation(fields) for _, fields in messages) if r is not None]
        return FeedBatch(entries, messages[-1][0] if messages else cursor)

    async def trim_feed(self, *, now: float) -> int:
        return int(await self._run("TRIM", TRIM, [self.feed_key], [ms(now)]))
