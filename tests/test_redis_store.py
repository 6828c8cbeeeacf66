"""RedisStore against real private redis-servers: races, crashes, memory, TTLs, hash tags."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from jwtsess import (
    RateLimited,
    RefreshReused,
    SessionNotFound,
    StoreUnavailable,
    TokenSettings,
)
from jwtsess.issuer import Issuer
from jwtsess.refresh_token import decode_refresh_token, new_session_id, user_tag
from jwtsess.sessions import ClientMetadata, SessionPolicy, TokenPair
from jwtsess.store import redis_scripts as lua_scripts
from jwtsess.store.base import NewSession
from jwtsess.store.redis import RedisStore
from jwtsess.store.redis_protocol import LUA_KEYS, SESSION_FIELDS, SESSION_WIDTH, parse_session
from tests.support.kit import T0, TokenKit
from tests.support.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.system  # starts private redis-servers


@pytest.fixture
def fresh_redis(redis_server: RedisServer) -> RedisServer:
    """The shared private server, emptied (ours, so flushing it is allowed)."""
    with redis_server.client() as admin:
        admin.flushall()
    return redis_server


def issuers_on(
    server: RedisServer, kit: TokenKit, count: int, policy: SessionPolicy | None = None
) -> list[Issuer]:
    """``count`` issuers, each with its own connection pool: separate "processes"."""
    issuers = []
    for _ in range(count):
        store = RedisStore.from_url(server.url)
        issuer = Issuer(kit.keyring, kit.settings, store, clock=kit.clock, policy=policy)
        _STORES[issuer] = store
        issuers.append(issuer)
    return issuers


_STORES: dict[Issuer, RedisStore] = {}  # the store each test issuer was built on


def issuer_on(url: str, kit: TokenKit, **store_options: Any) -> Issuer:
    """One issuer on its own RedisStore (closed by ``close_all``)."""
    store = RedisStore.from_url(url, **store_options)
    issuer = Issuer(kit.keyring, kit.settings, store, clock=kit.clock)
    _STORES[issuer] = store
    return issuer


async def close_all(issuers: list[Issuer]) -> None:
    for issuer in issuers:
        await _STORES.pop(issuer).close()


# -- the race ----------------------------------------------------------------------------------


async def test_200_concurrent_refreshes_leave_one_generation(
    fresh_redis: RedisServer, make_kit: Callable[..., TokenKit]
) -> None:
    kit = make_kit("HS256")
    issuers = issuers_on(fresh_redis, kit, 8)
    try:
        pair = await issuers[0].login("alice", "user")
        results = await asyncio.gather(
            *(issuers[i % 8].refresh(pair.refresh_token) for i in range(200)),
            return_exceptions=True,
        )
        pairs = [r for r in results if isinstance(r, TokenPair)]
        errors = [r for r in results if not isinstance(r, TokenPair)]
        # One client, racing: nobody is logged out. One rotation, a few grace answers
        # (SessionPolicy.grace_answers), the rest refused for now (429), never theft.
        assert all(isinstance(e, RateLimited) for e in errors), errors
        assert [p.outcome for p in pairs].count("rotated") == 1
        assert len(pairs) == 1 + SessionPolicy().grace_answers
        assert len({p.refresh_token for p in pairs}) == 1  # one successor, no fork
        secret = kit.keyring.refresh_secret
        assert decode_refresh_token(secret, pairs[0].refresh_token).gen == 1
        stored = await issuers[0].session(pair.session_id)
        assert stored is not None
        assert stored.generation == 1

        successor = pairs[0].refresh_token
        assert (await issuers[1].refresh(successor)).session_id == pair.session_id
        kit.clock.advance(11)
        with pytest.raises(RefreshReused):  # the successor worked once; later reuse is theft
            await issuers[2].refresh(successor)
    finally:
        await close_all(issuers)


async def test_concurrent_refreshes_without_grace_never_fork(
    fresh_redis: RedisServer, make_kit: Callable[..., TokenKit]
) -> None:
    kit = make_kit("HS256")
    issuers = issuers_on(fresh_redis, kit, 4, SessionPolicy(grace=0))
    try:
        pair = await issuers[0].login("alice", "user")
        kit.clock.advance(1)
        results = await asyncio.gather(
            *(issuers[i % 4].refresh(pair.refresh_token) for i in range(50)),
            return_exceptions=True,
        )
        winners = [r for r in results if isinstance(r, TokenPair)]
        assert len(winners) == 1
        losers = [r for r in results if not isinstance(r, TokenPair)]
        # The first reuse is theft and revokes the session; later racers find no session.
        assert all(isinstance(r, RefreshReused | SessionNotFound) for r in losers), losers
        assert any(isinstance(r, RefreshReused) for r in losers)
        # Reuse with zero grace is theft, so the session is gone: no live generation at all.
        assert await issuers[0].session(pair.session_id) is None
    finally:
        await close_all(issuers)


# -- faults ------------------------------------------------------------------------------------


async def _storm_then_kill(
    server: RedisServer, kit: TokenKit, sessions: int, kill_after: int
) -> tuple[dict[str, str], list[BaseException]]:
    """Refresh ``sessions`` chains concurrently; SIGKILL Redis after ``kill_after`` successes.

    Returns the last refresh token each chain was *given* (so, committed) and every
    exception callers saw.
    """
    issuer = issuer_on(server.url, kit)
    last: dict[str, str] = {}
    for _ in range(sessions):
        pair = await issuer.login("user-" + os.urandom(3).hex(), "user")
        last[pair.session_id] = pair.refresh_token
    done = 0
    seen: list[BaseException] = []

    async def chain(sid: str) -> None:
        nonlocal done
        while True:
            try:
                pair = await issuer.refresh(last[sid])
            except Exception as exc:  # collected and checked by the caller
                seen.append(exc)
                return
            last[sid] = pair.refresh_token
            done += 1
            if done == kill_after:
                server.kill()

    await asyncio.gather(*(chain(sid) for sid in list(last)))
    await close_all([issuer])
    return last, seen


@pytest.mark.parametrize("persist", [True, False], ids=["aof", "no-persistence"])
async def test_redis_killed_during_refresh_storm(
    tmp_path: Path, make_kit: Callable[..., TokenKit], persist: bool
) -> None:
    kit = make_kit("HS256")
    server = RedisServer(tmp_path / "redis", persist=persist)
    server.start()
    try:
        last, seen = await _storm_then_kill(server, kit, sessions=30, kill_after=150)
        assert len(seen) == 30  # every chain ended on the crash...
        assert all(isinstance(e, StoreUnavailable) for e in seen), seen  # ...with a clear error
        assert {e.code for e in seen if isinstance(e, StoreUnavailable)} == {"store_unavailable"}

        server.start()  # same port, same directory
        issuer = issuer_on(server.url, kit)
        try:
            # Nothing half-written: every session key that survived decodes whole.
            with server.client() as admin:
                stored = [k for k in admin.scan_iter("js:{*}.*")]
            for key in stored:
                sid = key[4:12] + key[13:]
                assert await issuer.session(sid) is not None, key
            assert len(stored) == (len(last) if persist else 0)
            for sid, token in last.items():
                if persist:
                    # The last token handed out was committed: it works (as the current
                    # generation, or as the predecessor of a successor whose reply was lost).
                    pair = await issuer.refresh(token)
                    assert pair.session_id == sid
                    info = await issuer.session(sid)
                    assert info is not None
                    gen = decode_refresh_token(kit.keyring.refresh_secret, pair.refresh_token).gen
                    assert info.generation == gen
                else:
                    with pytest.raises(SessionNotFound):  # fail closed, never accepted
                        await issuer.refresh(token)
        finally:
            await close_all([issuer])
    finally:
        server.stop()


async def test_unreachable_redis_is_store_unavailable(
    tmp_path: Path, make_kit: Callable[..., TokenKit]
) -> None:
    kit = make_kit("HS256")
    with running_redis(tmp_path / "r") as server:
        issuer = issuer_on(server.url, kit)
        pair = await issuer.login("alice", "user")
        server.stop()
        for call in (
            issuer.login("alice", "user"),
            issuer.refresh(pair.refresh_token),
            issuer.logout(pair.session_id),
            issuer.logout_all("alice"),
            issuer.sessions("alice"),
        ):
            with pytest.raises(StoreUnavailable):
                await call
        await close_all([issuer])


async def test_paused_redis_times_out_as_store_unavailable(
    tmp_path: Path, make_kit: Callable[..., TokenKit]
) -> None:
    kit = make_kit("HS256")
    with running_redis(tmp_path / "r") as server:
        store = RedisStore.from_url(server.url, socket_timeout=0.2)
        issuer = Issuer(kit.keyring, kit.settings, store, clock=kit.clock)
        pair = await issuer.login("alice", "user")
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(StoreUnavailable):
                await issuer.refresh(pair.refresh_token)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        await store.close()
        # The refresh may or may not have run on the server; retrying inside the grace
        # window is safe either way and never forks.
        issuer = issuer_on(server.url, kit)
        retried = await issuer.refresh(pair.refresh_token)
        assert decode_refresh_token(kit.keyring.refresh_secret, retried.refresh_token).gen == 1
        await close_all([issuer])


# -- the data model ------------------------------------------------------------------------------


async def test_every_key_expires_and_shares_the_users_slot(
    fresh_redis: RedisServer, make_kit: Callable[..., TokenKit]
) -> None:
    kit = make_kit("HS256")
    (issuer,) = issuers_on(fresh_redis, kit, 1)
    try:
        one = await issuer.login("alice", "user")
        await issuer.login("alice", "user")
        await issuer.refresh(one.refresh_token)
        await issuer.reissue("alice")
        with fresh_redis.client() as admin:
            keys = sorted(admin.keys("js:*"))
            assert sum(1 for k in keys if k.startswith("js:{") and "}." in k) == 2  # sessions
            assert any(":u:" in k for k in keys)
            assert any(":n:" in k for k in keys)
            for key in keys:
                if key == "js:feed":
                    continue  # the one bounded key: trimmed by age, not expired
                assert admin.pttl(key) > 0, key
            slots = {key_slot(k.encode()) for k in keys if k != "js:feed"}
            assert len(slots) == 1  # every script touches one slot
    finally:
        await close_all([issuer])


async def test_bytes_per_session(
    fresh_redis: RedisServer, make_kit: Callable[..., TokenKit], capsys: pytest.CaptureFixture[str]
) -> None:
    kit = make_kit("HS256")
    (issuer,) = issuers_on(fresh_redis, kit, 1)
    users, per_user = 200, 2
    ua = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
    try:
        for u in range(users):
            for _ in range(per_user):
                meta = ClientMetadata(user_agent=ua, ip="203.0.113.77")
                await issuer.login(f"user-{u:06d}", "user", metadata=meta)
        with fresh_redis.client() as admin:
            total = sum(int(admin.memory_usage(k, samples=0) or 0) for k in admin.keys("js:*"))
        per_session = total / (users * per_user)
        with capsys.disabled():
            print(f"\nRedisStore: {per_session:.0f} bytes per session (MEMORY USAGE, all keys)")
        assert per_session <= 512
    finally:
        await close_all([issuer])


def test_settings_fixture_is_shared() -> None:
    # Guard for the helpers above: they rely on the default access TTL.
    assert TokenSettings(issuer="i", audience="a").access_ttl == 900


# -- the protocol written once -------------------------------------------------------------------


async def test_python_and_lua_spell_every_key_alike(fresh_redis: RedisServer) -> None:
    store = RedisStore.from_url(fresh_redis.url, prefix="app1")
    sid, tag = new_session_id("alice"), user_tag("alice")
    script = LUA_KEYS + (
        "return {k_session(ARGV[2]), k_index(ARGV[3], ARGV[4]), k_nbf(ARGV[3], ARGV[4])}"
    )
    try:
        lua = await store.client.eval(script, 0, "app1", sid, tag, "alice")
        keys = store.keys
        assert lua == [keys.session(sid), keys.index(tag, "alice"), keys.not_before(tag, "alice")]
        assert keys.session(sid).startswith("app1:{" + tag + "}")  # the cluster hash tag
    finally:
        await store.close()


async def test_every_state_script_answers_status_pending_payload_and_the_field_list(
    fresh_redis: RedisServer,
) -> None:
    store = RedisStore.from_url(fresh_redis.url)
    sid = new_session_id("alice")
    meta = ClientMetadata(user_agent="Firefox/140", ip="203.0.113.7")
    try:
        await store.create(
            NewSession(sid, "alice", "user", {"org": "acme"}, meta, "fp:x"),
            now=T0,
            absolute_ttl=3600,
            idle_ttl=600,
        )
        raw = await store.client.eval(
            lua_scripts.GET, 1, store.keys.session(sid), store.prefix, sid, T0 * 1000, ""
        )
        status, pending, *fields = raw
        assert (status, pending) == ("ok", [])
        # One value per SESSION_FIELDS entry, in its order, parsed by its parser.
        assert len(fields) == SESSION_WIDTH == len(SESSION_FIELDS)
        by_name = {
            name: parse(value)
            for (name, _, parse), value in zip(SESSION_FIELDS, fields, strict=True)
        }
        assert by_name == {
            "sid": sid,
            "user_id": "alice",
            "role": "user",
            "extra_claims": {"org": "acme"},
            "generation": 0,
            "created_at": T0,
            "last_used_at": T0,
            "expires_at": T0 + 600,
            "absolute_expires_at": T0 + 3600,
            "user_agent": "Firefox/140",
            "ip": "203.0.113.7",
            "binding": "fp:x",
        }
        assert parse_session(fields) == await store.get(sid, now=T0)
    finally:
        await store.close()


async def test_a_not_before_written_by_0_1_0_in_seconds_still_revokes(
    fresh_redis: RedisServer,
) -> None:
    """A rolling upgrade: 0.1.0 processes wrote the user not-before in whole seconds
    (feed field ``n`` and the ``n:`` key). Read as microseconds it would revoke
    nothing; it is read as the seconds it is."""
    store = RedisStore.from_url(fresh_redis.url)
    tag, sid = user_tag("alice"), new_session_id("alice")
    try:
        with fresh_redis.client() as admin:
            admin.xadd(
                "js:feed", {"k": "user", "s": "alice", "u": "1800000911000", "n": "1800000001"}
            )
            admin.set(store.keys.not_before(tag, "alice"), "1800000001", px=60_000)
        (entry,) = (await store.feed_snapshot(now=T0)).entries
        assert entry.not_before_us == 1_800_000_001_000_000
        meta = ClientMetadata()
        grant = await store.create(
            NewSession(sid, "alice", "user", {}, meta), now=T0, absolute_ttl=60, idle_ttl=60
        )
        assert grant.user_not_before_us == 1_800_000_001_000_000
    finally:
        await store.close()
