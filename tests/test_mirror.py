"""RevocationMirror in one process: enforcement, expiry, staleness policy, memory per entry."""

from __future__ import annotations

import logging
import sys
import tracemalloc
from collections.abc import Callable

import pytest

from jwtsess import RevocationStateStale, TokenRevoked, Verifier
from jwtsess.access import MICROS as US
from jwtsess.access import AccessClaims
from jwtsess.issuer import Issuer
from jwtsess.mirror import RevocationMirror, StalenessPolicy
from jwtsess.refresh_token import new_session_id
from jwtsess.store.base import Revocation, SessionStore
from jwtsess.store.memory import MemoryStore
from tests.support.kit import T0, MutableClock, TokenKit


class Ticker:
    """An injected monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def claims(
    sub: str = "alice", sid: str = "sid-1", jti: str = "jti-1", iat: int = 0
) -> AccessClaims:
    stamp = iat or int(T0)
    return AccessClaims(
        sub=sub, role="user", sid=sid, jti=jti, iat=stamp, nbf=stamp, exp=stamp + 900,
        iss="i", aud="a", kid="k",
    )  # fmt: skip


@pytest.fixture
async def mirror(clock: MutableClock) -> RevocationMirror:
    m = RevocationMirror(MemoryStore(), clock=clock, monotonic=Ticker())
    await m.load()  # heard from the (empty) feed: fresh
    return m


# -- the check -------------------------------------------------------------------------------


def test_each_kind_is_enforced(mirror: RevocationMirror) -> None:
    mirror.apply(
        [
            Revocation("jti", "bad-jti", T0 + 100),
            Revocation("sid", "bad-sid", T0 + 100),
            Revocation("user", "mallory", T0 + 100, not_before_us=(int(T0) + 1) * US),
        ]
    )
    mirror.check(claims())
    for revoked in (claims(jti="bad-jti"), claims(sid="bad-sid"), claims(sub="mallory")):
        with pytest.raises(TokenRevoked) as err:
            mirror.check(revoked)
        assert err.value.code == "token_revoked"
    mirror.check(claims(sub="mallory", iat=int(T0) + 1))  # issued at the not-before: fine


def test_latest_not_before_wins_and_apply_is_idempotent(
    mirror: RevocationMirror, clock: MutableClock
) -> None:
    entry = Revocation("user", "u", T0 + 100, not_before_us=(int(T0) + 5) * US)
    mirror.apply([entry, Revocation("user", "u", T0 + 50, not_before_us=(int(T0) + 2) * US), entry])
    assert len(mirror) == 1
    with pytest.raises(TokenRevoked):
        mirror.check(claims(sub="u", iat=int(T0) + 4))
    mirror.check(claims(sub="u", iat=int(T0) + 5))
    clock.advance(99)  # past the shorter until, not the longer one
    mirror.sweep()
    assert mirror.revokes("user", "u")
    clock.advance(1)
    mirror.sweep()
    assert not mirror.revokes("user", "u")


def test_listeners_get_each_applied_batch_until_removed(
    mirror: RevocationMirror, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[list[Revocation]] = []

    def broken(entries: list[Revocation]) -> None:
        raise RuntimeError("listener bug")

    remove = mirror.add_listener(seen.append)
    remove_broken = mirror.add_listener(broken)
    entry = Revocation("sid", "s-1", T0 + 100)
    with caplog.at_level(logging.ERROR, logger="jwtsess.mirror"):
        mirror.apply([entry, Revocation("jti", "old", T0 - 1)])  # the expired one is not news
    assert seen == [[entry]]
    assert "listener bug" in caplog.text  # logged; the feed and the other listener go on
    remove()
    remove()  # idempotent
    remove_broken()
    mirror.apply([Revocation("sid", "s-2", T0 + 100)])
    assert seen == [[entry]]
    mirror.apply([])  # nothing applied: listeners are not called
    assert seen == [[entry]]


def test_expired_entries_are_ignored_and_swept(
    mirror: RevocationMirror, clock: MutableClock
) -> None:
    mirror.apply([Revocation("jti", "old", T0 - 1), Revocation("jti", "new", T0 + 10)])
    assert mirror.revokes("jti", "new")
    assert not mirror.revokes("jti", "old")
    clock.advance(10)
    mirror.sweep()
    assert len(mirror) == 0


# -- staleness -------------------------------------------------------------------------------


async def test_fail_closed_when_stale(clock: MutableClock) -> None:
    ticker = Ticker()
    mirror = RevocationMirror(MemoryStore(), clock=clock, monotonic=ticker, stale_after=5)
    await mirror.load()
    ticker.now += 5
    mirror.check(claims())  # exactly at the bound: still fine
    ticker.now += 0.01
    with pytest.raises(RevocationStateStale) as err:
        mirror.check(claims())
    assert (err.value.code, err.value.status) == ("revocation_state_stale", 503)
    assert mirror.lag() == pytest.approx(5.01)


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
def test_a_mirror_never_started_is_a_clear_error(
    clock: MutableClock, caplog: pytest.LogCaptureFixture, policy: StalenessPolicy
) -> None:
    """Issue 12.8: it used to answer 503 (or, under fail_open, accept) and log nothing."""
    mirror = RevocationMirror(MemoryStore(), clock=clock, monotonic=Ticker(), policy=policy)
    caplog.set_level(logging.DEBUG, logger="jwtsess.mirror")
    for _ in range(50):  # refused under either policy: a wiring mistake is not an outage
        with pytest.raises(RevocationStateStale) as err:
            mirror.check(claims())
        assert err.value.status == 503
    assert mirror.stale_accepts == 0
    assert [(r.levelno, "mirror.start()" in r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, True)
    ]  # once, not once per request
    assert mirror.lag() == float("inf")


async def test_fail_open_accepts_counts_and_still_enforces_what_it_knows(
    clock: MutableClock,
) -> None:
    ticker = Ticker()
    mirror = RevocationMirror(
        MemoryStore(), clock=clock, monotonic=ticker, stale_after=5, policy="fail_open"
    )
    await mirror.load()
    mirror.apply([Revocation("jti", "bad", T0 + 100)])
    ticker.now += 60
    for _ in range(3):
        mirror.check(claims())
    assert mirror.stale_accepts == 3
    with pytest.raises(TokenRevoked):  # what it does know is still enforced
        mirror.check(claims(jti="bad"))


@pytest.mark.parametrize(
    ("policy", "says"),
    [("fail_closed", "refuses every token"), ("fail_open", "accepting tokens (fail_open)")],
)
async def test_a_stale_spell_logs_one_warning_and_one_info_with_its_length(
    clock: MutableClock, caplog: pytest.LogCaptureFixture, policy: StalenessPolicy, says: str
) -> None:
    """Issue 12.8: fail_closed went stale silently; fail_open warned every 10 s."""
    ticker = Ticker()
    mirror = RevocationMirror(
        MemoryStore(), clock=clock, monotonic=ticker, stale_after=5, policy=policy
    )
    await mirror.load()
    caplog.set_level(logging.DEBUG, logger="jwtsess.mirror")
    for _ in range(240):  # a request every 0.5 s for two minutes, the feed silent
        ticker.now += 0.5
        try:
            mirror.check(claims())
        except RevocationStateStale:
            assert policy == "fail_closed"
    assert mirror.stale_accepts == (0 if policy == "fail_closed" else 230)
    await mirror.load()  # heard from the feed again
    for _ in range(10):
        mirror.check(claims())
    records = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert len(records) == 2, records
    assert records[0][0] == logging.WARNING
    assert says in records[0][1]
    assert records[1][0] == logging.INFO
    assert "after 115.0s stale" in records[1][1]  # stale from 5 s after the last read to 120 s


async def test_async_with_starts_and_stops_the_follower(clock: MutableClock) -> None:
    store = MemoryStore()
    async with RevocationMirror(store, clock=clock, block=0.05) as mirror:
        assert mirror.healthy
        await store.revoke_token("j", now=clock(), until=clock() + 60)
        for _ in range(20):
            if mirror.revokes("jti", "j"):
                break
            assert await mirror.wait_for_progress(timeout=2.0)
        assert mirror.revokes("jti", "j")
    assert mirror.cursor is not None
    await mirror.stop()  # already stopped: a no-op


@pytest.mark.parametrize(
    "kwargs", [{"policy": "fail_later"}, {"block": 0}, {"block": 10, "stale_after": 5}]
)
def test_bad_configuration(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must"):
        RevocationMirror(MemoryStore(), **kwargs)  # type: ignore[arg-type]


# -- end to end with the issuer and verifier, on every store --------------------------------


async def _setup(
    make_kit: Callable[..., TokenKit], store: SessionStore
) -> tuple[TokenKit, Issuer, Verifier, RevocationMirror]:
    kit = make_kit("HS256")
    mirror = RevocationMirror(store, clock=kit.clock)
    await mirror.load()
    issuer = Issuer(kit.keyring, kit.settings, store, clock=kit.clock, mirror=mirror)
    verifier = Verifier(kit.keyring, kit.settings, clock=kit.clock, revocation=mirror)
    return kit, issuer, verifier, mirror


async def test_logout_is_enforced_before_it_returns(
    make_kit: Callable[..., TokenKit], store: SessionStore
) -> None:
    _kit, issuer, verifier, _ = await _setup(make_kit, store)
    mine = await issuer.login("alice", "user")
    other = await issuer.login("alice", "user")
    verifier.verify(mine.access_token)  # cached now: the cache must not bypass revocation
    await issuer.logout(mine.session_id)
    with pytest.raises(TokenRevoked):
        verifier.verify(mine.access_token)
    assert verifier.verify(other.access_token).sid == other.session_id


async def test_logout_all_and_fresh_login(
    make_kit: Callable[..., TokenKit], store: SessionStore
) -> None:
    _kit, issuer, verifier, _ = await _setup(make_kit, store)
    old = [await issuer.login("alice", "user") for _ in range(3)]
    bob = await issuer.login("bob", "user")
    await issuer.logout_all("alice")
    for pair in old:
        with pytest.raises(TokenRevoked):
            verifier.verify(pair.access_token)
    assert verifier.verify(bob.access_token).sub == "bob"
    again = await issuer.login("alice", "user")  # same instant: must not be caught
    assert verifier.verify(again.access_token).sub == "alice"


async def test_reissue_kills_access_tokens_but_not_sessions(
    make_kit: Callable[..., TokenKit], store: SessionStore
) -> None:
    _kit, issuer, verifier, _ = await _setup(make_kit, store)
    pair = await issuer.login("alice", "user")
    await issuer.reissue("alice", role="admin")
    with pytest.raises(TokenRevoked):
        verifier.verify(pair.access_token)
    refreshed = await issuer.refresh(pair.refresh_token)
    assert verifier.verify(refreshed.access_token).role == "admin"


async def test_theft_revokes_the_victims_access_token(
    make_kit: Callable[..., TokenKit], store: SessionStore
) -> None:
    kit, issuer, verifier, _ = await _setup(make_kit, store)
    stolen = await issuer.login("alice", "user")
    victim = await issuer.refresh(stolen.refresh_token)
    kit.clock.advance(11)
    with pytest.raises(Exception, match="already used"):
        await issuer.refresh(stolen.refresh_token)
    with pytest.raises(TokenRevoked):
        verifier.verify(victim.access_token)


async def test_revoke_one_access_token(
    make_kit: Callable[..., TokenKit], store: SessionStore
) -> None:
    _kit, issuer, verifier, _ = await _setup(make_kit, store)
    pair = await issuer.login("alice", "user")
    sibling = await issuer.refresh(pair.refresh_token)
    await issuer.revoke_access_token(pair.claims)
    with pytest.raises(TokenRevoked):
        verifier.verify(pair.access_token)
    assert verifier.verify(sibling.access_token).sid == pair.session_id


async def test_background_follower_sees_another_processs_revocation(
    make_kit: Callable[..., TokenKit], store: SessionStore
) -> None:
    kit = make_kit("HS256")
    follower = RevocationMirror(store, clock=kit.clock, block=0.2)
    await follower.start()
    try:
        other_process = Issuer(kit.keyring, kit.settings, store, clock=kit.clock)
        verifier = Verifier(kit.keyring, kit.settings, clock=kit.clock, revocation=follower)
        pair = await other_process.login("alice", "user")
        verifier.verify(pair.access_token)
        await other_process.logout(pair.session_id)
        for _ in range(20):
            if follower.revokes("sid", pair.session_id):
                break
            assert await follower.wait_for_progress(timeout=2.0)
        with pytest.raises(TokenRevoked):
            verifier.verify(pair.access_token)
        assert follower.healthy
    finally:
        await follower.stop()


async def test_feed_and_mirror_shrink_under_frozen_time(
    make_kit: Callable[..., TokenKit], store: SessionStore
) -> None:
    kit, issuer, _, mirror = await _setup(make_kit, store)
    for _ in range(5):
        await issuer.logout((await issuer.login("alice", "user")).session_id)
    kit.clock.advance(500)
    await issuer.logout_all("bob")
    assert len(mirror) == 6
    assert await store.trim_feed(now=kit.clock()) == 6
    kit.clock.advance(issuer.revocation_ttl - 499)  # the five logouts' tokens have expired
    mirror.sweep()
    assert len(mirror) == 1
    assert await store.trim_feed(now=kit.clock()) == 1
    kit.clock.advance(500)
    mirror.sweep()
    assert len(mirror) == 0
    assert await store.trim_feed(now=kit.clock()) == 0


# -- memory --------------------------------------------------------------------------------------


def test_bytes_per_mirror_entry(
    mirror: RevocationMirror, capsys: pytest.CaptureFixture[str]
) -> None:
    count = 20_000
    entries = [Revocation("sid", new_session_id(f"u{i}"), T0 + 900 + i) for i in range(count)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        mirror.apply(entries)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # The subject strings already exist (they arrived in the feed batch), so add them too:
    strings = sum(sys.getsizeof(e.subject) for e in entries)
    per_entry = (after - before + strings) / count
    with capsys.disabled():
        print(f"\nRevocationMirror: {per_entry:.0f} bytes per entry (sid, incl. its string)")
    assert per_entry <= 200


def test_mirror_logger_is_quiet_when_healthy(
    mirror: RevocationMirror, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jwtsess.mirror")
    for _ in range(100):
        mirror.check(claims())
    assert caplog.records == []


def test_new_session_ids_are_distinct() -> None:
    assert new_session_id("a") != new_session_id("a")
