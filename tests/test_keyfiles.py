"""The key directory on disk: atomic 0600 writes, strict reads, and the key schedule."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jwtsess import KeyRing, KeyringError, init_keys
from jwtsess.keyfiles import (
    ACTIVE,
    MANIFEST_NAME,
    PENDING,
    REFRESH_SECRET_NAME,
    RETIRING,
    KeyRecord,
    Manifest,
    RefreshSecretRecord,
    atomic_write,
    check_private_file,
    parse_manifest,
    read_manifest,
    read_private_file,
)
from tests.support.kit import T0, MutableClock


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_zero() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def keydir(tmp_path: Path, clock: MutableClock) -> Path:
    """An initialised ES256 key directory (cheap keys)."""
    directory = tmp_path / "keys"
    init_keys(directory, "ES256", clock=clock)
    return directory


def _manifest_body(keydir: Path) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((keydir / MANIFEST_NAME).read_bytes())
    return body


def _write_manifest(keydir: Path, body: object) -> Path:
    path = keydir / MANIFEST_NAME
    atomic_write(path, json.dumps(body).encode("utf-8"))
    return path


# -- atomic_write ---------------------------------------------------------------------


def test_atomic_write_is_0600_even_with_umask_zero(tmp_path: Path, umask_zero: None) -> None:
    path = tmp_path / "secret.pem"
    atomic_write(path, b"material")
    assert _mode(path) == 0o600
    assert path.read_bytes() == b"material"


def test_atomic_write_overwriting_a_0644_file_leaves_0600(tmp_path: Path, umask_zero: None) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(b"old")
    path.chmod(0o644)
    assert _mode(path) == 0o644
    atomic_write(path, b"new contents")
    assert _mode(path) == 0o600
    assert path.read_bytes() == b"new contents"


def test_atomic_write_fixes_the_mode_of_a_stale_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "k.secret"
    stale = tmp_path / f".k.secret.{os.getpid()}.tmp"
    stale.write_bytes(b"left over by a crash, much longer than the new contents")
    stale.chmod(0o666)
    atomic_write(path, b"fresh")
    assert _mode(path) == 0o600
    assert path.read_bytes() == b"fresh"  # truncated, not a mix of old and new


def test_atomic_write_replaces_the_inode_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    atomic_write(path, b"one")
    first_inode = path.stat().st_ino
    atomic_write(path, b"two")
    assert path.stat().st_ino != first_inode  # rename, not an in-place rewrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_init_writes_every_file_0600(tmp_path: Path, clock: MutableClock, umask_zero: None) -> None:
    directory = tmp_path / "keys"
    record = init_keys(directory, "EdDSA", clock=clock)
    for name in (MANIFEST_NAME, REFRESH_SECRET_NAME, record.file):
        assert _mode(directory / name) == 0o600, name
    assert len((directory / REFRESH_SECRET_NAME).read_bytes()) == 32


# -- refusing files: missing, unsafe, corrupt ----------------------------------------


def test_missing_manifest_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="file is missing") as err:
        read_manifest(tmp_path)
    assert str(tmp_path / MANIFEST_NAME) in str(err.value)
    with pytest.raises(KeyringError) as err2:
        KeyRing(tmp_path)
    assert str(tmp_path / MANIFEST_NAME) in str(err2.value)


def test_manifest_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).mkdir()
    with pytest.raises(KeyringError, match="not a regular file") as err:
        check_private_file(tmp_path / MANIFEST_NAME)
    assert str(tmp_path / MANIFEST_NAME) in str(err.value)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620, 0o602, 0o660])
def test_group_or_world_accessible_manifest_is_refused(keydir: Path, mode: int) -> None:
    path = keydir / MANIFEST_NAME
    path.chmod(mode)
    with pytest.raises(KeyringError, match="chmod 600") as err:
        read_manifest(keydir)
    assert str(path) in str(err.value)
    assert f"{mode:04o}" in str(err.value)
    with pytest.raises(KeyringError) as err2:
        KeyRing(keydir)
    assert str(path) in str(err2.value)


def test_a_0400_manifest_is_accepted(keydir: Path) -> None:
    (keydir / MANIFEST_NAME).chmod(0o400)
    manifest, _ = read_manifest(keydir)
    assert len(manifest.keys) == 1


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[]", "not a jwtsess manifest"),
        (b'{"format": 2, "keys": []}', "not a jwtsess manifest"),
        (b'{"keys": []}', "not a jwtsess manifest"),
        (b'{"format": 1, "keys": []}', "non-empty list"),
        (b'{"format": 1, "keys": {}}', "non-empty list"),
        (b'{"format": 1, "keys": ["x"]}', "must be an object"),
    ],
    ids=[
        "bad-json",
        "not-utf8",
        "empty",
        "list",
        "format-2",
        "no-format",
        "no-keys",
        "keys-not-list",
        "key-not-object",
    ],
)
def test_corrupt_manifest_is_refused_naming_the_file(keydir: Path, data: bytes, match: str) -> None:
    path = keydir / MANIFEST_NAME
    atomic_write(path, data)
    with pytest.raises(KeyringError, match=match) as err:
        read_manifest(keydir)
    assert str(path) in str(err.value)


def _mutations() -> list[tuple[str, Callable[[dict[str, Any]], None], str]]:
    def duplicate_kid(body: dict[str, Any]) -> None:
        twin = dict(body["keys"][0])
        twin["activates_at"] += 10
        body["keys"].append(twin)

    def same_instant(body: dict[str, Any]) -> None:
        twin = dict(body["keys"][0])
        twin["kid"] = "other-kid"
        twin["file"] = "other-kid.pem"
        body["keys"].append(twin)

    def setter(name: str, value: object) -> Callable[[dict[str, Any]], None]:
        def mutate(body: dict[str, Any]) -> None:
            body["keys"][0][name] = value

        return mutate

    def top(name: str, value: object) -> Callable[[dict[str, Any]], None]:
        def mutate(body: dict[str, Any]) -> None:
            body[name] = value

        return mutate

    def secret(name: str, value: object) -> Callable[[dict[str, Any]], None]:
        def mutate(body: dict[str, Any]) -> None:
            body["refresh_secrets"][0][name] = value

        return mutate

    def duplicate_secret(body: dict[str, Any]) -> None:
        body["refresh_secrets"].append(dict(body["refresh_secrets"][0]))

    def secret_from_the_past(body: dict[str, Any]) -> None:
        first = body["refresh_secrets"][0]
        later = {"id": 1, "file": "refresh-1.secret", "created_at": first["created_at"] - 1}
        body["refresh_secrets"].append(later)

    return [
        ("duplicate-kid", duplicate_kid, "duplicate kid"),
        ("same-instant", same_instant, "same instant"),
        ("traversal", setter("file", "../x.pem"), "plain name"),
        ("absolute", setter("file", "/etc/passwd"), "plain name"),
        ("subdir", setter("file", "sub/x.pem"), "plain name"),
        ("wrong-suffix", setter("file", "x.txt"), "plain name"),
        ("file-not-str", setter("file", 7), "plain name"),
        ("bad-kid", setter("kid", "../../etc"), "invalid kid"),
        ("empty-kid", setter("kid", ""), "invalid kid"),
        ("bad-alg", setter("alg", "none"), "unsupported alg"),
        ("negative-time", setter("activates_at", -1), "non-negative number"),
        ("bool-time", setter("created_at", True), "non-negative number"),
        ("string-time", setter("activates_at", "soon"), "non-negative number"),
        ("missing-delay", top("publish_delay", None), "publish_delay"),
        ("negative-ttl", top("max_token_ttl", -5), "max_token_ttl"),
        ("leeway-str", top("leeway", "60"), "leeway"),
        ("session-ttl-negative", top("max_session_ttl", -1), "max_session_ttl"),
        ("secrets-not-list", top("refresh_secrets", {}), "'refresh_secrets' must be a list"),
        ("secret-not-object", top("refresh_secrets", [0]), "must be an object"),
        ("secret-id-str", secret("id", "1"), "invalid refresh secret id"),
        ("secret-id-negative", secret("id", -1), "invalid refresh secret id"),
        ("secret-id-bool", secret("id", True), "invalid refresh secret id"),
        ("secret-file-traversal", secret("file", "../refresh.secret"), "file must be"),
        ("secret-file-other", secret("file", "refresh-7.secret"), "file must be"),
        ("secret-created-str", secret("created_at", "now"), "non-negative number"),
        ("secret-duplicate", duplicate_secret, "duplicate refresh secret id"),
        ("secret-out-of-order", secret_from_the_past, "in the order of their ids"),
    ]


@pytest.mark.parametrize(
    ("mutate", "match"),
    [(m, match) for _, m, match in _mutations()],
    ids=[name for name, _, _ in _mutations()],
)
def test_inconsistent_manifest_is_refused_naming_the_file(
    keydir: Path, mutate: Callable[[dict[str, Any]], None], match: str
) -> None:
    body = _manifest_body(keydir)
    mutate(body)
    path = _write_manifest(keydir, body)
    with pytest.raises(KeyringError, match=match) as err:
        read_manifest(keydir)
    assert str(path) in str(err.value)
    with pytest.raises(KeyringError, match=match):
        KeyRing(keydir)


def test_parse_manifest_round_trips_to_json(keydir: Path) -> None:
    manifest, _ = read_manifest(keydir)
    again = parse_manifest(manifest.to_json(), keydir / MANIFEST_NAME)
    assert again == manifest
    assert json.loads(manifest.to_json())["format"] == 1


def test_missing_key_file_names_the_file(keydir: Path) -> None:
    manifest, _ = read_manifest(keydir)
    key_path = keydir / manifest.keys[0].file
    key_path.unlink()
    with pytest.raises(KeyringError, match="file is missing") as err:
        KeyRing(keydir)
    assert str(key_path) in str(err.value)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_group_or_world_readable_key_file_names_the_file(keydir: Path, mode: int) -> None:
    manifest, _ = read_manifest(keydir)
    key_path = keydir / manifest.keys[0].file
    key_path.chmod(mode)
    with pytest.raises(KeyringError, match="chmod 600") as err:
        KeyRing(keydir)
    assert str(key_path) in str(err.value)


def test_corrupt_key_file_names_the_file(keydir: Path) -> None:
    manifest, _ = read_manifest(keydir)
    key_path = keydir / manifest.keys[0].file
    atomic_write(key_path, b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyringError, match="PEM") as err:
        KeyRing(keydir)
    assert str(key_path) in str(err.value)


def test_key_file_swapped_for_another_key_names_the_file(keydir: Path, clock: MutableClock) -> None:
    other = keydir.parent / "other"
    other_record = init_keys(other, "ES256", clock=clock)
    manifest, _ = read_manifest(keydir)
    key_path = keydir / manifest.keys[0].file
    atomic_write(key_path, (other / other_record.file).read_bytes())
    with pytest.raises(KeyringError, match="thumbprint") as err:
        KeyRing(keydir)
    assert str(key_path) in str(err.value)


def test_unsafe_refresh_secret_names_the_file(keydir: Path) -> None:
    path = keydir / REFRESH_SECRET_NAME
    path.chmod(0o644)
    with pytest.raises(KeyringError, match="chmod 600") as err:
        KeyRing(keydir)
    assert str(path) in str(err.value)


def test_missing_refresh_secret_is_reported_on_use(keydir: Path) -> None:
    path = keydir / REFRESH_SECRET_NAME
    path.unlink()
    ring = KeyRing(keydir)
    with pytest.raises(KeyringError, match="file is missing") as err:
        _ = ring.refresh_secret
    assert str(path) in str(err.value)


def test_read_private_file_returns_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "x.secret"
    atomic_write(path, b"\x00\x01secret")
    assert read_private_file(path) == b"\x00\x01secret"


# -- the schedule ---------------------------------------------------------------------


def _record(kid: str, activates_at: float) -> KeyRecord:
    return KeyRecord(
        kid=kid,
        alg="ES256",
        file=f"{kid}.pem",
        created_at=activates_at - 50,
        activates_at=activates_at,
    )


@pytest.fixture
def schedule() -> Manifest:
    return Manifest(
        keys=(_record("a", 100.0), _record("b", 200.0), _record("c", 300.0)),
        publish_delay=50.0,
        max_token_ttl=900.0,
        leeway=60.0,
    )


def test_state_of_follows_the_clock(schedule: Manifest) -> None:
    a, b, c = schedule.keys
    assert [schedule.state_of(k, 50.0) for k in (a, b, c)] == [PENDING, PENDING, PENDING]
    assert [schedule.state_of(k, 100.0) for k in (a, b, c)] == [ACTIVE, PENDING, PENDING]
    assert [schedule.state_of(k, 199.999) for k in (a, b, c)] == [ACTIVE, PENDING, PENDING]
    assert [schedule.state_of(k, 200.0) for k in (a, b, c)] == [RETIRING, ACTIVE, PENDING]
    assert [schedule.state_of(k, 250.0) for k in (a, b, c)] == [RETIRING, ACTIVE, PENDING]
    assert [schedule.state_of(k, 300.0) for k in (a, b, c)] == [RETIRING, RETIRING, ACTIVE]
    assert [schedule.state_of(k, 10_000.0) for k in (a, b, c)] == [RETIRING, RETIRING, ACTIVE]


def test_exactly_one_key_is_active_once_the_first_has_activated(schedule: Manifest) -> None:
    for now in (100.0, 150.0, 199.0, 200.0, 299.5, 300.0, 1e6):
        states = [schedule.state_of(k, now) for k in schedule.keys]
        assert states.count(ACTIVE) == 1, now
        active = schedule.active_at(now)
        assert active is not None
        assert schedule.state_of(active, now) == ACTIVE


def test_active_at(schedule: Manifest) -> None:
    assert schedule.active_at(99.999) is None
    assert [
        getattr(schedule.active_at(now), "kid", None) for now in (100, 199, 200, 299, 300, 1e9)
    ] == ["a", "a", "b", "b", "c", "c"]


def test_retired_at(schedule: Manifest) -> None:
    a, b, c = schedule.keys
    assert schedule.retired_at(a) == 200.0
    assert schedule.retired_at(b) == 300.0
    assert schedule.retired_at(c) is None


def test_pending_key_does_not_retire_the_active_one(schedule: Manifest) -> None:
    a, b, _ = schedule.keys
    # b is scheduled but not active yet: a is still active, even though retired_at(a)
    # is already known.
    assert schedule.retired_at(a) == 200.0
    assert schedule.state_of(a, 150.0) == ACTIVE
    assert schedule.state_of(b, 150.0) == PENDING


def test_parse_manifest_sorts_keys_by_activation(tmp_path: Path) -> None:
    body = {
        "format": 1,
        "publish_delay": 1,
        "max_token_ttl": 2,
        "leeway": 3,
        "keys": [
            {"kid": "late", "alg": "HS256", "file": "late.secret", "created_at": 0,
             "activates_at": T0 + 10},
            {"kid": "early", "alg": "HS256", "file": "early.secret", "created_at": 0,
             "activates_at": T0},
        ],
    }  # fmt: skip
    manifest = parse_manifest(json.dumps(body).encode(), tmp_path / MANIFEST_NAME)
    assert [k.kid for k in manifest.keys] == ["early", "late"]
    assert (manifest.publish_delay, manifest.max_token_ttl, manifest.leeway) == (1.0, 2.0, 3.0)
    active = manifest.active_at(T0 + 5)
    assert active is not None
    assert active.kid == "early"


def test_a_manifest_from_before_refresh_rotation_has_secret_zero(keydir: Path) -> None:
    body = _manifest_body(keydir)
    del body["refresh_secrets"], body["max_session_ttl"]
    _write_manifest(keydir, body)
    manifest, _ = read_manifest(keydir)
    assert manifest.refresh_secrets == (RefreshSecretRecord(0, "refresh.secret", 0.0),)
    assert manifest.max_session_ttl == 30 * 24 * 3600
    ring = KeyRing(keydir)
    assert ring.refresh_secret.id == 0
    assert ring.refresh_secret.secret == (keydir / "refresh.secret").read_bytes()


def test_a_listed_refresh_secret_whose_file_is_missing_is_reported_on_use(keydir: Path) -> None:
    body = _manifest_body(keydir)
    body["refresh_secrets"].append({"id": 1, "file": "refresh-1.secret", "created_at": T0})
    _write_manifest(keydir, body)
    ring = KeyRing(keydir)  # a verify-only process needs no refresh secret
    with pytest.raises(KeyringError, match=r"refresh-1\.secret: file is missing"):
        _ = ring.refresh_secret
    assert ring.refresh_secret_by_id(0) is not None  # secret 0 is there
    with pytest.raises(KeyringError, match=r"refresh-1\.secret: file is missing"):
        ring.refresh_secret_by_id(1)
    assert ring.refresh_secret_by_id(2) is None  # not listed: an unknown id


def test_the_refresh_secret_never_shows_in_a_repr(keydir: Path) -> None:
    secret = KeyRing(keydir).refresh_secret
    assert secret.secret.hex() not in repr(secret)
    assert repr(secret.secret) not in repr(secret)
