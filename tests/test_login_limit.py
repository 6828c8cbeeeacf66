"""LoginLimiter on every store, with an injected clock (no sleeping through windows)."""

from __future__ import annotations

import asyncio

import pytest

from jwtsess import LoginLimiter, LoginLimits, RateLimited
from jwtsess.store.base import SessionStore
from tests.support.kit import MutableClock

# Aligned to every window used below (60 s, 900 s, 86 400 s): a test starts a window.
START = 1_800_057_600.0

ATTACKER = "203.0.113.9"
OWNER = "198.51.100.7"


async def _allowed(limiter: LoginLimiter, account: str, address: str | None) -> bool:
    try:
        await limiter.attempt(account, address)
    except RateLimited:
        return False
    return True


async def _until_refused(limiter: LoginLimiter, account: str, address: str) -> int:
    """Attempts allowed before the first refusal (at most 1000)."""
    for allowed in range(1000):
        if not await _allowed(limiter, account, address):
            return allowed
    return 1000


async def test_refusal_names_the_end_of_the_window(store: SessionStore) -> None:
    clock = MutableClock(START + 15)
    limiter = LoginLimiter(store, clock=clock)
    assert await _until_refused(limiter, "alice", ATTACKER) == 5
    with pytest.raises(RateLimited) as refused:
        await limiter.attempt("alice", ATTACKER)
    assert refused.value.status == 429
    assert refused.value.retry_after == 45  # the minute window ends at START + 60
    clock.advance(45)
    assert await _allowed(limiter, "alice", ATTACKER)


async def test_a_steady_guesser_waits_longer_and_longer(store: SessionStore) -> None:
    """5 a minute; after 20, the rest of the quarter hour; after 50, the rest of the day."""
    clock = MutableClock(START)
    limiter = LoginLimiter(store, clock=clock)
    waits: list[int] = []
    allowed = 0
    while not waits or waits[-1] < 900:  # guess until refused, wait it out, go on
        allowed += await _until_refused(limiter, "alice", ATTACKER)
        with pytest.raises(RateLimited) as refused:
            await limiter.attempt("alice", ATTACKER)
        waits.append(refused.value.retry_after)
        clock.advance(refused.value.retry_after)
    quarter = [60, 60, 60, 60, 900 - 4 * 60]
    assert waits == [*quarter, *quarter, 60, 60, 86400 - (900 + 900 + 2 * 60)]
    assert allowed == 50


async def test_the_owner_at_another_address_is_not_locked_out(store: SessionStore) -> None:
    clock = MutableClock(START)
    limiter = LoginLimiter(store, clock=clock)
    for _ in range(260):  # the attacker keeps hammering while refused
        await _allowed(limiter, "alice", ATTACKER)
    assert not await _allowed(limiter, "alice", ATTACKER)
    assert await _allowed(limiter, "alice", OWNER)
    assert await _allowed(limiter, "bob", ATTACKER)  # another account: its own budget


async def test_distributed_guessing_meets_the_account_ceiling_for_one_window(
    store: SessionStore,
) -> None:
    clock = MutableClock(START)
    limits = LoginLimits(per_account=((30, 900.0),))
    limiter = LoginLimiter(store, limits, clock=clock)
    let_through = 0
    for host in range(20):  # 20 addresses, 5 guesses each get through the per-pair tier
        let_through += await _until_refused(limiter, "alice", f"203.0.113.{host}")
    assert let_through == 30  # the ceiling, not 20 x 5
    assert not await _allowed(limiter, "alice", OWNER)  # the cost: the owner waits too...
    clock.advance(900)
    assert await _allowed(limiter, "alice", OWNER)  # ...for one window at most


async def test_refused_attempts_do_not_spend_the_account_ceiling(store: SessionStore) -> None:
    clock = MutableClock(START)
    limits = LoginLimits(per_account=((10, 900.0),))
    limiter = LoginLimiter(store, limits, clock=clock)
    for _ in range(500):
        await _allowed(limiter, "alice", ATTACKER)
    assert await _allowed(limiter, "alice", OWNER)  # only 5 of the 500 reached the ceiling


async def test_spraying_many_accounts_from_one_address_is_throttled(store: SessionStore) -> None:
    clock = MutableClock(START)
    limiter = LoginLimiter(store, LoginLimits(per_address=((20, 60.0),)), clock=clock)
    outcomes = [await _allowed(limiter, f"user-{n}", ATTACKER) for n in range(25)]
    assert outcomes == [True] * 20 + [False] * 5
    assert await _allowed(limiter, "user-99", OWNER)


async def test_unknown_addresses_share_one_budget(store: SessionStore) -> None:
    limiter = LoginLimiter(store, clock=MutableClock(START))
    assert [await _allowed(limiter, "alice", None) for _ in range(6)] == [True] * 5 + [False]


async def test_a_scope_can_be_turned_off(store: SessionStore) -> None:
    limits = LoginLimits(per_account_address=(), per_address=(), per_account=((3, 60.0),))
    limiter = LoginLimiter(store, limits, clock=MutableClock(START))
    outcomes = [await _allowed(limiter, "alice", f"203.0.113.{n}") for n in range(4)]
    assert outcomes == [True, True, True, False]


@pytest.mark.parametrize(
    "tiers",
    [((0, 60.0),), ((5, 0.0),), ((5, float("inf")),), ((5, 900.0), (20, 60.0)), ((True, 60.0),)],
)
def test_bad_tiers_are_refused(tiers: tuple[tuple[int, float], ...]) -> None:
    with pytest.raises(ValueError, match="per_account"):
        LoginLimits(per_account=tiers)


async def test_successful_logins_are_refunded(store: SessionStore) -> None:
    """A user (or a test suite, or a NAT full of users) logging in often is never throttled."""
    limiter = LoginLimiter(store, clock=MutableClock(START))
    for _ in range(200):
        attempt = await limiter.attempt("alice", OWNER)
        await attempt.succeeded()
        await attempt.succeeded()  # idempotent: one refund per attempt
    # The budget for failures is whole.
    assert await _until_refused(limiter, "alice", OWNER) == 5


async def test_concurrent_guesses_are_counted_one_by_one(store: SessionStore) -> None:
    limiter = LoginLimiter(store, clock=MutableClock(START))
    # A fresh RedisCluster client hit by 30 first calls at once fails some with
    # ConnectionError (its initialisation races; reported to the store owner).
    await limiter.attempt("warm-up", OWNER)
    outcomes = await asyncio.gather(*(_allowed(limiter, "alice", ATTACKER) for _ in range(30)))
    assert outcomes.count(True) == 5


async def test_a_refund_after_the_window_ended_changes_nothing(store: SessionStore) -> None:
    clock = MutableClock(START + 59)
    limiter = LoginLimiter(store, LoginLimits(per_address=(), per_account=()), clock=clock)
    slow = await limiter.attempt("alice", OWNER)
    clock.advance(2)  # the password check outlived the minute
    assert await _until_refused(limiter, "alice", OWNER) == 5  # a new minute
    await slow.succeeded()  # refunds the minute it was counted in, not this one
    assert not await _allowed(limiter, "alice", OWNER)
