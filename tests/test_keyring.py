"""KeyRing: live reloads, the unknown-kid re-check, keeping the last good ring, JWKS."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

import jwtsess.keyring as keyring_module
from jwtsess import (
    AccessTokenSigner,
    KeyRing,
    KeyringError,
    TokenInvalid,
    UnknownKeyId,
    Verifier,
    prune_keys,
    rotate_keys,
)
from jwtsess.jwk import b64url
from jwtsess.keyfiles import MANIFEST_NAME, KeyRecord, Manifest, atomic_write, read_manifest
from jwtsess.keyring import UNKNOWN_KID_RECHECK_SECONDS
from tests.support.kit import ALGORITHMS, TokenKit

Kit = Callable[..., TokenKit]
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k", "oth")


def _kids(ring: KeyRing) -> list[str]:
    return [k.kid for k in ring.manifest.keys]


def _count_manifest_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []

    def counting(directory: Path) -> tuple[Manifest, object]:
        calls.append(directory)
        return read_manifest(directory)

    monkeypatch.setattr(keyring_module, "read_manifest", counting)
    return calls


# -- picking up changes -------------------------------------------------------------


def test_rotation_is_picked_up_after_check_interval(make_kit: Kit) -> None:
    kit = make_kit("ES256")
    ring = kit.keyring
    old = ring.signing_key().kid
    new = rotate_keys(kit.directory, clock=kit.clock).kid
    kit.clock.advance(1.9)
    ring.check()
    assert _kids(ring) == [old]  # not looked at yet
    assert [k["kid"] for k in ring.jwks()["keys"]] == [old]
    assert ring.generation == 0
    kit.clock.advance(0.1)
    ring.check()
    assert _kids(ring) == [old, new]
    assert ring.generation == 1
    assert ring.verification_key(new) is not None
    assert ring.signing_key().kid == old  # the new key is pending


def test_signing_key_and_jwks_also_trigger_the_check(make_kit: Kit) -> None:
    kit = make_kit("EdDSA")
    new = rotate_keys(kit.directory, clock=kit.clock).kid
    kit.clock.advance(2)
    assert [k["kid"] for k in kit.keyring.jwks()["keys"]][-1] == new
    assert kit.keyring.generation == 1

    other = make_kit("EdDSA")
    newer = rotate_keys(other.directory, clock=other.clock, immediate=True).kid
    other.clock.advance(2)
    assert other.keyring.signing_key().kid == newer


def test_explicit_reload(make_kit: Kit) -> None:
    kit = make_kit("ES256")
    ring = kit.keyring
    assert ring.reload() is False  # nothing changed
    assert ring.generation == 0
    new = rotate_keys(kit.directory, clock=kit.clock).kid
    assert ring.reload() is True  # no need to wait for check_interval
    assert ring.generation == 1
    assert ring.verification_key(new) is not None
    assert ring.reload() is False
    assert ring.generation == 1


def test_reload_raises_on_a_bad_directory_and_keeps_the_ring(make_kit: Kit) -> None:
    kit = make_kit("ES256")
    token = kit.token()
    atomic_write(kit.directory / MANIFEST_NAME, b"{broken")
    with pytest.raises(KeyringError, match="not valid JSON"):
        kit.keyring.reload()
    assert kit.keyring.generation == 0
    assert kit.verifier.verify(token).sub == "user-1"


def test_generation_increments_once_per_change(make_kit: Kit) -> None:
    kit = make_kit("HS256")
    ring = kit.keyring
    generations = [ring.generation]
    rotate_keys(kit.directory, clock=kit.clock)
    kit.clock.advance(2)
    ring.check()
    generations.append(ring.generation)
    kit.clock.advance(2)
    ring.check()  # unchanged manifest: no new generation
    generations.append(ring.generation)
    kit.clock.advance(3600)
    ring.check()  # the pending key activated: a clock event, not a change of files
    generations.append(ring.generation)
    rotate_keys(kit.directory, clock=kit.clock)
    kit.clock.advance(2)
    ring.check()
    generations.append(ring.generation)
    assert generations == [0, 1, 1, 1, 2]


# -- unknown kids -------------------------------------------------------------------


def test_unknown_kid_triggers_a_rate_limited_recheck(make_kit: Kit) -> None:
    kit = make_kit("ES256")
    ring = kit.keyring
    new = rotate_keys(kit.directory, clock=kit.clock).kid
    kit.clock.advance(UNKNOWN_KID_RECHECK_SECONDS / 2)
    assert ring.verification_key(new) is None  # too soon after the last look
    kit.clock.advance(UNKNOWN_KID_RECHECK_SECONDS / 2)
    key = ring.verification_key(new)  # well before check_interval (2 s)
    assert key is not None
    assert key.kid == new
    assert ring.generation == 1


def test_forged_kids_do_not_cause_a_stat_storm(
    make_kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    kit = make_kit("ES256")
    reads = _count_manifest_reads(monkeypatch)
    for i in range(100):
        assert kit.keyring.verification_key(f"forged-{i}") is None
    assert reads == []
    kit.clock.advance(UNKNOWN_KID_RECHECK_SECONDS)
    for i in range(100):
        assert kit.keyring.verification_key(f"forged-{i}") is None
    assert len(reads) == 1
    kit.clock.advance(UNKNOWN_KID_RECHECK_SECONDS)
    assert kit.keyring.verification_key("forged") is None
    assert len(reads) == 2


def test_known_kids_do_not_reread_the_manifest(
    make_kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    kit = make_kit("HS256")
    token = kit.token()
    reads = _count_manifest_reads(monkeypatch)
    for _ in range(50):
        kit.verifier.verify(token)
        kit.clock.advance(0.01)
    assert reads == []  # 0.5 s < check_interval
    kit.clock.advance(2)
    kit.verifier.verify(token)
    assert len(reads) == 1


def test_verifier_accepts_an_immediate_key_before_its_check_interval(make_kit: Kit) -> None:
    """Another process rotated with --immediate and signs with the new key at once."""
    kit = make_kit("ES256")
    kit.clock.advance(60)
    new = rotate_keys(kit.directory, clock=kit.clock, immediate=True).kid
    issuer_ring = KeyRing(kit.directory, clock=kit.clock, monotonic=kit.clock)
    token, claims = AccessTokenSigner(issuer_ring, kit.settings, clock=kit.clock).issue(
        "u", "r", "s"
    )
    assert claims.kid == new
    kit.clock.advance(UNKNOWN_KID_RECHECK_SECONDS)
    assert kit.verifier.verify(token).kid == new


def test_unknown_kid_is_an_unknown_key_id_error(make_kit: Kit) -> None:
    kit = make_kit("ES256")
    other = make_kit("ES256")
    token = other.token()
    with pytest.raises(UnknownKeyId) as err:
        kit.verifier.verify(token)
    assert err.value.code == "token_invalid"
    assert isinstance(err.value, TokenInvalid)


# -- a manifest that turns bad while running -----------------------------------------


@pytest.mark.parametrize(
    "corrupt",
    ["bad-json", "mode-0644", "missing-key-file", "deleted"],
)
def test_corrupt_manifest_keeps_the_last_good_ring(make_kit: Kit, corrupt: str) -> None:
    kit = make_kit("ES256")
    token = kit.token()
    kid = kit.keyring.signing_key().kid
    manifest_path = kit.directory / MANIFEST_NAME
    if corrupt == "bad-json":
        atomic_write(manifest_path, b'{"format": 1, "keys": [')
        offending = manifest_path
    elif corrupt == "mode-0644":
        manifest_path.chmod(0o644)
        offending = manifest_path
    elif corrupt == "missing-key-file":
        # A newer manifest naming a key file that is not there.
        manifest, _ = read_manifest(kit.directory)
        extra = KeyRecord(
            kid="ghost",
            alg="ES256",
            file="ghost.pem",
            created_at=kit.clock(),
            activates_at=kit.clock() + 10,
        )
        body = Manifest(
            keys=(*manifest.keys, extra),
            publish_delay=manifest.publish_delay,
            max_token_ttl=manifest.max_token_ttl,
            leeway=manifest.leeway,
        )
        atomic_write(manifest_path, body.to_json())
        offending = kit.directory / "ghost.pem"
    else:
        manifest_path.unlink()
        offending = manifest_path

    kit.clock.advance(2)
    kit.keyring.check()
    assert isinstance(kit.keyring.last_error, KeyringError)
    assert str(offending) in str(kit.keyring.last_error)
    assert kit.keyring.generation == 0
    # Still serving with the last good ring.
    assert kit.verifier.verify(token).kid == kid
    fresh = kit.token()
    assert kit.verifier.verify(fresh).kid == kid
    assert [k["kid"] for k in kit.keyring.jwks()["keys"]] == [kid]


def test_a_persisting_error_stays_and_is_logged_once(
    make_kit: Kit, caplog: pytest.LogCaptureFixture
) -> None:
    kit = make_kit("ES256")
    atomic_write(kit.directory / MANIFEST_NAME, b"not json")
    with caplog.at_level(logging.ERROR, logger="jwtsess.keyring"):
        for _ in range(3):
            kit.clock.advance(2)
            kit.keyring.check()
            assert kit.keyring.last_error is not None
    errors = [r for r in caplog.records if "keeping the last good one" in r.getMessage()]
    assert len(errors) == 1


def test_rotate_refuses_a_corrupt_manifest(make_kit: Kit) -> None:
    kit = make_kit("ES256")
    atomic_write(kit.directory / MANIFEST_NAME, b"not json")
    with pytest.raises(KeyringError, match="not valid JSON"):
        rotate_keys(kit.directory, clock=kit.clock)


def test_fixing_the_manifest_clears_last_error(make_kit: Kit) -> None:
    kit = make_kit("ES256")
    manifest_path = kit.directory / MANIFEST_NAME
    good = manifest_path.read_bytes()
    atomic_write(manifest_path, b"not json")
    kit.clock.advance(2)
    kit.keyring.check()
    assert kit.keyring.last_error is not None
    atomic_write(manifest_path, good)
    kit.clock.advance(2)
    kit.keyring.check()
    assert kit.keyring.last_error is None


def test_restoring_the_manifest_mode_clears_last_error(make_kit: Kit) -> None:
    """``last_error`` describes the directory now, not a problem that has been fixed."""
    kit = make_kit("ES256")
    manifest_path = kit.directory / MANIFEST_NAME
    manifest_path.chmod(0o644)
    kit.clock.advance(2)
    kit.keyring.check()
    assert kit.keyring.last_error is not None
    manifest_path.chmod(0o600)
    kit.clock.advance(2)
    kit.keyring.check()
    assert kit.keyring.last_error is None


# -- JWKS ---------------------------------------------------------------------------


def _check_published(jwk: dict[str, str], alg: str) -> None:
    assert jwk["alg"] == alg
    assert jwk["use"] == "sig"
    assert jwk["kid"]
    for member in PRIVATE_MEMBERS:
        assert member not in jwk


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_jwks_has_pending_active_and_retiring_keys(make_kit: Kit, alg: str) -> None:
    kit = make_kit(alg)
    first = kit.keyring.signing_key().kid
    second = rotate_keys(kit.directory, clock=kit.clock).kid
    kit.clock.advance(3600)  # second active, first retiring
    third = rotate_keys(kit.directory, clock=kit.clock).kid  # pending
    kit.clock.advance(2)
    kit.keyring.check()
    manifest = kit.keyring.manifest
    states = [manifest.state_of(k, kit.clock()) for k in manifest.keys]
    assert states == ["retiring", "active", "pending"]
    jwks = json.loads(json.dumps(kit.keyring.jwks()))
    assert set(jwks) == {"keys"}
    assert [k["kid"] for k in jwks["keys"]] == [first, second, third]
    for jwk in jwks["keys"]:
        _check_published(jwk, alg)


def test_hs256_ring_publishes_an_empty_key_set(make_kit: Kit) -> None:
    kit = make_kit("HS256")
    assert kit.keyring.jwks() == {"keys": []}
    rotate_keys(kit.directory, clock=kit.clock)
    kit.clock.advance(2)
    kit.keyring.check()
    assert len(kit.keyring.manifest.keys) == 2
    assert kit.keyring.jwks() == {"keys": []}


@pytest.mark.parametrize("asymmetric", ["RS256", "ES256"])
def test_mixed_ring_never_publishes_the_hmac_secret(make_kit: Kit, asymmetric: str) -> None:
    kit = make_kit("HS256")
    hs_key = kit.keyring.signing_key()
    secret = hs_key.sign_key
    assert isinstance(secret, bytes)
    new = rotate_keys(kit.directory, alg=asymmetric, clock=kit.clock).kid
    kit.clock.advance(2)
    jwks = kit.keyring.jwks()
    assert [k["kid"] for k in jwks["keys"]] == [new]
    text = json.dumps(jwks)
    assert hs_key.kid not in text
    assert b64url(secret) not in text
    assert secret.hex() not in text
    assert '"oct"' not in text


def test_jwks_of_each_algorithm_after_rotation_to_hs256(make_kit: Kit) -> None:
    kit = make_kit("ES256")
    es = kit.keyring.signing_key().kid
    rotate_keys(kit.directory, alg="HS256", clock=kit.clock)
    kit.clock.advance(2)
    assert [k["kid"] for k in kit.keyring.jwks()["keys"]] == [es]


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_jwks_is_a_fresh_copy(make_kit: Kit, alg: str) -> None:
    kit = make_kit(alg)
    jwks = kit.keyring.jwks()
    jwks["keys"].append({"kid": "injected"})
    for jwk in jwks["keys"][:-1]:
        jwk["kid"] = "changed"
    again = kit.keyring.jwks()
    assert all(k["kid"] not in {"injected", "changed"} for k in again["keys"])


# -- the verifier's cache follows the ring --------------------------------------------


def test_cached_token_of_a_pruned_key_fails(make_kit: Kit) -> None:
    # A token that outlives the manifest's max_token_ttl (a misconfiguration), so the
    # only thing that can reject it after prune is the missing key.
    kit = make_kit("ES256", access_ttl=24 * 3600)
    token = kit.token()
    old = kit.keyring.signing_key().kid
    assert kit.verifier.verify(token).kid == old  # now cached
    rotate_keys(kit.directory, clock=kit.clock)
    kit.clock.advance(3600 + 900 + 60)
    assert kit.verifier.verify(token).kid == old  # retiring, still fine
    assert prune_keys(kit.directory, clock=kit.clock) == [old]
    kit.clock.advance(2)
    with pytest.raises(UnknownKeyId) as err:
        kit.verifier.verify(token)
    assert err.value.code == "token_invalid"
    assert kit.keyring.verification_key(old) is None


def test_cache_drop_is_seen_even_when_another_caller_reloaded(make_kit: Kit) -> None:
    kit = make_kit("HS256", access_ttl=24 * 3600)
    token = kit.token()
    kit.verifier.verify(token)
    rotate_keys(kit.directory, clock=kit.clock, immediate=True)
    kit.clock.advance(2 + 900 + 60)
    old = kit.keyring.manifest.keys[0].kid
    assert prune_keys(kit.directory, clock=kit.clock) == [old]
    kit.clock.advance(2)
    kit.keyring.check()  # the reload happens outside the verifier
    assert kit.keyring.generation == 1
    with pytest.raises(UnknownKeyId):
        kit.verifier.verify(token)


def test_rotation_does_not_break_cached_tokens(make_kit: Kit) -> None:
    kit = make_kit("ES256")
    token = kit.token()
    kit.verifier.verify(token)
    rotate_keys(kit.directory, clock=kit.clock)
    kit.clock.advance(2)
    assert kit.verifier.verify(token).sub == "user-1"  # re-verified after the drop
    assert kit.keyring.generation == 1


def test_a_second_verifier_on_the_same_directory_agrees(make_kit: Kit) -> None:
    kit = make_kit("EdDSA")
    other_ring = KeyRing(kit.directory, clock=kit.clock, monotonic=kit.clock)
    other = Verifier(other_ring, kit.settings, clock=kit.clock)
    token = kit.token()
    assert other.verify(token) == kit.verifier.verify(token)
