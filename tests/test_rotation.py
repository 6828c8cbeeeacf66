"""Acceptance: key rotation never fails a valid token, in one process or across two."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from jwtsess import (
    AccessTokenSigner,
    AuthError,
    KeyRing,
    TokenExpired,
    TokenSettings,
    UnknownKeyId,
    Verifier,
    init_keys,
    prune_keys,
    rotate_keys,
)
from jwtsess.keyfiles import read_manifest
from tests.support.kit import ALGORITHMS, AUDIENCE, ISSUER, MutableClock, TokenKit

Kit = Callable[..., TokenKit]


def _uncached(kit: TokenKit) -> Verifier:
    """A verifier on the kit's ring that checks every signature (no verified-token cache)."""
    settings = TokenSettings(
        issuer=ISSUER,
        audience=AUDIENCE,
        access_ttl=kit.settings.access_ttl,
        leeway=kit.settings.leeway,
        verified_cache_size=0,
    )
    return Verifier(kit.keyring, settings, clock=kit.clock)


# -- (a) one process through the whole schedule ------------------------------------------


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_tokens_outlive_the_rotation_of_their_key(make_kit: Kit, alg: str) -> None:
    kit = make_kit(alg)  # publish_delay 3600, max_token_ttl 900, leeway 60; access_ttl 900
    verifiers = (kit.verifier, _uncached(kit))
    old = kit.keyring.signing_key().kid
    early = kit.token()

    kit.clock.advance(100)
    new = rotate_keys(kit.directory, clock=kit.clock)
    assert new.activates_at == kit.clock() + 3600
    kit.clock.advance(2)
    # Pending: known to the ring and published (if public), but not signing yet.
    assert kit.keyring.verification_key(new.kid) is not None
    assert [k["kid"] for k in kit.keyring.jwks()["keys"]][-1:] == (
        [new.kid] if alg != "HS256" else []
    )
    assert kit.signer.issue("u", "r", "s")[1].kid == old
    for verifier in verifiers:
        assert verifier.verify(early).kid == old

    # The new key signs only from activates_at, publish_delay after the rotation.
    kit.clock.now = new.activates_at - 0.001
    assert kit.keyring.signing_key().kid == old
    last_old, last_old_claims = kit.signer.issue("u", "r", "s")
    assert last_old_claims.kid == old
    for verifier in verifiers:
        assert verifier.verify(last_old).kid == old

    kit.clock.now = new.activates_at
    first_new, first_new_claims = kit.signer.issue("u", "r", "s")
    assert first_new_claims.kid == new.kid
    # Retiring: the old key's tokens still verify until they expire.
    for verifier in verifiers:
        assert verifier.verify(last_old).kid == old
        assert verifier.verify(first_new).kid == new.kid
    assert prune_keys(kit.directory, clock=kit.clock) == []

    kit.clock.now = last_old_claims.exp + kit.settings.leeway - 1
    for verifier in verifiers:
        assert verifier.verify(last_old).kid == old
    kit.clock.advance(1)
    for verifier in verifiers:
        with pytest.raises(TokenExpired):
            verifier.verify(last_old)

    # prune: only once retired_at + max_token_ttl + leeway has passed.
    kit.clock.now = new.activates_at + 900 + 60 - 1
    assert prune_keys(kit.directory, clock=kit.clock) == []
    kit.clock.advance(1)
    assert prune_keys(kit.directory, clock=kit.clock) == [old]
    kit.clock.advance(2)
    for verifier in verifiers:
        with pytest.raises(UnknownKeyId) as err:
            verifier.verify(last_old)
        assert err.value.code == "token_invalid"
        with pytest.raises(UnknownKeyId):
            verifier.verify(early)
    fresh = kit.token()
    for verifier in verifiers:
        assert verifier.verify(fresh).kid == new.kid


