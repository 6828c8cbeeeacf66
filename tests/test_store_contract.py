"""The SessionStore contract, run against every backend (MemoryStore and a real Redis)."""

from __future__ import annotations

import pytest

from jwtsess import DPoPProofInvalid, RateLimited, RefreshReused, SessionNotFound
from jwtsess.refresh_token import new_session_id
from jwtsess.sessions import ClientMetadata, SessionGrant, SessionPolicy, key_binding
from jwtsess.store.base import GRACE_ANSWERS_SPENT, NewSession, Revocation, SessionStore
from tests.support.kit import T0

DAY = 86400.0
ABS, IDLE, GRACE, RTTL = 30 * DAY, 7 * DAY, 10.0, 911.0
META = ClientMetadata(user_agent="Firefox/140", ip="203.0.113.7")


US = 1_000_000  # user not-before instants are microseconds


async def open_session(
    store: SessionStore,
    user: str = "alice",
    *,
    now: float = T0,
    role: str = "user",
    binding: str = "",
) -> str:
    sid = new_session_id(user)
    await store.create(
        NewSession(sid, user, role, {"org": "acme"}, META, binding),
        now=now,
        absolute_ttl=ABS,
        idle_ttl=IDLE,
    )
    return sid


async def rotate(
    store: SessionStore,
    sid: str,
    gen: int,
    now: float,
    grace: float = GRACE,
    *,
    binding: str = "",
    policy: SessionPolicy | None = None,
    address_retry_after: float = 0.0,
) -> SessionGrant:
    return await store.rotate(
        sid,
        gen,
        now=now,
        policy=policy or SessionPolicy(grace=grace, refresh_limit=1000),
        metadata=ClientMetadata(),
        revocation_ttl=RTTL,
        binding=binding,
        address_retry_after=address_retry_after,
    )


# -- create / get / list -------------------------------------------------------------------


async def test_created_session_is_readable(store: SessionStore) -> None:
    sid = await open_session(store)
    info = await store.get(sid, now=T0 + 1)
    assert info is not None
    assert (info.user_id, info.role, dict(info.extra_claims), info.generation) == (
        "alice",
        "user",
        {"org": "acme"},
        0,
    )
    assert (info.created_at, info.last_used_at) == (T0, T0)
    assert info.expires_at == T0 + IDLE
    assert info.absolute_expires_at == T0 + ABS
    assert (info.user_agent, info.ip) == ("Firefox/140", "203.0.113.7")


async def test_unknown_session_is_none(store: SessionStore) -> None:
    assert await store.get(new_session_id("nobody"), now=T0) is None


async def test_list_shows_only_the_users_live_sessions(store: SessionStore) -> None:
    first = await open_session(store, now=T0)
    second = await open_session(store, now=T0 + 5)
    await open_session(store, "bob")
    listed = await store.list_for_user("alice", now=T0 + 10)
    assert [s.sid for s in listed] == [first, second]
    assert await store.list_for_user("carol", now=T0) == []


async def test_create_returns_the_session_like_rotate(store: SessionStore) -> None:
    sid = new_session_id("u")
    grant = await store.create(
        NewSession(sid, "u", "r", {}, META, "fp:x"), now=T0, absolute_ttl=ABS, idle_ttl=IDLE
    )
    assert (grant.outcome, grant.user_not_before_us) == ("created", 0)
    assert grant.session == await store.get(sid, now=T0)
    assert (grant.session.generation, grant.session.binding) == (0, "fp:x")
    assert grant.session.expires_at == T0 + IDLE


# -- rotation --------------------------------------------------------------------------------


async def test_rotation_advances_the_generation(store: SessionStore) -> None:
    sid = await open_session(store)
    rotation = await rotate(store, sid, 0, T0 + 60)
    assert rotation.outcome == "rotated"
    assert rotation.session.generation == 1
    assert rotation.session.last_used_at == T0 + 60
    assert rotation.session.expires_at == T0 + 60 + IDLE
    assert (await rotate(store, sid, 1, T0 + 120)).session.generation == 2


async def test_predecessor_within_grace_gets_the_same_successor(store: SessionStore) -> None:
    sid = await open_session(store)
    await rotate(store, sid, 0, T0)
    again = await rotate(store, sid, 0, T0 + GRACE - 0.001)
    assert again.outcome == "grace"
    assert again.session.generation == 1
    info = await store.get(sid, now=T0 + GRACE)
    assert info is not None
    assert info.generation == 1


