"""The on-disk key directory: a JSON manifest plus one file per key.

Layout (see docs/operations.md)::

    keys/
      manifest.json       which keys exist, their algorithm and schedule
      <kid>.pem           PKCS#8 private key (RS256, ES256, EdDSA)
      <kid>.secret        32 random bytes (HS256)
      refresh.secret      refresh-token MAC secret 0 (``init``; never a signing key)
      refresh-<n>.secret  refresh-token MAC secret n (``rotate-refresh``)

Every file is written atomically (temp file, fsync, rename, fsync of the
directory) with mode 0600, and every read refuses a file that is missing,
corrupt, or readable by group or others, naming the file. Key states are not
stored: they follow from ``activates_at`` and the clock (see ``KeyRecord``),
so every process switches keys at the same instant without being told.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import stat
from collections.abc import Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final, Literal, overload

from .clock import Clock
from .errors import KeyringError
from .jwk import SUPPORTED_ALGORITHMS

MANIFEST_NAME: Final = "manifest.json"
REFRESH_SECRET_NAME: Final = "refresh.secret"
DEFAULT_MAX_SESSION_TTL: Final = 30 * 24 * 3600.0  # SessionPolicy.absolute_ttl's default
MAX_REFRESH_SECRET_ID: Final = 999_999_999
MANIFEST_FORMAT: Final = 1
_SAFE_FILE_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,96}\.(pem|secret)$")

PENDING: Final = "pending"
ACTIVE: Final = "active"
RETIRING: Final = "retiring"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One key as the manifest lists it.

    ``activates_at`` is when the key starts signing. Before it the key is
    *pending* (published, verifies, does not sign); from it until the next
    key's ``activates_at`` it is *active*; after that it is *retiring*
    (verifies only) until ``prune`` removes it.
    """

    kid: str
    alg: str
    file: str
    created_at: float
    activates_at: float


@dataclass(frozen=True, slots=True)
class RefreshSecretRecord:
    """One refresh-token MAC secret as the manifest lists it.

    The newest secret MACs new refresh tokens; an older one is *retired* from
    the next one's ``created_at`` and still verifies the tokens it MACed until
    ``prune`` removes it, once no live session can hold such a token.
    """

    id: int
    file: str
    created_at: float


def refresh_secret_file(secret_id: int) -> str:
    return REFRESH_SECRET_NAME if secret_id == 0 else f"refresh-{secret_id}.secret"


#: A manifest written before refresh secrets were listed has exactly this one.
LEGACY_REFRESH_SECRETS: Final = (RefreshSecretRecord(0, REFRESH_SECRET_NAME, 0.0),)


