"""The revocation feed as other services see it: trimmed by its writers, read with reads only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from jwtsess.store.redis import RedisStore
from tests.support.kit import T0
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.system  # uses the private redis-server


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    with redis_server.client() as admin:
        admin.flushall()  # our own private server
    redis_store = RedisStore.from_url(redis_server.url)
    try:
        yield redis_store
    finally:
        await redis_store.close()


def subjects(server: RedisServer) -> list[str]:
    with server.client() as admin:
        return [fields["s"] for _, fields in admin.xrange("js:feed")]


async def test_the_writer_trims_dead_entries_as_it_appends(
    store: RedisStore, redis_server: RedisServer
) -> None:
    await store.revoke_token("a", now=T0, until=T0 + 10)
    await store.revoke_token("b", now=T0 + 1, until=T0 + 20)
    snapshot = await store.feed_snapshot(now=T0 + 15)  # a reader: changes nothing
    assert [r.subject for r in snapshot.entries] == ["a", "b"]
    assert subjects(redis_server) == ["a", "b"]
    await store.revoke_token("c", now=T0 + 15, until=T0 + 100)  # a is dead by now
    assert subjects(redis_server) == ["b", "c"]
    await store.revoke_token("d", now=T0 + 50, until=T0 + 100)
    assert subjects(redis_server) == ["c", "d"]