async def test_predecessor_after_grace_is_theft(store: SessionStore) -> None:
    sid = await open_session(store)
    await rotate(store, sid, 0, T0)
    with pytest.raises(RefreshReused) as err:
        await rotate(store, sid, 0, T0 + GRACE)  # the window is half-open
    assert err.value.code == "refresh_reused"
    assert (err.value.sid, err.value.user_id) == (sid, "alice")
    assert await store.get(sid, now=T0 + 20) is None
    with pytest.raises(SessionNotFound):  # the victim's token is dead too
        await rotate(store, sid, 1, T0 + 21)
    snapshot = await store.feed_snapshot(now=T0 + 22)
    assert Revocation("sid", sid, T0 + GRACE + RTTL) in snapshot.entries


async def test_older_generation_is_theft_even_within_grace(store: SessionStore) -> None:
    sid = await open_session(store)
    await rotate(store, sid, 0, T0)
    await rotate(store, sid, 1, T0 + 1)
    with pytest.raises(RefreshReused):
        await rotate(store, sid, 0, T0 + 2)


async def test_zero_grace_makes_every_reuse_theft(store: SessionStore) -> None:
    sid = await open_session(store)
    await rotate(store, sid, 0, T0, grace=0)
    with pytest.raises(RefreshReused):  # even at the very same instant
        await rotate(store, sid, 0, T0, grace=0)


async def test_future_generation_is_theft(store: SessionStore) -> None:
    sid = await open_session(store)
    with pytest.raises(RefreshReused):
        await rotate(store, sid, 5, T0)


async def test_rotate_unknown_session(store: SessionStore) -> None:
    with pytest.raises(SessionNotFound) as err:
        await rotate(store, new_session_id("ghost"), 0, T0)
    assert err.value.code == "session_not_found"


async def test_rotation_records_client_metadata(store: SessionStore) -> None:
    sid = await open_session(store)
    rotation = await store.rotate(
        sid,
        0,
        now=T0 + 1,
        policy=SessionPolicy(),
        metadata=ClientMetadata(user_agent="Chrome/150", ip="198.51.100.1"),
        revocation_ttl=RTTL,
    )
    assert (rotation.session.user_agent, rotation.session.ip) == ("Chrome/150", "198.51.100.1")


# -- lifetimes --------------------------------------------------------------------------------


async def test_idle_expiry(store: SessionStore) -> None:
    sid = await open_session(store)
    await rotate(store, sid, 0, T0 + IDLE - 1)  # used just in time: idle clock restarts
    assert await store.get(sid, now=T0 + 2 * IDLE - 2) is not None
    with pytest.raises(SessionNotFound):
        await rotate(store, sid, 1, T0 + 2 * IDLE)
    assert await store.list_for_user("alice", now=T0 + 2 * IDLE) == []


async def test_absolute_expiry_despite_activity(store: SessionStore) -> None:
    sid = await open_session(store)
    now, gen = T0, 0
    while now + 6 * DAY < T0 + ABS:
        now += 6 * DAY
        gen = (await rotate(store, sid, gen, now)).session.generation
    with pytest.raises(SessionNotFound):
        await rotate(store, sid, gen, T0 + ABS)


# -- claims ----------------------------------------------------------------------------------


async def test_update_claims(store: SessionStore) -> None:
    sid = await open_session(store)
    assert await store.update_claims(sid, "admin", {"org": "new"}, now=T0 + 1)
    info = await store.get(sid, now=T0 + 1)
    assert info is not None
    assert (info.role, dict(info.extra_claims)) == ("admin", {"org": "new"})
    assert not await store.update_claims(new_session_id("x"), "admin", {}, now=T0)


# -- revocation ------------------------------------------------------------------------------


async def test_revoke_session(store: SessionStore) -> None:
    sid = await open_session(store)
    ended = await store.revoke_session(sid, now=T0 + 5, revocation_ttl=RTTL)
    assert ended is not None
    assert ended.sid == sid
    assert await store.get(sid, now=T0 + 5) is None
    assert await store.list_for_user("alice", now=T0 + 5) == []
    with pytest.raises(SessionNotFound):
        await rotate(store, sid, 0, T0 + 6)
    assert (await store.feed_snapshot(now=T0 + 6)).entries == [
        Revocation("sid", sid, T0 + 5 + RTTL)
    ]


async def test_revoking_an_ended_session_still_revokes_its_tokens(store: SessionStore) -> None:
    sid = new_session_id("alice")
    assert await store.revoke_session(sid, now=T0, revocation_ttl=RTTL) is None
    assert (await store.feed_snapshot(now=T0)).entries == [Revocation("sid", sid, T0 + RTTL)]


