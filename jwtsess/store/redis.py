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
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from ..access import MICROS
from ..errors import DPoPProofInvalid, RateLimited, RefreshReused, SessionNotFound
from ..refresh_token import is_session_id, session_tag, user_tag
from ..sessions import ClientMetadata, SessionGrant, SessionInfo, SessionPolicy
from . import redis_scripts as lua
from .base import GRACE_ANSWERS_SPENT, NewSession, SessionStore
from .memory import retry_seconds
from .redis_feed import RedisFeed, ms
from .redis_protocol import Answer, parse_session, parse_sessions


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), separators=(",", ":"))


class RedisStore(RedisFeed, SessionStore):
    """Sessions and the revocation feed in Redis.

    :param client: a ``redis.asyncio.Redis`` with ``decode_responses=True``.
    :param prefix: prefix of every key (several apps can share one Redis).

    Feed reads block for at most the ``block`` they are given, which must stay
    below the client's socket timeout.
    """

    def __init__(self, client: aioredis.Redis | RedisCluster, *, prefix: str = "js") -> None:
        super().__init__(client, prefix=prefix)
        # The feed key as the scripts see it: '' on a cluster means "answer the
        # revocations as pending" (the feed is in another slot).
        self._feed_arg = "" if self.cluster else self.feed_key
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

    async def _state(self, name: str, key: str, args: Sequence[Any], now: float) -> Answer:
        """Run a state script; on a cluster, append the revocations it answered as pending."""
        answer = Answer.parse(
            await self._run(name, getattr(lua, name), [key], [self.prefix, *args, self._feed_arg])
        )
        if answer.pending:
            args = [self.prefix, ms(now), *answer.pending, self.feed_key]
            await self._run("FEED_ADD", lua.FEED_ADD, [self.feed_key], args)
        return answer

    @staticmethod
    def _grant(outcome: Literal["created", "rotated", "grace"], answer: Answer) -> SessionGrant:
        nbf, *fields = answer.payload
        return SessionGrant(outcome, parse_session(fields), int(nbf))

    # -- sessions ------------------------------------------------------------------

    async def create(
        self, session: NewSession, *, now: float, absolute_ttl: float, idle_ttl: float
    ) -> SessionGrant:
        answer = await self._state(
            "CREATE",
            self.keys.session(session.sid),
            [
                session.sid,
                session.user_id,
                session.role,
                _json(session.extra_claims),
                ms(now),
                ms(absolute_ttl),
                ms(idle_ttl),
                session.metadata.user_agent or "",
                session.metadata.ip or "",
                session.binding,
            ],
            now,
        )
        return self._grant("created", answer)

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
        answer = await self._state(
            "ROTATE",
            self.keys.session(sid),
            [
                sid,
                generation,
                ms(now),
                ms(policy.grace),
                metadata.user_agent or "",
                metadata.ip or "",
                ms(revocation_ttl),
                binding,
                policy.grace_answers,
                policy.refresh_limit,
                ms(policy.refresh_window),
                ms(address_retry_after),
            ],
            now,
        )
        status = answer.status
        if status == "nf":
            raise SessionNotFound()
        if status == "reused":
            raise RefreshReused(sid=sid, user_id=answer.payload[0])
        if status == "limited":
            retry = retry_seconds(int(answer.payload[0]))
            if answer.payload[1:] == ["grace"]:
                raise RateLimited(GRACE_ANSWERS_SPENT, retry_after=retry)
            raise RateLimited(retry_after=retry)
        if status == "unbound":
            raise DPoPProofInvalid("The session is bound to a key: send its proof.")
        return self._grant("grace" if status == "grace" else "rotated", answer)

    async def get(self, sid: str, *, now: float) -> SessionInfo | None:
        if not is_session_id(sid):
            return None
        answer = await self._state("GET", self.keys.session(sid), [sid, ms(now)], now)
        return parse_session(answer.payload) if answer.status == "ok" else None

    async def list_for_user(self, user_id: str, *, now: float) -> list[SessionInfo]:
        tag = user_tag(user_id)
        answer = await self._state("LIST", self.keys.index(tag, user_id), [tag, ms(now)], now)
        return sorted(parse_sessions(answer.payload), key=lambda s: (s.created_at, s.sid))

    async def update_claims(
        self, sid: str, role: str, extra_claims: Mapping[str, Any], *, now: float
    ) -> bool:
        answer = await self._state(
            "UPDATE_CLAIMS", self.keys.session(sid), [role, _json(extra_claims), ms(now)], now
        )
        return answer.status == "ok"

    # -- revocation ----------------------------------------------------------------

    async def revoke_session(
        self, sid: str, *, now: float, revocation_ttl: float
    ) -> SessionInfo | None:
        answer = await self._state(
            "REVOKE_SESSION", self.keys.session(sid), [sid, ms(now), ms(revocation_ttl)], now
        )
        return parse_session(answer.payload) if answer.status == "ok" else None

    async def logout_others(self, sid: str, *, now: float, revocation_ttl: float) -> list[str]:
        answer = await self._state(
            "LOGOUT_OTHERS", self.keys.session(sid), [sid, ms(now), ms(revocation_ttl)], now
        )
        if answer.status == "nf":
            raise SessionNotFound()
        return [str(other) for other in answer.payload]

    async def logout_all(
        self, user_id: str, *, now: float, revocation_ttl: float, sid: str | None = None
    ) -> list[str] | None:
        tag = user_tag(user_id)
        if sid is not None and not (is_session_id(sid) and session_tag(sid) == tag):
            return None  # not a session of this user (and in another cluster slot)
        answer = await self._state(
            "LOGOUT_ALL",
            self.keys.index(tag, user_id),
            [tag, user_id, ms(now), int(now * MICROS), ms(revocation_ttl), sid or ""],
            now,
        )
        return [str(ended) for ended in answer.payload] if answer.status == "ok" else None

    async def reissue(
        self,
        user_id: str,
        *,
        now: float,
        revocation_ttl: float,
        role: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> None:
        tag = user_tag(user_id)
        await self._state(
            "REISSUE",
            self.keys.index(tag, user_id),
            [
                tag,
                user_id,
                ms(now),
                int(now * MICROS),
                ms(revocation_ttl),
                role or "",
                "" if extra_claims is None else _json(extra_claims),
            ],
            now,
        )

    async def revoke_token(self, jti: str, *, now: float, until: float) -> None:
        args = [self.prefix, ms(now), "jti", jti, ms(until), 0, self.feed_key]
        await self._run("FEED_ADD", lua.FEED_ADD, [self.feed_key], args)
