"""Issuer: login, refresh, reuse detection, claims loader, logout variants (every store)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from jwtsess import (
    ClaimsUnavailable,
    RefreshReused,
    SessionNotFound,
    TokenInvalid,
    TokenMalformed,
)
from jwtsess.audit import AuditEvent
from jwtsess.issuer import UserClaims
from jwtsess.refresh_token import decode_refresh_token, new_session_id
from jwtsess.sessions import ClientMetadata, SessionPolicy
from tests.support.kit import T0, IssuerKit

MakeIssuer = Callable[..., IssuerKit]
META = ClientMetadata(user_agent="UA/1", ip="192.0.2.10")


async def test_login_returns_a_working_pair(make_issuer: MakeIssuer) -> None:
    env = make_issuer()
    pair = await env.issuer.login("alice", "admin", extra_claims={"org": "a"}, metadata=META)
    claims = env.kit.verifier.verify(pair.access_token)
    assert (claims.sub, claims.role, claims.sid, claims.extra) == (
        "alice",
        "admin",
        pair.session_id,
        {"org": "a"},
    )
    assert pair.expires_in == 900
    assert pair.token_type == "Bearer"
    ref = decode_refresh_token(env.kit.keyring.refresh_secret, pair.refresh_token)
    assert (ref.sid, ref.gen) == (pair.session_id, 0)
    assert set(pair.as_json()) == {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
        "session_id",
    }


async def test_refresh_rotates_and_keeps_claims(make_issuer: MakeIssuer) -> None:
    env = make_issuer()
    first = await env.issuer.login("alice", "admin", extra_claims={"org": "a"})
    env.clock.advance(60)
    second = await env.issuer.refresh(first.refresh_token, META)
    assert second.session_id == first.session_id
    assert second.refresh_token != first.refresh_token
    claims = env.kit.verifier.verify(second.access_token)
    assert (claims.role, claims.extra, claims.iat) == ("admin", {"org": "a"}, int(T0) + 60)
    sessions = await env.issuer.sessions("alice")
    assert [(s.user_agent, s.ip, s.last_used_at) for s in sessions] == [
        ("UA/1", "192.0.2.10", T0 + 60)
    ]


async def test_racing_tabs_get_the_same_successor(make_issuer: MakeIssuer) -> None:
    env = make_issuer()
    pair = await env.issuer.login("alice", "user")
    tab_a = await env.issuer.refresh(pair.refresh_token)
    env.clock.advance(3)
    tab_b = await env.issuer.refresh(pair.refresh_token)
    assert tab_a.refresh_token == tab_b.refresh_token
    assert tab_a.access_token != tab_b.access_token  # distinct jti, same session
    assert (await env.issuer.refresh(tab_b.refresh_token)).session_id == pair.session_id


async def test_theft_revokes_the_session_for_thief_and_victim(make_issuer: MakeIssuer) -> None:
    events: list[AuditEvent] = []

    async def hook(event: AuditEvent) -> None:
        events.append(event)

    env = make_issuer(audit_hook=hook)
    stolen = await env.issuer.login("alice", "user")
    victim = await env.issuer.refresh(stolen.refresh_token)
    env.clock.advance(11)
    with pytest.raises(RefreshReused) as err:
        await env.issuer.refresh(stolen.refresh_token, META)
    assert err.value.code == "refresh_reused"
    with pytest.raises((RefreshReused, SessionNotFound)):
        await env.issuer.refresh(victim.refresh_token)
    reuse = [e for e in events if e.event == "reuse_detected"]
    assert len(reuse) == 1
    assert (reuse[0].user_id, reuse[0].session_id, reuse[0].ip) == (
        "alice",
        stolen.session_id,
        "192.0.2.10",
    )
    feed = await env.store.feed_snapshot(now=env.clock())
    assert ("sid", stolen.session_id) in {(r.kind, r.subject) for r in feed.entries}


async def test_grace_zero_policy(make_issuer: MakeIssuer) -> None:
    env = make_issuer(policy=SessionPolicy(grace=0))
    pair = await env.issuer.login("alice", "user")
    await env.issuer.refresh(pair.refresh_token)
    env.clock.advance(0.001)
    with pytest.raises(RefreshReused):
        await env.issuer.refresh(pair.refresh_token)


@pytest.mark.parametrize(
    "garbage",
    ["", "rt1.", "x" * 5000, "rt1.AAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA.0.short", None, 17],
)
async def test_garbage_refresh_token_never_reaches_the_store(
    make_issuer: MakeIssuer, garbage: object
) -> None:
    env = make_issuer()
    with pytest.raises(TokenMalformed):
        await env.issuer.refresh(garbage)  # type: ignore[arg-type]


async def test_forged_refresh_token_is_rejected_by_mac(make_issuer: MakeIssuer) -> None:
    env = make_issuer()
    pair = await env.issuer.login("alice", "user")
    body, mac = pair.refresh_token.rsplit(".", 1)
    forged_gen = body.rsplit(".", 1)[0] + ".7." + mac
    with pytest.raises(TokenInvalid) as err:
        await env.issuer.refresh(forged_gen)
    assert err.value.code == "token_invalid"
    assert (await env.issuer.session(pair.session_id)) is not None  # nothing happened


async def test_access_token_is_not_a_refresh_token(make_issuer: MakeIssuer) -> None:
    env = make_issuer()
    pair = await env.issuer.login("alice", "user")
    with pytest.raises(TokenMalformed):
        await env.issuer.refresh(pair.access_token)


async def test_claims_loader_changes_role_at_refresh(make_issuer: MakeIssuer) -> None:
    roles = {"alice": "user"}

    async def loader(user_id: str) -> UserClaims | None:
        role = roles.get(user_id)
        return UserClaims(role, {"v": 2}) if role else None

    env = make_issuer(claims_loader=loader)
    pair = await env.issuer.login("alice", "user")
    roles["alice"] = "admin"
    refreshed = await env.issuer.refresh(pair.refresh_token)
    assert env.kit.verifier.verify(refreshed.access_token).role == "admin"
    info = await env.issuer.session(pair.session_id)
    assert info is not None
    assert info.role == "admin"

    del roles["alice"]
    with pytest.raises(SessionNotFound):
        await env.issuer.refresh(refreshed.refresh_token)
    assert await env.issuer.session(pair.session_id) is None


async def test_logout(make_issuer: MakeIssuer) -> None:
    env = make_issuer()
    pair = await env.issuer.login("alice", "user")
    assert await env.issuer.logout(pair.session_id)
    assert not await env.issuer.logout(pair.session_id)
    assert not await env.issuer.logout("not a sid")
    with pytest.raises(SessionNotFound):
        await env.issuer.refresh(pair.refresh_token)


async def test_logout_others_and_everywhere(make_issuer: MakeIssuer) -> None:
    env = make_issuer()
    here = await env.issuer.login("alice", "user")
    there = await env.issuer.login("alice", "user")
    bob = await env.issuer.login("bob", "user")
    assert await env.issuer.logout_others(here.session_id) == [there.session_id]
    assert [s.sid for s in await env.issuer.sessions("alice")] == [here.session_id]
    with pytest.raises(SessionNotFound):
        await env.issuer.logout_others(new_session_id("ghost"))
    assert await env.issuer.logout_all("alice") == [here.session_id]
    assert await env.issuer.sessions("alice") == []
    assert [s.sid for s in await env.issuer.sessions("bob")] == [bob.session_id]


async def test_login_right_after_logout_all_is_not_revoked(
    make_issuer: MakeIssuer,
) -> None:
    env = make_issuer()
    env.clock.advance(0.3)
    await env.issuer.logout_all("alice")
    pair = await env.issuer.login("alice", "user")  # same instant as the revocation
    feed = await env.store.feed_snapshot(now=env.clock())
    (user_entry,) = [r for r in feed.entries if r.kind == "user"]
    assert pair.claims.issued_us >= user_entry.not_before_us
    assert pair.claims.iat == int(env.clock())  # not a second ahead


async def test_logout_everywhere_is_a_deprecated_alias(make_issuer: MakeIssuer) -> None:
    env = make_issuer()
    pair = await env.issuer.login("alice", "user")
    with pytest.warns(DeprecationWarning, match="logout_all"):
        assert await env.issuer.logout_everywhere("alice") == [pair.session_id]


async def test_revoke_session_only_for_its_owner(make_issuer: MakeIssuer) -> None:
    env = make_issuer()
    alice = await env.issuer.login("alice", "user")
    assert not await env.issuer.revoke_session("mallory", alice.session_id)
    assert await env.issuer.session(alice.session_id) is not None
    assert await env.issuer.revoke_session("alice", alice.session_id)
    assert await env.issuer.session(alice.session_id) is None


async def test_reissue_changes_role_on_next_refresh(make_issuer: MakeIssuer) -> None:
    env = make_issuer()
    pair = await env.issuer.login("alice", "user")
    await env.issuer.reissue("alice", role="admin")
    refreshed = await env.issuer.refresh(pair.refresh_token)
    claims = env.kit.verifier.verify(refreshed.access_token)
    assert claims.role == "admin"
    feed = await env.store.feed_snapshot(now=env.clock())
    (entry,) = [r for r in feed.entries if r.kind == "user"]
    assert pair.claims.issued_us < entry.not_before_us <= claims.issued_us  # old revoked, new not


async def test_revoke_access_token(make_issuer: MakeIssuer) -> None:
    env = make_issuer()
    pair = await env.issuer.login("alice", "user")
    await env.issuer.revoke_access_token(pair.claims)
    feed = await env.store.feed_snapshot(now=env.clock())
    assert [(r.kind, r.subject, r.until) for r in feed.entries] == [
        ("jti", pair.claims.jti, pair.claims.exp + 10)
    ]


@pytest.mark.parametrize(
    ("user_id", "role", "extra"),
    [("", "user", None), ("a" * 257, "user", None), ("u", "", None), ("u", "r", {"sub": "x"})],
)
async def test_login_refuses_bad_input_before_writing(
    make_issuer: MakeIssuer, user_id: str, role: str, extra: dict[str, str] | None
) -> None:
    env = make_issuer()
    with pytest.raises(ValueError, match=r"must|reserved"):
        await env.issuer.login(user_id, role, extra_claims=extra)
    if user_id:
        assert await env.issuer.sessions(user_id) == []


async def test_audit_records_never_contain_tokens(
    make_issuer: MakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    env = make_issuer()
    caplog.set_level(logging.INFO, logger="jwtsess.audit")
    pair = await env.issuer.login("alice", "user", metadata=META)
    second = await env.issuer.refresh(pair.refresh_token)
    await env.issuer.logout(second.session_id)
    events = [r.audit for r in caplog.records if hasattr(r, "audit")]
    assert [e["event"] for e in events] == ["login", "refresh", "logout"]
    text = repr(events)
    for secret in (pair.access_token, pair.refresh_token, second.refresh_token):
        assert secret not in text


async def test_failing_audit_hook_does_not_break_login(
    make_issuer: MakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(event: AuditEvent) -> None:
        raise RuntimeError("sink down")

    env = make_issuer(audit_hook=broken)
    pair = await env.issuer.login("alice", "user")
    assert pair.session_id
    assert "audit hook failed" in caplog.text


def test_access_ttl_beyond_keyring_max_is_refused(make_issuer: MakeIssuer) -> None:
    from jwtsess import TokenSettings
    from jwtsess.issuer import Issuer
    from tests.support.kit import AUDIENCE, ISSUER

    env = make_issuer()
    long_lived = TokenSettings(issuer=ISSUER, audience=AUDIENCE, access_ttl=3600)
    with pytest.raises(ValueError, match="max_token_ttl"):
        Issuer(env.kit.keyring, long_lived, env.store)


def test_absolute_session_lifetime_beyond_keyring_max_is_refused(make_issuer: MakeIssuer) -> None:
    """`prune` keeps a retired refresh secret for max_session_ttl: no session may outlive it."""
    from jwtsess.issuer import Issuer

    env = make_issuer()
    forever = SessionPolicy(absolute_ttl=31 * 24 * 3600)
    with pytest.raises(ValueError, match="max_session_ttl"):
        Issuer(env.kit.keyring, env.kit.settings, env.store, policy=forever)


async def test_claims_loader_failure_is_a_503_and_the_same_client_retries_in_grace(
    make_issuer: MakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    """A loader that raises (its database is down) after the rotation committed: the
    caller gets ``claims_unavailable`` (503, safe to retry), never an unhandled
    exception; the same client's retry inside the grace window gets its tokens."""
    failing = {"on": True}

    async def loader(user_id: str) -> UserClaims | None:
        if failing["on"]:
            raise OSError("users database: connection refused")
        return UserClaims("user")

    env = make_issuer(claims_loader=loader)
    pair = await env.issuer.login("alice", "user", metadata=META)
    with caplog.at_level(logging.WARNING, logger="jwtsess"), pytest.raises(ClaimsUnavailable):
        await env.issuer.refresh(pair.refresh_token, META)
    assert ClaimsUnavailable.status == 503
    warnings = [r for r in caplog.records if r.name.startswith("jwtsess")]
    assert len(warnings) == 1
    assert warnings[0].exc_info is None  # one line, no traceback
    assert "OSError" in warnings[0].getMessage()
    failing["on"] = False
    env.clock.advance(1)
    retried = await env.issuer.refresh(pair.refresh_token, META)
    assert env.kit.verifier.verify(retried.access_token).sub == "alice"