async def test_logout_others(store: SessionStore) -> None:
    keep = await open_session(store)
    others = {await open_session(store), await open_session(store)}
    bobs = await open_session(store, "bob")
    ended = await store.logout_others(keep, now=T0 + 1, revocation_ttl=RTTL)
    assert set(ended) == others
    assert [s.sid for s in await store.list_for_user("alice", now=T0 + 1)] == [keep]
    assert await store.get(bobs, now=T0 + 1) is not None
    kinds = {(r.kind, r.subject) for r in (await store.feed_snapshot(now=T0 + 1)).entries}
    assert kinds == {("sid", sid) for sid in others}


async def test_logout_others_of_unknown_session(store: SessionStore) -> None:
    with pytest.raises(SessionNotFound):
        await store.logout_others(new_session_id("x"), now=T0, revocation_ttl=RTTL)


async def test_logout_all_ends_every_session(store: SessionStore) -> None:
    sids = {await open_session(store), await open_session(store)}
    bobs = await open_session(store, "bob")
    ended = await store.logout_all("alice", now=T0 + 3.5, revocation_ttl=RTTL)
    assert ended is not None
    assert set(ended) == sids
    assert await store.list_for_user("alice", now=T0 + 4) == []
    assert await store.get(bobs, now=T0 + 4) is not None
    entries = (await store.feed_snapshot(now=T0 + 4)).entries
    # One microsecond past the revocation instant, not the next whole second.
    nbf = int((T0 + 3.5) * US) + 1
    assert Revocation("user", "alice", T0 + 3.501 + RTTL, nbf) in entries
    # ...and every ended session by id, exact whatever its tokens' iat.
    assert {(r.kind, r.subject) for r in entries if r.kind == "sid"} == {
        ("sid", sid) for sid in sids
    }
    assert len(entries) == 1 + len(sids)
    # A session opened afterwards learns the not-before so its tokens are not revoked by it.
    sid = new_session_id("alice")
    grant = await store.create(
        NewSession(sid, "alice", "user", {}, META), now=T0 + 3.9, absolute_ttl=ABS, idle_ttl=IDLE
    )
    assert grant.user_not_before_us == nbf


async def test_logout_all_from_an_ended_session_is_a_no_op(store: SessionStore) -> None:
    own = await open_session(store)
    assert await store.logout_all("alice", now=T0 + 1, revocation_ttl=RTTL, sid=own) == [own]
    fresh = await open_session(store, now=T0 + 2)
    # A second logout-all from the same (ended) session: nothing moves.
    assert await store.logout_all("alice", now=T0 + 2, revocation_ttl=RTTL, sid=own) is None
    assert [s.sid for s in await store.list_for_user("alice", now=T0 + 3)] == [fresh]
    users = [r for r in (await store.feed_snapshot(now=T0 + 3)).entries if r.kind == "user"]
    assert len(users) == 1


async def test_user_not_before_is_strictly_increasing_at_one_instant(
    store: SessionStore,
) -> None:
    # A token issued between two revocations at one instant carries iat_us == the
    # first not-before; the second must still revoke it, and many revocations at
    # once move the not-before by microseconds, never seconds.
    for _ in range(40):
        await store.reissue("alice", now=T0 + 0.2, revocation_ttl=RTTL)
    users = [r for r in (await store.feed_snapshot(now=T0 + 1)).entries if r.kind == "user"]
    base = int((T0 + 0.2) * US)
    assert [r.not_before_us for r in users] == [base + i for i in range(1, 41)]


async def test_reissue_keeps_sessions_and_rewrites_claims(store: SessionStore) -> None:
    sid = await open_session(store)
    await store.reissue(
        "alice", now=T0 + 1, revocation_ttl=RTTL, role="admin", extra_claims={"org": "beta"}
    )
    rotation = await rotate(store, sid, 0, T0 + 1.5)
    assert (rotation.session.role, dict(rotation.session.extra_claims)) == (
        "admin",
        {"org": "beta"},
    )
    assert rotation.user_not_before_us == int((T0 + 1) * US) + 1


async def test_reissue_without_claims_keeps_them(store: SessionStore) -> None:
    sid = await open_session(store, role="editor")
    await store.reissue("alice", now=T0 + 1, revocation_ttl=RTTL)
    info = await store.get(sid, now=T0 + 2)
    assert info is not None
    assert info.role == "editor"
    assert dict(info.extra_claims) == {"org": "acme"}