@dataclass(frozen=True, slots=True)
class Manifest:
    """The whole manifest. ``keys`` are sorted by ``activates_at``, oldest first,
    ``refresh_secrets`` by id (and so by ``created_at``), oldest first.

    ``max_session_ttl`` is the longest absolute session lifetime the apps use:
    a retired refresh secret is kept that long (plus ``leeway``).
    """

    keys: tuple[KeyRecord, ...]
    publish_delay: float
    max_token_ttl: float
    leeway: float
    refresh_secrets: tuple[RefreshSecretRecord, ...] = LEGACY_REFRESH_SECRETS
    max_session_ttl: float = DEFAULT_MAX_SESSION_TTL

    def refresh_secret_retired_at(self, record: RefreshSecretRecord) -> float | None:
        """When ``record`` stopped MACing new tokens: the next secret's creation, if any."""
        later = [r.created_at for r in self.refresh_secrets if r.id > record.id]
        return min(later) if later else None

    def state_of(self, record: KeyRecord, now: float) -> str:
        if record.activates_at > now:
            return PENDING
        later = [k for k in self.keys if now >= k.activates_at > record.activates_at]
        return RETIRING if later else ACTIVE

    def active_at(self, now: float) -> KeyRecord | None:
        live = [k for k in self.keys if k.activates_at <= now]
        return live[-1] if live else None

    def retired_at(self, record: KeyRecord) -> float | None:
        """When ``record`` stopped signing: the next key's activation, if any."""
        later = [k.activates_at for k in self.keys if k.activates_at > record.activates_at]
        return min(later) if later else None

    def prunable_after(self, record: KeyRecord | RefreshSecretRecord) -> float | None:
        """When ``prune`` may remove ``record``; None while it is the newest.

        A key once every token it signed has expired: ``max_token_ttl + leeway``
        after it stopped signing. A refresh secret once every session that could
        hold a token it MACed has ended: ``max_session_ttl + leeway`` after it
        stopped MACing.
        """
        if isinstance(record, KeyRecord):
            retired, kept = self.retired_at(record), self.max_token_ttl
        else:
            retired, kept = self.refresh_secret_retired_at(record), self.max_session_ttl
        return None if retired is None else retired + (kept + self.leeway)

    def without(self, gone: Collection[KeyRecord | RefreshSecretRecord]) -> Manifest:
        """This manifest with the records in ``gone`` no longer listed."""
        return replace(
            self,
            keys=tuple(k for k in self.keys if k not in gone),
            refresh_secrets=tuple(r for r in self.refresh_secrets if r not in gone),
        )

    def to_json(self) -> bytes:
        body = {
            "format": MANIFEST_FORMAT,
            "publish_delay": self.publish_delay,
            "max_token_ttl": self.max_token_ttl,
            "leeway": self.leeway,
            "max_session_ttl": self.max_session_ttl,
            "keys": [asdict(k) for k in self.keys],
            "refresh_secrets": [asdict(r) for r in self.refresh_secrets],
        }
        return (json.dumps(body, indent=2) + "\n").encode("utf-8")


def check_private_file(path: Path) -> os.stat_result:
    """Stat ``path``, refusing a missing, non-regular or group/world-readable file."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise KeyringError(f"{path}: file is missing") from None
    except OSError as exc:
        raise KeyringError(f"{path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise KeyringError(f"{path}: not a regular file")
    if info.st_mode & 0o077:
        raise KeyringError(
            f"{path}: mode {stat.S_IMODE(info.st_mode):04o} lets group or others read it; "
            "it must be 0600 (chmod 600)"
        )
    return info


def read_private_file(path: Path) -> bytes:
    check_private_file(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyringError(f"{path}: cannot be read ({exc.strerror})") from None


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an umask or an old temp file must not widen the mode
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """Serialise writers (two rotations at once would lose a key)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@overload
def prune_retired(directory: Path, kind: Literal["keys"], clock: Clock) -> list[KeyRecord]: ...
@overload
def prune_retired(
    directory: Path, kind: Literal["refresh_secrets"], clock: Clock
) -> list[RefreshSecretRecord]: ...
def prune_retired(
    directory: Path, kind: Literal["keys", "refresh_secrets"], clock: Clock
) -> Sequence[KeyRecord | RefreshSecretRecord]:
    """Remove the keys or refresh secrets whose ``prunable_after`` has passed; returns them.

    Under the directory lock: the manifest stops naming them first, then their
    files are removed (a process never reads a manifest naming a missing file).
    """
    with directory_lock(directory):
        manifest, _ = read_manifest(directory)
        now = clock()
        records: tuple[KeyRecord | RefreshSecretRecord, ...] = getattr(manifest, kind)
        gone = [
            r for r in records if (after := manifest.prunable_after(r)) is not None and after <= now
        ]
        if gone:
            atomic_write(directory / MANIFEST_NAME, manifest.without(gone).to_json())
            for record in gone:
                (directory / record.file).unlink(missing_ok=True)
    return gone


def _number(body: dict[str, Any], name: str, source: Path) -> float:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise KeyringError(f"{source}: {name!r} must be a non-negative number")
    return float(value)


