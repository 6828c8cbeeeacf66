"""RedisStore: the production store on redis.asyncio (one server, Sentinel, or Cluster).

Every state change is one Lua script (one round trip, atomic); see
``redis_scripts`` for the data model. Every script touches the keys of one
user, which share a cluster hash tag. On a single server (or behind Sentinel)
the revocations a change causes are appended to the feed inside the same
script. On Redis Cluster the feed lives in its own slot, so the script returns
them and the store appends them right after (``FEED_ADD``); if that second step
fails the caller gets ``StoreUnavailable`` and may retry, since every
revocation is idempotent. Connection trouble of any kind becomes
``StoreUnavailable``. A script either ran whole or not at all, so nothing is
left half-written. The client this store builds does not retry commands by
itself: retrying a refresh is the caller's decision, and it is safe only
within the grace window.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from ..errors import RefreshReused, SessionNotFound, StoreUnavailable
from ..refresh_token import is_session_id, session_tag, user_tag
from ..sessions import ClientMetadata, Rotation, SessionInfo
from . import redis_scripts as lua
from .base import FeedBatch, NewSession, Revocation, RevocationKind, SessionStore

logger = logging.getLogger("jwtsess.store")

_KINDS: dict[str, RevocationKind] = {"jti": "jti", "sid": "sid", "user": "user"}
_REPLY_FIELDS = 11


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _session(values: Sequence[Any]) -> SessionInfo:
    sid, user, role, extra, gen, created, used, expires, absolute, ua, ip = values
    return SessionInfo(
        sid=sid,
        user_id=user,
        role=role,
        extra_claims=json.loads(extra),
        generation=int(gen),
        created_at=int(created) / 1000,
        last_used_at=int(used) / 1000,
        expires_at=int(expires) / 1000,
        absolute_expires_at=int(absolute) / 1000,
        user_agent=ua or None,
        ip=ip or None,
    )


def _stream_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _revocation(fields: Mapping[str, str] | Sequence[str]) -> Revocation | None:
    if not isinstance(fields, Mapping):
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    kind = _KINDS.get(fields.get("k", ""))
    if kind is None:
        return None
    return Revocation(kind, fields["s"], int(fields["u"]) / 1000, int(fields.get("n") or 0))


class RedisStore(SessionStore):
    """Sessions and the revocation feed in Redis.

    :param client: a ``redis.asyncio.Redis`` with ``decode_responses=True``.
    :param prefix: prefix of every key (several apps can share one Redis).

    Feed reads block for at most the ``block`` they are given, which must stay
    below the client's socket timeout.
    """

    def __init__(self, client: aioredis.Redis | RedisCluster, *, prefix: str = "js") -> None:
        self.client = client
        self.prefix = prefix
        self.feed_key = f"{prefix}:feed"
        self.cluster = isinstance(client, RedisCluster)
        # The feed key as the scripts see it: '' on a cluster means "return the
        # revocations to me" (the feed is in another slot).
        self._feed_arg = "" if self.cluster else self.feed_key
        self._scripts: dict[str, AsyncScript] = {}
        self._sentinel_clients: list[aioredis.Redis] = []  # closed with the store

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "js", socket_timeout: float = 5.0, cluster: bool = False
    ) -> RedisStore:
        """Build a store with its own connection pool; no automatic retries.

        :param cluster: ``url`` names a node of a Redis Cluster.
        """
        if cluster:
            return cls(
                RedisCluster.from_url(
                    url,
                    decode_responses=True,
                    socket_timeout=socket_timeout,
                    socket_connect_timeout=socket_timeout,
                    retry=Retry(NoBackoff(), 0),
                ),
                prefix=prefix,
            )
        client = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        return cls(client, prefix=prefix)

    @classmethod
    def from_sentinel(
        cls,
        sentinels: Sequence[tuple[str, int]],
        service: str,
        *,
        prefix: str = "js",
        socket_timeout: float = 5.0,
    ) -> RedisStore:
        """Build a store on the master Redis Sentinel names for ``service``.

        The client asks the sentinels for the current master on every new
        connection, so after a failover it follows the promoted replica.
        Replication is asynchronous: a write acknowledged just before a failover
        can be lost (see docs/operations.md).
        """
        sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            list(sentinels), socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
        client = sentinel.master_for(
            service,
            decode_responses=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        store = cls(client, prefix=prefix)
        store._sentinel_clients = list(sentinel.sentinels)
        return store

    async def close(self) -> None:
        await self.client.aclose()
        for client in self._sentinel_clients:
            await client.aclose()

    # -- plumbing ------------------------------------------------------------------

    def _user_prefix(self, tag: str) -> str:
        return f"{self.prefix}:{{{tag}}}:"

    def _session_prefix(self, tag: str) -> str:
        return f"{self.prefix}:{{{tag}}}"

    def _session_key(self, sid: str) -> str:
        # "P:{tag}.<random>": the sid with its tag wrapped as the cluster hash tag.
        return self._session_prefix(session_tag(sid)) + sid[8:]

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.client.register_script(getattr(lua, name))
        try:
            return await script(keys=list(keys), args=list(args))
        except (RedisError, OSError) as exc:
            logger.warning("redis script %s failed: %r", name, exc)
            raise StoreUnavailable() from exc

    async def _run_publishing(
        self, name: str, keys: Sequence[str], args: Sequence[Any], now: float
    ) -> Any:
        """Run a state script; on a cluster, append the revocations it returns."""
        result, pending = await self._run(name, keys, [*args, self._feed_arg])
        if pending:
            await self._run("FEED_ADD", [self.feed_key], [_ms(now), *pending, self.feed_key])
        return result

    async def _call(self, command: Awaitable[Any]) -> Any:
        try:
            return await command
        except (RedisError, OSError) as exc:
            logger.warning("redis feed read failed: %r", exc)
            raise StoreUnavailable() from exc

    # -- sessions ------------------------------------------------------------------

    async def create(
        self, session: NewSession, *, now: float, absolute_ttl: float, idle_ttl: float
    ) -> int:
        prefix = self._user_prefix(session_tag(session.sid))
        nbf = await self._run(
            "CREATE",
            [
                self._session_key(session.sid),
                f"{prefix}u:{session.user_id}",
                f"{prefix}n:{session.user_id}",
            ],
            [
                session.sid,
                session.user_id,
                session.role,
                json.dumps(dict(session.extra_claims), separators=(",", ":")),
                _ms(now),
                _ms(absolute_ttl),
                _ms(idle_ttl),
                session.metadata.user_agent or "",
                session.metadata.ip or "",
            ],
        )
        return int(nbf)

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
        result = await self._run(
            "ROTATE",
            [self._session_key(sid)],
            [
                sid,
                generation,
                _ms(now),
                _ms(grace),
                metadata.user_agent or "",
                metadata.ip or "",
                _ms(revocation_ttl),
                self._user_prefix(session_tag(sid)),
                self._feed_arg,
            ],
        )
        outcome = result[0]
        if outcome == "nf":
            raise SessionNotFound()
        if outcome == "reused":
            if len(result) > 2:  # a cluster: append the session's revocation first
                await self._run("FEED_ADD", [self.feed_key], [_ms(now), *result[2:], self.feed_key])
            raise RefreshReused(sid=sid, user_id=result[1])
        return Rotation(
            "rotated" if outcome == "ok" else "grace",
            _session(result[2 : 2 + _REPLY_FIELDS]),
            int(result[1]),
        )

    async def get(self, sid: str, *, now: float) -> SessionInfo | None:
        if not is_session_id(sid):
            return None
        result = await self._run("GET", [self._session_key(sid)], [sid, _ms(now)])
        return _session(result) if result else None

    async def list_for_user(self, user_id: str, *, now: float) -> list[SessionInfo]:
        prefix = self._user_prefix(user_tag(user_id))
        tag = user_tag(user_id)
        flat = await self._run(
            "LIST", [f"{prefix}u:{user_id}"], [_ms(now), self._session_prefix(tag)]
        )
        sessions = [
            _session(flat[i : i + _REPLY_FIELDS]) for i in range(0, len(flat), _REPLY_FIELDS)
        ]
        return sorted(sessions, key=lambda s: s.created_at)

    async def update_claims(
        self, sid: str, role: str, extra_claims: Mapping[str, Any], *, now: float
    ) -> bool:
        extra = json.dumps(dict(extra_claims), separators=(",", ":"))
        return bool(
            await self._run("UPDATE_CLAIMS", [self._session_key(sid)], [role, extra, _ms(now)])
        )

    # -- revocation ----------------------------------------------------------------

    async def revoke_session(
        self, sid: str, *, now: float, revocation_ttl: float
    ) -> SessionInfo | None:
        result = await self._run_publishing(
            "REVOKE_SESSION",
            [self._session_key(sid)],
            [sid, _ms(now), _ms(revocation_ttl), self._user_prefix(session_tag(sid))],
            now,
        )
        return _session(result) if result else None

    async def revoke_other_sessions(
        self, sid: str, *, now: float, revocation_ttl: float
    ) -> list[str]:
        result = await self._run_publishing(
            "REVOKE_OTHERS",
            [self._session_key(sid)],
            [
                sid,
                _ms(now),
                _ms(revocation_ttl),
                self._user_prefix(session_tag(sid)),
                self._session_prefix(session_tag(sid)),
            ],
            now,
        )
        if result is None:
            raise SessionNotFound()
        return list(result)

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
        prefix = self._user_prefix(user_tag(user_id))
        extra = (
            "" if extra_claims is None else json.dumps(dict(extra_claims), separators=(",", ":"))
        )
        result = await self._run_publishing(
            "REVOKE_USER",
            [f"{prefix}u:{user_id}", f"{prefix}n:{user_id}"],
            [
                user_id,
                _ms(now),
                _ms(revocation_ttl),
                "1" if end_sessions else "0",
                self._session_prefix(user_tag(user_id)),
                role or "",
                extra,
            ],
            now,
        )
        return sorted(result)

    async def revoke_token(self, jti: str, *, now: float, until: float) -> None:
        await self._run(
            "FEED_ADD", [self.feed_key], [_ms(now), "jti", jti, _ms(until), 0, self.feed_key]
        )

    # -- rate limiting -----------------------------------------------------------------

    async def hit_rate_limit(
        self, buckets: Sequence[str], *, now: float, limit: int, window: float
    ) -> float:
        keys = self._rate_limit_keys(buckets, now=now, window=window)
        args = [_ms(now), limit, _ms(window)]
        if not self.cluster:
            return int(await self._run("RATE_LIMIT", keys, args)) / 1000
        # Buckets live in different slots: one call each.
        retries = [int(await self._run("RATE_LIMIT", [key], args)) for key in keys]
        return max(retries, default=0) / 1000

    def _rate_limit_keys(self, buckets: Sequence[str], *, now: float, window: float) -> list[str]:
        # The window index is part of the key, so a bucket from an old window
        # (under an injected clock) never counts toward the current one.
        index = int(now // window)
        return [f"{self.prefix}:rl:{bucket}:{index}" for bucket in buckets]

    async def refund_rate_limit(self, buckets: Sequence[str], *, now: float, window: float) -> None:
        keys = self._rate_limit_keys(buckets, now=now, window=window)
        if not self.cluster:
            await self._run("RATE_REFUND", keys, [])
            return
        for key in keys:
            await self._run("RATE_REFUND", [key], [])

    # -- one-time values -------------------------------------------------------------

    async def claim_once(self, key: str, *, now: float, until: float) -> bool:
        # One SET NX with a relative expiry (time is the caller's, as everywhere).
        ttl = max(1, _ms(until - now))
        done = await self._call(self.client.set(f"{self.prefix}:once:{key}", "1", nx=True, px=ttl))
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
                revocation = _revocation(fields)
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
        entries = [r for r in (_revocation(fields) for _, fields in page) if r is not None]
        return FeedBatch(entries, page[-1][0] if page else cursor)

    async def feed_wait(self, cursor: str, *, block: float) -> FeedBatch:
        reply = await self._call(
            self.client.xread({self.feed_key: cursor}, count=10000, block=max(1, _ms(block)))
        )
        if not reply:
            return FeedBatch([], cursor)
        # RESP2: [[key, [[id, fields], ...]]]; RESP3: {key: [[id, fields], ...]}
        messages = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
        entries = [r for r in (_revocation(fields) for _, fields in messages) if r is not None]
        return FeedBatch(entries, messages[-1][0] if messages else cursor)

    async def trim_feed(self, *, now: float) -> int:
        return int(await self._run("TRIM", [self.feed_key], [_ms(now)]))