async def test_revoke_token(store: SessionStore) -> None:
    await store.revoke_token("jti-1", now=T0, until=T0 + 100)
    assert (await store.feed_snapshot(now=T0)).entries == [Revocation("jti", "jti-1", T0 + 100)]


# -- the feed --------------------------------------------------------------------------------


async def test_feed_trim_under_frozen_time(store: SessionStore) -> None:
    await store.revoke_token("a", now=T0, until=T0 + 10)
    await store.revoke_token("b", now=T0 + 1, until=T0 + 20)
    await store.revoke_token("c", now=T0 + 2, until=T0 + 30)
    assert await store.trim_feed(now=T0 + 5) == 3
    assert await store.trim_feed(now=T0 + 10) == 2
    assert [r.subject for r in (await store.feed_snapshot(now=T0 + 10)).entries] == ["b", "c"]
    assert await store.trim_feed(now=T0 + 30) == 0
    assert (await store.feed_snapshot(now=T0 + 30)).entries == []


async def test_feed_resume_returns_what_came_after(store: SessionStore) -> None:
    await store.revoke_token("a", now=T0, until=T0 + 100)
    cursor = (await store.feed_snapshot(now=T0)).cursor
    await store.revoke_token("b", now=T0 + 1, until=T0 + 100)
    await store.revoke_token("c", now=T0 + 2, until=T0 + 100)
    batch = await store.feed_resume(cursor, now=T0 + 3)
    assert not batch.reset
    assert [r.subject for r in batch.entries] == ["b", "c"]
    assert (await store.feed_resume(batch.cursor, now=T0 + 3)).entries == []


async def test_feed_resume_after_trim_is_a_reset(store: SessionStore) -> None:
    await store.revoke_token("a", now=T0, until=T0 + 100)
    cursor = (await store.feed_snapshot(now=T0)).cursor
    await store.revoke_token("b", now=T0 + 1, until=T0 + 5)  # trimmed before the reader is back
    await store.revoke_token("c", now=T0 + 2, until=T0 + 500)
    await store.trim_feed(now=T0 + 200)
    batch = await store.feed_resume(cursor, now=T0 + 200)
    assert batch.reset
    assert [r.subject for r in batch.entries] == ["c"]


async def test_feed_wait_times_out_empty_and_returns_new_entries(store: SessionStore) -> None:
    cursor = (await store.feed_snapshot(now=T0)).cursor
    empty = await store.feed_wait(cursor, block=0.01)
    assert empty.entries == []
    assert empty.cursor == cursor
    await store.revoke_token("x", now=T0, until=T0 + 100)
    batch = await store.feed_wait(cursor, block=0.5)
    assert [r.subject for r in batch.entries] == ["x"]
    assert batch.cursor != cursor


# -- rate limiting -----------------------------------------------------------------------------


async def test_rate_limit_fixed_window(store: SessionStore) -> None:
    start = T0 + 0.25  # 0.25 s into a 60 s window aligned on the epoch
    for _ in range(3):
        assert await store.hit_rate_limit(["ip:a", "sid:x"], now=start, limit=3, window=60) == 0
    retry = await store.hit_rate_limit(["ip:a", "sid:x"], now=start + 1, limit=3, window=60)
    assert retry == pytest.approx(60 - 20 - 1.25 + 20, abs=0.01)  # the rest of the window
    assert await store.hit_rate_limit(["ip:b"], now=start + 1, limit=3, window=60) == 0
    assert await store.hit_rate_limit(["ip:a"], now=start + 60, limit=3, window=60) == 0


async def test_rate_limit_refund_takes_back_one_count_of_its_window(store: SessionStore) -> None:
    start = T0 + 0.25
    for _ in range(3):
        assert await store.hit_rate_limit(["a:1", "b:1"], now=start, limit=3, window=60) == 0
    await store.refund_rate_limit(["a:1"], now=start + 1, window=60)
    assert await store.hit_rate_limit(["a:1"], now=start + 2, limit=3, window=60) == 0
    assert await store.hit_rate_limit(["a:1"], now=start + 2, limit=3, window=60) > 0
    assert await store.hit_rate_limit(["b:1"], now=start + 2, limit=3, window=60) > 0


