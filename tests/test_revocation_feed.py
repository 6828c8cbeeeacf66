"""The revocation feed as other services see it: trimmed by its writers, read with reads only."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from jwtsess.issuer import Issuer
from jwtsess.store.redis import RedisStore
from tests.support.kit import T0, TokenKit
from tests.support.redis_server import RedisServer

DOC = Path(__file__).resolve().parents[1] / "docs" / "revocation-feed.md"

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


def documented_fields() -> dict[str, str]:
    """The 'Entry fields' table of docs/revocation-feed.md: field -> its values column."""
    text = DOC.read_text("utf-8")
    assert "# The revocation feed (format version 1)" in text
    section = text.split("## Entry fields", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, re.M)
    return {name: values.strip() for name, values in rows}


async def test_real_entries_match_the_documented_format(
    store: RedisStore, redis_server: RedisServer, make_kit: Callable[..., TokenKit]
) -> None:
    fields = documented_fields()
    assert set(fields) == {"k", "s", "u", "n"}
    kinds = set(re.findall(r"`(\w+)`", fields["k"]))
    assert kinds == {"jti", "sid", "user"}
    kit = make_kit("EdDSA")
    issuer = Issuer(kit.keyring, kit.settings, store, clock=kit.clock)
    now_ms = round(kit.clock() * 1000)
    pair = await issuer.login("alice", "user")
    await issuer.revoke_access_token(pair.claims)  # jti
    await issuer.logout(pair.session_id)  # sid
    other = await issuer.login("bob", "user")
    await issuer.logout_all("bob")  # user (+ sid of the session it ends)
    with redis_server.client() as admin:
        entries = admin.xrange("js:feed")
        assert admin.type("js:feed") == "stream"
    seen = set()
    for entry_id, entry in entries:
        ms, seq = entry_id.split("-")
        assert ms.isdigit()
        assert seq.isdigit()
        assert abs(int(ms) - now_ms) < 5000  # the writer's clock, in milliseconds
        assert set(entry) == set(fields)
        assert entry["k"] in kinds
        assert entry["u"].isdigit()
        assert entry["n"].isdigit()
        until = int(entry["u"])
        assert now_ms < until <= now_ms + (kit.settings.access_ttl + 120) * 1000  # ms
        if entry["k"] == "user":
            assert abs(int(entry["n"]) - now_ms * 1000) <= 2_000_000  # microseconds
        else:
            assert entry["n"] == "0"
        seen.add((entry["k"], entry["s"]))
    assert seen == {
        ("jti", pair.claims.jti),
        ("sid", pair.session_id),
        ("sid", other.session_id),
        ("user", "bob"),
    }
    assert [e[0] for e in entries] == sorted(e[0] for e in entries)  # IDs only grow