def _record(item: Any, source: Path) -> KeyRecord:
    if not isinstance(item, dict):
        raise KeyringError(f"{source}: every entry of 'keys' must be an object")
    kid, alg, file = item.get("kid"), item.get("alg"), item.get("file")
    if not isinstance(kid, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,96}", kid):
        raise KeyringError(f"{source}: invalid kid {kid!r}")
    if alg not in SUPPORTED_ALGORITHMS:
        raise KeyringError(f"{source}: key {kid}: unsupported alg {alg!r}")
    if not isinstance(file, str) or not _SAFE_FILE_NAME.fullmatch(file):
        raise KeyringError(f"{source}: key {kid}: file must be a plain name, got {file!r}")
    return KeyRecord(
        kid=kid,
        alg=alg,
        file=file,
        created_at=_number(item, "created_at", source),
        activates_at=_number(item, "activates_at", source),
    )


def _refresh_record(item: Any, source: Path) -> RefreshSecretRecord:
    if not isinstance(item, dict):
        raise KeyringError(f"{source}: every entry of 'refresh_secrets' must be an object")
    secret_id, file = item.get("id"), item.get("file")
    if (
        isinstance(secret_id, bool)
        or not isinstance(secret_id, int)
        or not 0 <= secret_id <= MAX_REFRESH_SECRET_ID
    ):
        raise KeyringError(f"{source}: invalid refresh secret id {secret_id!r}")
    if file != refresh_secret_file(secret_id):
        raise KeyringError(
            f"{source}: refresh secret {secret_id}: file must be "
            f"{refresh_secret_file(secret_id)!r}, got {file!r}"
        )
    return RefreshSecretRecord(
        id=secret_id, file=file, created_at=_number(item, "created_at", source)
    )


def _unique(values: Sequence[object], problem: str, source: Path) -> None:
    if len(set(values)) != len(values):
        raise KeyringError(f"{source}: {problem}")


def _refresh_records(body: dict[str, Any], source: Path) -> tuple[RefreshSecretRecord, ...]:
    if "refresh_secrets" not in body:
        return LEGACY_REFRESH_SECRETS
    items = body["refresh_secrets"]
    if not isinstance(items, list):
        raise KeyringError(f"{source}: 'refresh_secrets' must be a list")
    records = sorted((_refresh_record(item, source) for item in items), key=lambda r: r.id)
    _unique([r.id for r in records], "duplicate refresh secret id", source)
    created = [r.created_at for r in records]
    if created != sorted(created):
        raise KeyringError(f"{source}: refresh secrets must be created in the order of their ids")
    return tuple(records)


def parse_manifest(data: bytes, source: Path) -> Manifest:
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise KeyringError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(body, dict) or body.get("format") != MANIFEST_FORMAT:
        raise KeyringError(f"{source}: not a jwtsess manifest of format {MANIFEST_FORMAT}")
    items = body.get("keys")
    if not isinstance(items, list) or not items:
        raise KeyringError(f"{source}: 'keys' must be a non-empty list")
    records = sorted((_record(item, source) for item in items), key=lambda k: k.activates_at)
    _unique([r.kid for r in records], "duplicate kid", source)
    _unique([r.activates_at for r in records], "two keys activate at the same instant", source)
    return Manifest(
        keys=tuple(records),
        publish_delay=_number(body, "publish_delay", source),
        max_token_ttl=_number(body, "max_token_ttl", source),
        leeway=_number(body, "leeway", source),
        refresh_secrets=_refresh_records(body, source),
        max_session_ttl=(
            _number(body, "max_session_ttl", source)
            if "max_session_ttl" in body
            else DEFAULT_MAX_SESSION_TTL
        ),
    )


def read_manifest(directory: Path) -> tuple[Manifest, os.stat_result]:
    path = directory / MANIFEST_NAME
    info = check_private_file(path)
    return parse_manifest(read_private_file(path), path), info
