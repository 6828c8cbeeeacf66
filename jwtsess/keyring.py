"""KeyRing: the signing and verification keys of one process, kept in step with ``keys/``.

Sign with the key active now; verify with any key the manifest lists, chosen
by ``kid`` only. A running process notices a changed manifest by a cheap
``stat`` at most every ``check_interval`` seconds (and, rate-limited, when a
token names a kid it does not know), so a rotation needs no restart. A
manifest that turns bad while running is logged and ignored: the last good
ring keeps serving, because failing every request over an operator's typo
would be worse.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from .clock import Clock, system_clock
from .errors import KeyringError
from .jwk import SigningKey, load_signing_key
from .keyfiles import (
    MANIFEST_NAME,
    Manifest,
    RefreshSecretRecord,
    check_private_file,
    read_manifest,
    read_private_file,
)
from .refresh_token import RefreshSecret

logger = logging.getLogger("jwtsess.keyring")

# An unknown kid may mean a key this process has not loaded yet; look again,
# but never more often than this, so forged kids cannot turn into a stat storm.
UNKNOWN_KID_RECHECK_SECONDS = 0.25


@dataclass(frozen=True, slots=True)
class _Loaded:
    manifest: Manifest
    by_kid: Mapping[str, SigningKey]
    schedule: tuple[tuple[float, SigningKey], ...]  # (activates_at, key), oldest first
    refresh_secrets: Mapping[int, bytes]  # by id; a listed secret whose file is missing is absent
    fingerprint: tuple[int, int, int]  # (inode, size, mtime_ns) of the manifest


class KeyRing:
    """The keys under ``directory``.

    :param directory: the key directory managed by ``jwtsess-keys``.
    :param clock: wall-clock seconds; decides which key is active.
    :param check_interval: seconds between checks for a changed manifest.
    :raises KeyringError: at construction, if the directory is unusable.
    """

    def __init__(
        self,
        directory: str | PathLike[str],
        *,
        clock: Clock = system_clock,
        check_interval: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = Path(directory)
        self._clock = clock
        self._check_interval = check_interval
        self._monotonic = monotonic
        self._loaded = self._read()
        self._last_check = monotonic()
        self.generation = 0
        self.last_error: KeyringError | None = None

    # -- loading ---------------------------------------------------------------

    def _read(self, previous: Mapping[str, SigningKey] | None = None) -> _Loaded:
        manifest, info = read_manifest(self.directory)
        by_kid: dict[str, SigningKey] = {}
        for record in manifest.keys:
            path = self.directory / record.file
            known = previous.get(record.kid) if previous else None
            if known is not None and known.alg == record.alg and known.public_jwk is not None:
                # An asymmetric kid is the key's thumbprint: same kid, same key pair.
                # Reusing it spares a reload ~40 ms of RSA key checks per key,
                # paid on the request that notices the change.
                check_private_file(path)
                by_kid[record.kid] = known
                continue
            by_kid[record.kid] = load_signing_key(
                record.kid, record.alg, read_private_file(path), source=str(path)
            )
        # A process that only verifies access tokens may hold no refresh secret at
        # all: a missing file is an error only when a refresh needs it.
        refresh_secrets = {
            r.id: read_private_file(self.directory / r.file)
            for r in manifest.refresh_secrets
            if (self.directory / r.file).exists()
        }
        return _Loaded(
            manifest=manifest,
            by_kid=by_kid,
            schedule=tuple((r.activates_at, by_kid[r.kid]) for r in manifest.keys),
            refresh_secrets=refresh_secrets,
            fingerprint=(info.st_ino, info.st_size, info.st_mtime_ns),
        )

    def reload(self) -> bool:
        """Re-read the directory now. Returns True if the ring changed.

        :raises KeyringError: if the directory is unusable; the old ring stays.
        """
        self._last_check = self._monotonic()
        loaded = self._read(self._loaded.by_kid)
        if loaded.fingerprint == self._loaded.fingerprint:
            return False
        self._loaded = loaded
        self.generation += 1
        self.last_error = None
        logger.info("keyring reloaded: kids=%s", sorted(loaded.by_kid))
        return True

    def _maybe_reload(self, interval: float) -> None:
        now = self._monotonic()
        if now - self._last_check < interval:
            return
        self._last_check = now
        try:
            _, info = read_manifest(self.directory)
            if (info.st_ino, info.st_size, info.st_mtime_ns) != self._loaded.fingerprint:
                self.reload()
            self.last_error = None  # healthy again (e.g. a mode fixed by chmod alone)
        except KeyringError as exc:
            if self.last_error is None or str(self.last_error) != str(exc):
                logger.error("keyring not reloaded, keeping the last good one: %s", exc)
            self.last_error = exc

    def check(self) -> None:
        """Reload if the manifest changed; a no-op until ``check_interval`` has passed.

        On the per-request path: one clock read and one comparison.
        """
        if self._monotonic() - self._last_check >= self._check_interval:
            self._maybe_reload(self._check_interval)

    @property
    def manifest(self) -> Manifest:
        return self._loaded.manifest

    def signing_key(self) -> SigningKey:
        """The key that signs now: the newest whose ``activates_at`` has passed."""
        self._maybe_reload(self._check_interval)
        now = self._clock()
        chosen: SigningKey | None = None
        for activates_at, key in self._loaded.schedule:
            if activates_at > now:
                break
            chosen = key
        if chosen is None:
            raise KeyringError(f"{self.directory}: no key is active yet")
        return chosen

    def verification_key(self, kid: str) -> SigningKey | None:
        """The key named ``kid``, or None. Never a guess, never a fallback."""
        self._maybe_reload(self._check_interval)
        key = self._loaded.by_kid.get(kid)
        if key is None:
            self._maybe_reload(min(UNKNOWN_KID_RECHECK_SECONDS, self._check_interval))
            key = self._loaded.by_kid.get(kid)
        return key

    async def wait_for_key(self, kid: str) -> bool:
        """Whether ``kid`` is known now. Nothing to wait for: ``verification_key``
        already looked at the directory again (rate-limited) when it missed."""
        return kid in self._loaded.by_kid

    def _refresh_secret(self, record: RefreshSecretRecord) -> bytes:
        secret = self._loaded.refresh_secrets.get(record.id)
        if secret is None:
            raise KeyringError(f"{self.directory / record.file}: file is missing")
        return secret

    def _refresh_record(self, secret_id: int) -> RefreshSecretRecord | None:
        return next((r for r in self.manifest.refresh_secrets if r.id == secret_id), None)

    @property
    def refresh_secret(self) -> RefreshSecret:
        """The secret that MACs new refresh tokens: the newest the manifest lists.

        :raises KeyringError: its file is missing, or the manifest lists none.
        """
        self._maybe_reload(self._check_interval)
        records = self.manifest.refresh_secrets
        if not records:
            raise KeyringError(f"{self.directory / MANIFEST_NAME}: lists no refresh secret")
        return RefreshSecret(records[-1].id, self._refresh_secret(records[-1]))

    def refresh_secret_by_id(self, secret_id: int) -> bytes | None:
        """The refresh secret ``secret_id`` (current or retired), or None if not listed.

        An unknown id may be a secret another process has just added (a
        rotation): look at the manifest again, rate-limited like unknown kids.

        :raises KeyringError: the secret is listed but its file is missing.
        """
        self._maybe_reload(self._check_interval)
        record = self._refresh_record(secret_id)
        if record is None:
            self._maybe_reload(min(UNKNOWN_KID_RECHECK_SECONDS, self._check_interval))
            record = self._refresh_record(secret_id)
        return self._refresh_secret(record) if record is not None else None

    def jwks(self) -> dict[str, Any]:
        """RFC 7517 JWK Set of every published public key; HMAC secrets never appear."""
        self._maybe_reload(self._check_interval)
        return {
            "keys": [dict(key.public_jwk) for _, key in self._loaded.schedule if key.public_jwk]
        }