def test_a_pruned_key_token_that_is_still_unexpired_is_refused(make_kit: Kit) -> None:
    """If apps issue longer tokens than max_token_ttl, prune still cuts them off."""
    kit = make_kit("HS256", access_ttl=6 * 3600)
    token = kit.token()
    assert kit.verifier.verify(token)
    rotate_keys(kit.directory, clock=kit.clock, immediate=False)
    kit.clock.advance(3600 + 960)
    assert len(prune_keys(kit.directory, clock=kit.clock)) == 1
    kit.clock.advance(2)
    with pytest.raises(UnknownKeyId) as err:
        kit.verifier.verify(token)
    assert err.value.code == "token_invalid"
    assert err.value.status == 401


# -- (b) two processes over simulated time ---------------------------------------------------


@dataclass
class _Issued:
    token: str
    kid: str
    exp: int


PUBLISH_DELAY = 60.0
MAX_TOKEN_TTL = 120.0
MANIFEST_LEEWAY = 10.0
STEP = 3.0


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_no_verify_fails_across_rotations_in_another_process(
    tmp_path: Path, clock: MutableClock, alg: str
) -> None:
    directory = tmp_path / "keys"
    init_keys(
        directory,
        alg,
        publish_delay=PUBLISH_DELAY,
        max_token_ttl=MAX_TOKEN_TTL,
        leeway=MANIFEST_LEEWAY,
        clock=clock,
    )
    settings = TokenSettings(issuer=ISSUER, audience=AUDIENCE, access_ttl=120, leeway=10)
    uncached_settings = TokenSettings(
        issuer=ISSUER, audience=AUDIENCE, access_ttl=120, leeway=10, verified_cache_size=0
    )
    # Process A issues tokens; process B verifies them and only looks at the
    # directory every 7 s (its own check_interval), lagging behind A.
    ring_a = KeyRing(directory, clock=clock, monotonic=clock)
    signer = AccessTokenSigner(ring_a, settings, clock=clock)
    ring_b = KeyRing(directory, clock=clock, monotonic=clock, check_interval=7.0)
    cached = Verifier(ring_b, settings, clock=clock)
    uncached = Verifier(ring_b, uncached_settings, clock=clock)

    wanted_rotations = 1 if alg == "RS256" else 2  # RSA keys are slow to load
    start = clock()
    issued: list[_Issued] = []
    live: list[_Issued] = []
    failures: list[tuple[float, str, str]] = []
    rotations: list[str] = []
    pruned: list[str] = []
    expired_checked = 0
    lagging_steps = 0
    while clock() - start < 180 + 120 * wanted_rotations:
        elapsed = clock() - start
        manifest, _ = read_manifest(directory)
        pending = [k for k in manifest.keys if manifest.state_of(k, clock()) == "pending"]
        if elapsed >= 30 + 120 * len(rotations) and len(rotations) < wanted_rotations:
            assert not pending
            rotations.append(rotate_keys(directory, clock=clock).kid)
        pruned += prune_keys(directory, clock=clock)

        token, claims = signer.issue("user", "role", "sid")
        expected = read_manifest(directory)[0].active_at(clock())
        assert expected is not None
        assert claims.kid == expected.kid  # A signs with the scheduled key, no earlier
        assert expected.activates_at - expected.created_at in (0.0, PUBLISH_DELAY)
        issued.append(_Issued(token, claims.kid, claims.exp))
        live.append(issued[-1])
        on_disk = [k.kid for k in read_manifest(directory)[0].keys]
        if [k.kid for k in ring_b.manifest.keys] != on_disk:
            lagging_steps += 1  # B has not looked yet: the case this test is about

        for item in [i for i in live if i.exp + settings.leeway <= clock()]:
            with pytest.raises((TokenExpired, UnknownKeyId)):  # once, at expiry: refused
                cached.verify(item.token)
            expired_checked += 1
        live = [i for i in live if i.exp + settings.leeway > clock()]
        # Every live token through the cached verifier (which re-verifies them all
        # whenever B's ring changes); the oldest and newest of each key through the
        # uncached one, so every key is exercised by a full signature check each step.
        by_kid: dict[str, list[_Issued]] = {}
        for item in live:
            by_kid.setdefault(item.kid, []).append(item)
        sample = [
            item
            for group in by_kid.values()
            for item in {group[0].token: group[0], group[-1].token: group[-1]}.values()
        ]
        for verifier, items in ((cached, live), (uncached, sample)):
            for item in items:
                try:
                    assert verifier.verify(item.token).kid == item.kid
                except AuthError as exc:
                    failures.append((clock() - start, item.kid, repr(exc)))
        clock.advance(STEP)

    assert failures == []
    assert len(rotations) == wanted_rotations
    first = issued[0].kid
    assert pruned == [first, *rotations][:wanted_rotations]  # once all its tokens expired
    assert list(dict.fromkeys(i.kid for i in issued)) == [first, *rotations]
    assert ring_b.generation >= 2 * wanted_rotations  # every rotation and prune seen
    assert ring_b.last_error is None
    assert expired_checked > 40
    assert lagging_steps >= 2 * wanted_rotations


