"""A verify-only service's mirror as a real read-only Redis ACL user (issue 11).

The user's rules are the documented ACL line (docs/verify-only.md). The mirror
loads, follows the feed across trims made by the issuer, recovers after a
Redis restart, and cannot write anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from jwtsess import StoreUnavailable, TokenRevoked, Verifier
from jwtsess.issuer import Issuer
from jwtsess.mirror import RevocationMirror
from jwtsess.store.redis import RedisStore
from tests.support.kit import TokenKit
from tests.support.readonly_redis import ReadOnlyRedis, running_readonly_redis

READ_TIMEOUT = 5.0

pytestmark = pytest.mark.system  # starts redis-server and service processes


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ReadOnlyRedis]:
    with running_readonly_redis(tmp_path / "redis") as started:
        yield started


async def until(mirror: RevocationMirror, kind: str, subject: str) -> None:
    for _ in range(50):
        if mirror.revokes(kind, subject):  # type: ignore[arg-type]
            return
        assert await mirror.wait_for_progress(READ_TIMEOUT)
    raise AssertionError(f"the mirror never saw {kind} {subject}")


async def test_the_reader_loads_follows_trims_and_survives_a_restart(
    server: ReadOnlyRedis, make_kit: Callable[..., TokenKit]
) -> None:
    kit = make_kit("ES256", access_ttl=60, leeway=2)  # revocations live ~63 s
    clock = kit.clock
    writer = RedisStore.from_url(server.url)
    issuer = Issuer(kit.keyring, kit.settings, writer, clock=clock)
    reader = RedisStore.from_url(server.reader_url, socket_timeout=2.0)
    mirror = RevocationMirror(reader, clock=clock, block=0.2, stale_after=5.0)
    verifier = Verifier(kit.keyring, kit.settings, clock=clock, revocation=mirror)
    try:
        early = await issuer.login("alice", "user")
        await issuer.logout(early.session_id)
        async with mirror:  # loads as the read-only user
            assert mirror.revokes("sid", early.session_id)

            # Follows: a logout-all made by the issuer reaches it.
            bob = await issuer.login("bob", "user")
            await issuer.logout_all("bob")
            await until(mirror, "user", "bob")
            with pytest.raises(TokenRevoked):
                verifier.verify(bob.access_token)

            # Across a trim: alice's entry dies, the issuer's next append trims it.
            clock.advance(70)
            carol = await issuer.login("carol", "user")
            await issuer.logout(carol.session_id)
            with server.client() as admin:
                assert [f["s"] for _, f in admin.xrange("js:feed")] == [carol.session_id]
            await until(mirror, "sid", carol.session_id)
            assert mirror.healthy

            # Behind a trim it never saw: resumes with a snapshot (read commands only).
            resyncs = mirror.resyncs
            stale_cursor = mirror.cursor
            assert stale_cursor is not None
            dave = await issuer.login("dave", "user")
            await issuer.logout(dave.session_id)
            clock.advance(70)
            erin = await issuer.login("erin", "user")
            await issuer.logout(erin.session_id)  # trims carol's and dave's entries
            batch = await reader.feed_resume(stale_cursor, now=clock())
            assert batch.reset
            assert [r.subject for r in batch.entries] == [erin.session_id]
            assert mirror.resyncs == resyncs  # (the follower itself was never behind)

            # A Redis restart: the follower reconnects and goes on following.
            server.stop()
            server.start()
            await writer.close()  # the issuer's own pool died with it: a new one
            writer = RedisStore.from_url(server.url)
            issuer = Issuer(kit.keyring, kit.settings, writer, clock=clock)
            frank = await issuer.login("frank", "user")
            await issuer.logout(frank.session_id)
            await until(mirror, "sid", frank.session_id)
            assert mirror.healthy
            assert mirror.revokes("sid", erin.session_id)  # nothing un-revoked
    finally:
        await reader.close()
        await writer.close()


WRITES = [
    ["SET", "js:x", "1"],
    ["XADD", "js:feed", "*", "k", "jti", "s", "forged", "u", "9999999999999", "n", "0"],
    ["XDEL", "js:feed", "0-1"],
    ["XTRIM", "js:feed", "MAXLEN", "0"],
    ["DEL", "js:feed"],
    ["EXPIRE", "js:feed", "1"],
    ["RENAME", "js:feed", "js:gone"],
    ["XGROUP", "CREATE", "js:feed", "g", "$"],
    ["EVAL", "return redis.call('DEL', KEYS[1])", "1", "js:feed"],
    ["EVAL_RO", "return 1", "0"],
    ["FUNCTION", "FLUSH"],
    ["PUBLISH", "js:feed", "x"],
    ["FLUSHALL"],
    ["CONFIG", "SET", "appendonly", "no"],
    ["ACL", "SETUSER", "jwtsess-reader", "+@all"],
    ["GET", "js:{abc}:n:alice"],  # reads of anything but the feed are refused too
    ["XRANGE", "js:other", "-", "+"],
]


@pytest.mark.parametrize("command", WRITES, ids=[" ".join(c[:2]) for c in WRITES])
def test_the_reader_cannot_write_anything(server: ReadOnlyRedis, command: list[str]) -> None:
    with server.client() as admin:
        admin.xadd("js:feed", {"k": "jti", "s": "real", "u": "9999999999999", "n": "0"})
    with (
        redis.Redis.from_url(server.reader_url, decode_responses=True) as reader,
        pytest.raises(redis.exceptions.NoPermissionError),
    ):
        reader.execute_command(*command)
    with server.client() as admin:
        assert admin.xlen("js:feed") == 1


async def test_the_store_operations_that_write_fail_cleanly_for_the_reader(
    server: ReadOnlyRedis,
) -> None:
    reader = RedisStore.from_url(server.reader_url)
    try:
        with pytest.raises(StoreUnavailable):
            await reader.trim_feed(now=1.8e9)
        with pytest.raises(StoreUnavailable):
            await reader.revoke_token("forged", now=1.8e9, until=1.8e9 + 60)
        assert (await reader.feed_snapshot(now=1.8e9)).entries == []
    finally:
        await reader.close()