async def test_rate_limit_refund_never_goes_below_zero_nor_reaches_other_windows(
    store: SessionStore,
) -> None:
    start = T0 + 0.25
    await store.refund_rate_limit(["c:1"], now=start, window=60)  # nothing counted: no-op
    await store.hit_rate_limit(["c:1"], now=start, limit=1, window=60)
    await store.refund_rate_limit(["c:1"], now=start + 60, window=60)  # the next window
    assert await store.hit_rate_limit(["c:1"], now=start + 1, limit=1, window=60) > 0
    for _ in range(3):
        await store.refund_rate_limit(["c:1"], now=start + 1, window=60)
    assert await store.hit_rate_limit(["c:1"], now=start + 2, limit=1, window=60) == 0
    assert await store.hit_rate_limit(["c:1"], now=start + 2, limit=1, window=60) > 0
    # A refund after the window ended creates nothing that would count later.
    await store.refund_rate_limit(["d:1"], now=start + 120, window=60)
    assert await store.hit_rate_limit(["d:1"], now=start + 120, limit=1, window=60) == 0
    assert await store.hit_rate_limit(["d:1"], now=start + 120, limit=1, window=60) > 0


# -- one-time values ------------------------------------------------------------------------


async def test_claim_once_is_true_only_the_first_time(store: SessionStore) -> None:
    assert await store.claim_once("dpop:abc", now=T0, until=T0 + 70) is True
    assert await store.claim_once("dpop:abc", now=T0 + 1, until=T0 + 71) is False
    assert await store.claim_once("dpop:abd", now=T0 + 1, until=T0 + 71) is True


# -- rotation rules: limits after reuse detection, grace bound to the client ----------------


async def test_reuse_is_detected_whatever_the_limit_says(store: SessionStore) -> None:
    sid = await open_session(store)
    policy = SessionPolicy(refresh_limit=2)
    await rotate(store, sid, 0, T0, policy=policy)
    await rotate(store, sid, 1, T0 + 1, policy=policy)
    with pytest.raises(RateLimited) as limited:  # the current token, over the limit
        await rotate(store, sid, 2, T0 + 2, policy=policy)
    assert limited.value.retry_after == 58  # the rest of the 60 s window
    with pytest.raises(RefreshReused):  # a stale token: theft, limit or not
        await rotate(store, sid, 0, T0 + 30, policy=policy)


async def test_refused_refreshes_are_not_counted(store: SessionStore) -> None:
    sid = await open_session(store)
    policy = SessionPolicy(refresh_limit=1)
    await rotate(store, sid, 0, T0, policy=policy)
    for _ in range(5):
        with pytest.raises(RateLimited):
            await rotate(store, sid, 1, T0 + 1, policy=policy)
    assert (await rotate(store, sid, 1, T0 + 60, policy=policy)).session.generation == 2


async def test_address_limit_refuses_without_rotating(store: SessionStore) -> None:
    sid = await open_session(store)
    with pytest.raises(RateLimited) as limited:
        await rotate(store, sid, 0, T0, address_retry_after=12.5)
    assert limited.value.retry_after == 13
    assert (await rotate(store, sid, 0, T0 + 1)).session.generation == 1


async def test_grace_answer_only_for_the_binding_that_rotated(store: SessionStore) -> None:
    sid = await open_session(store)
    await rotate(store, sid, 0, T0, binding="fp:bob")
    assert (await rotate(store, sid, 0, T0 + 1, binding="fp:bob")).outcome == "grace"
    with pytest.raises(RefreshReused):
        await rotate(store, sid, 0, T0 + 2, binding="fp:mallory")
    assert await store.get(sid, now=T0 + 2) is None


async def test_grace_answers_per_generation_are_capped(store: SessionStore) -> None:
    sid = await open_session(store)
    policy = SessionPolicy(grace_answers=2)
    await rotate(store, sid, 0, T0, policy=policy)
    for _ in range(2):
        assert (await rotate(store, sid, 0, T0 + 1, policy=policy)).outcome == "grace"
    with pytest.raises(RateLimited) as refused:  # refused, not theft: the session lives on
        await rotate(store, sid, 0, T0 + 1, policy=policy)
    assert (refused.value.detail, refused.value.retry_after) == (GRACE_ANSWERS_SPENT, 1)
    assert (await rotate(store, sid, 1, T0 + 2, policy=policy)).session.generation == 2


async def test_key_bound_session_refuses_another_binding(store: SessionStore) -> None:
    bound = key_binding("thumbprint-of-the-key")
    sid = await open_session(store, binding=bound)
    with pytest.raises(DPoPProofInvalid):  # a copied token without its key: refused, not theft
        await rotate(store, sid, 0, T0, binding="fp:thief")
    grant = await rotate(store, sid, 0, T0 + 1, binding=bound)
    assert (grant.session.generation, grant.session.binding) == (1, bound)