# -- (b') a real background rotation while verifying in a tight loop ---------------------


@pytest.mark.parametrize("alg", ["HS256", "RS256", "EdDSA"])
def test_no_verify_fails_while_another_thread_rotates(
    tmp_path: Path, alg: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Real time and real threads: the files are never seen half-written or out of order."""
    directory = tmp_path / "keys"
    publish_delay = 0.05
    init_keys(directory, alg, publish_delay=publish_delay)
    settings = TokenSettings(issuer=ISSUER, audience=AUDIENCE)
    # check_interval=0: both rings look at the directory on every call, so every
    # intermediate state of the directory that a reader can observe is observed.
    ring_a = KeyRing(directory, check_interval=0)
    signer = AccessTokenSigner(ring_a, settings)
    ring_b = KeyRing(directory, check_interval=0)
    verifier = Verifier(ring_b, settings)
    uncached = Verifier(
        ring_b, TokenSettings(issuer=ISSUER, audience=AUDIENCE, verified_cache_size=0)
    )

    done = threading.Event()
    signed_with_new_key = threading.Event()
    thread_errors: list[BaseException] = []
    rotated: list[str] = []

    def rotate_in_background() -> None:
        try:
            for _ in range(2):
                signed_with_new_key.clear()
                record = rotate_keys(directory)
                rotated.append(record.kid)
                # Rotate again once the signer has used the new key (not a sleep: the
                # main thread says when), so every key signs during the loop.
                if not signed_with_new_key.wait(timeout=5):
                    raise TimeoutError(f"{record.kid} never signed")
        except BaseException as exc:  # reported by the main thread
            thread_errors.append(exc)
        finally:
            done.set()

    first_token, first_claims = signer.issue("u", "r", "s")
    firsts = {first_claims.kid: first_token}
    failures: list[str] = []
    verified = 0
    thread = threading.Thread(target=rotate_in_background, daemon=True)
    deadline = time.monotonic() + 10  # a safety net only; the loop ends with the thread
    caplog.set_level(logging.WARNING, logger="jwtsess.keyring")
    thread.start()
    while not done.is_set() and time.monotonic() < deadline:
        token, claims = signer.issue("u", "r", "s")
        if claims.kid not in firsts:
            firsts[claims.kid] = token
            signed_with_new_key.set()
        for candidate in (token, *firsts.values()):
            for v in (verifier, uncached):
                try:
                    v.verify(candidate)
                    verified += 1
                except AuthError as exc:
                    failures.append(f"{claims.kid}: {exc!r}")
    thread.join(timeout=10)

    assert not thread.is_alive()
    assert thread_errors == []
    assert failures == []
    assert len(rotated) == 2
    # The signer switched keys twice during the loop, and the verifier kept up.
    assert list(firsts) == [first_claims.kid, *rotated]
    assert verified > 10
    assert ring_b.last_error is None
    assert ring_b.generation >= 1
    # Not even a transient "keeping the last good one": no reader ever saw a
    # manifest naming a missing or half-written key file.
    assert [r.getMessage() for r in caplog.records] == []
