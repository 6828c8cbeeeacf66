"""MemoryStore is the executable specification of the Lua: a stateful model test.

A hypothesis ``RuleBasedStateMachine`` drives MemoryStore and RedisStore with
the same random sequence of logins, refreshes (current, grace, stale, future,
racing at one instant, from matching and other bindings, with the per-address
brake on or off), logouts, logout-others, logout-alls (with and without an own
session), reissues, claim updates, rate-limit hits, access-token revocations
and clock steps, and requires after every step the same answer (value or
error, with its details), the same live sessions and the same live revocation
feed. A divergence fails with a minimal sequence.

``make test`` runs a bounded number of examples on one private Redis;
``make model`` runs a long campaign on one Redis and on the 3-master cluster
(``JWTSESS_MODEL_EXAMPLES``, ``JWTSESS_MODEL_BACKENDS``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from jwtsess.errors import AuthError, RateLimited, RefreshReused
from jwtsess.refresh_token import new_session_id
from jwtsess.sessions import ClientMetadata, SessionPolicy, key_binding
from jwtsess.store.base import NewSession, SessionStore
from jwtsess.store.memory import MemoryStore
from jwtsess.store.redis import RedisStore
from tests.support.kit import T0

EXAMPLES = int(os.environ.get("JWTSESS_MODEL_EXAMPLES", "25"))
BACKENDS = os.environ.get("JWTSESS_MODEL_BACKENDS", "redis").split(",")

USERS = ("alice", "bob")
# Lifetimes end on a fraction of a second and the clock moves in whole seconds,
# so a key's real-time TTL (a relative PX set from the simulated clock) is never
# under ~1 s: Redis collects no key the model still considers live.
ABSOLUTE, IDLE, REVOCATION_TTL = 3600.999, 1800.999, 911.0
POLICY = SessionPolicy(
    grace=10, grace_answers=2, refresh_limit=3, refresh_window=60, address_refresh_limit=None
)
# Mostly one client, so grace answers happen; sometimes another, or a key.
BINDINGS = ("fp:one", "fp:one", "fp:one", "fp:two", "", key_binding("thumbprint-1"))
# Around the grace window (10 s), the rate-limit window (60 s), revocation
# lifetimes (911 s) and the idle (1801 s) and absolute (3601 s) lifetimes.
STEPS = (1, 1, 9, 10, 10, 11, 49, 60, 600, 905, 1800)


def outcome(value: Any) -> Any:
    return ("ok", value)


def failure(error: AuthError) -> Any:
    details: tuple[Any, ...] = (type(error).__name__, error.code, error.detail)
    if isinstance(error, RateLimited):
        details += (error.retry_after,)
    if isinstance(error, RefreshReused):
        details += (error.sid, error.user_id)
    return ("error", details)


class StoreModel(RuleBasedStateMachine):
    """Two stores, one sequence; every answer compared."""

    #: builds the RedisStore under test (set per backend by the test)
    redis_url: str = ""
    cluster: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.memory = MemoryStore()
        self.redis = RedisStore.from_url(self.redis_url, cluster=self.cluster)
        self.now = T0
        self.sessions: dict[str, str] = {}  # sid -> user, newest first (what draws prefer)
        self.generation: dict[str, int] = {}  # sid -> the current generation as last answered

    def teardown(self) -> None:
        self.loop.run_until_complete(self.redis.close())
        self.loop.close()

    def both(self, call: Callable[[SessionStore], Awaitable[Any]]) -> Any:
        """Run ``call`` on each store; the answers (or errors) must be equal."""
        answers = []
        for store in (self.memory, self.redis):
            try:
                answers.append(outcome(self.loop.run_until_complete(call(store))))
            except AuthError as error:
                answers.append(failure(error))
        assert answers[0] == answers[1], f"memory {answers[0]!r} != redis {answers[1]!r}"
        return answers[0]

    @initialize()
    def flush(self) -> None:
        self.loop.run_until_complete(self.redis.client.flushall())  # our private server(s)

    # -- sessions --------------------------------------------------------------------------

    @rule(user=st.sampled_from(USERS), binding=st.sampled_from(BINDINGS))
    def login(self, user: str, binding: str) -> None:
        sid = new_session_id(user)
        meta = ClientMetadata(user_agent="Firefox/140", ip="203.0.113.7")
        self.both(
            lambda s: s.create(
                NewSession(sid, user, "user", {"org": "acme"}, meta, binding),
                now=self.now,
                absolute_ttl=ABSOLUTE,
                idle_ttl=IDLE,
            )
        )
        self.sessions = {sid: user, **self.sessions}
        self.generation[sid] = 0

    @precondition(lambda self: self.sessions)
    @rule(
        data=st.data(),
        which=st.sampled_from(("current", "current", "grace", "stale", "future")),
        binding=st.sampled_from(BINDINGS),
        ua=st.sampled_from((None, "Chrome/150")),
        address_retry_after=st.sampled_from((0.0, 0.0, 0.0, 12.5)),
        racing=st.booleans(),
    )
    def refresh(
        self,
        data: st.DataObject,
        which: str,
        binding: str,
        ua: str | None,
        address_retry_after: float,
        racing: bool,
    ) -> None:
        sid = data.draw(st.sampled_from(list(self.sessions)))
        current = self.generation[sid]
        presented = {"current": current, "grace": current - 1, "stale": current - 2}.get(
            which, current + 1
        )
        for _ in range(2 if racing else 1):  # racing: the same token twice at one instant
            answer = self.both(
                lambda s: s.rotate(
                    sid,
                    max(presented, 0),
                    now=self.now,
                    policy=POLICY,
                    metadata=ClientMetadata(user_agent=ua, ip="198.51.100.1"),
                    revocation_ttl=REVOCATION_TTL,
                    binding=binding,
                    address_retry_after=address_retry_after,
                )
            )
            if answer[0] == "ok":
                self.generation[sid] = answer[1].session.generation

    # Refreshing is most of what happens to a session: three rules' worth of draws.
    refresh_again = refresh
    refresh_once_more = refresh

    # -- the rest: claims, revocations, limits, time ---------------------------------------

    @rule(
        data=st.data(),
        kind=st.sampled_from(
            ("update_claims", "logout", "logout_others", "logout_all", "reissue", "revoke_token")
        ),
        user=st.sampled_from(USERS),
        role=st.sampled_from((None, "admin")),
        own=st.booleans(),
    )
    def change(
        self, data: st.DataObject, kind: str, user: str, role: str | None, own: bool
    ) -> None:
        sid = data.draw(st.sampled_from(list(self.sessions))) if self.sessions else None
        now, ttl = self.now, REVOCATION_TTL
        if kind == "update_claims" and sid is not None:
            self.both(lambda s: s.update_claims(sid, role or "user", {"org": "x"}, now=now))
        elif kind == "logout" and sid is not None:
            self.both(lambda s: s.revoke_session(sid, now=now, revocation_ttl=ttl))
        elif kind == "logout_others" and sid is not None:
            self.both(lambda s: s.logout_others(sid, now=now, revocation_ttl=ttl))
        elif kind == "logout_all":
            own_sid = sid if own else None
            self.both(lambda s: s.logout_all(user, now=now, revocation_ttl=ttl, sid=own_sid))
        elif kind == "reissue":
            extra = {"org": "beta"} if own else None
            self.both(
                lambda s: s.reissue(
                    user, now=now, revocation_ttl=ttl, role=role, extra_claims=extra
                )
            )
        elif kind == "revoke_token":
            self.both(lambda s: s.revoke_token(f"jti-{user}", now=now, until=now + 60))

    @rule(bucket=st.sampled_from(("ip:a", "ip:b")))
    def hit_rate_limit(self, bucket: str) -> None:
        self.both(lambda s: s.hit_rate_limit([bucket], now=self.now, limit=2, window=60))

    @rule(seconds=st.sampled_from(STEPS))
    def step(self, seconds: int) -> None:
        self.now += seconds

    # -- what both must hold after every step ---------------------------------------------

    @invariant()
    def same_sessions(self) -> None:
        def listing(user: str) -> Callable[[SessionStore], Awaitable[Any]]:
            return lambda s: s.list_for_user(user, now=self.now)

        def reading(sid: str) -> Callable[[SessionStore], Awaitable[Any]]:
            return lambda s: s.get(sid, now=self.now)

        for user in USERS:
            self.both(listing(user))
        for sid in self.sessions:
            self.both(reading(sid))

    @invariant()
    def same_live_feed(self) -> None:
        async def live(store: SessionStore) -> Any:
            batch = await store.feed_snapshot(now=self.now)
            return [r for r in batch.entries if r.until > self.now]

        self.both(live)


@pytest.mark.system  # private redis-servers
@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_store_and_redis_store_agree(backend: str, request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue("redis_cluster" if backend == "cluster" else "redis_server")
    machine = type(
        "StoreModelOn" + backend.title(),
        (StoreModel,),
        {"redis_url": server.url, "cluster": backend == "cluster"},
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=EXAMPLES <= 100,  # the bounded run in make test is reproducible
        ),
    )
