"""Refresh-secret rotation: ``jwtsess-keys rotate-refresh`` and the refresh half of ``prune``.

The schedule that makes a rotation log nobody out:

1. ``rotate-refresh`` writes ``refresh-<n>.secret`` (n = the newest id + 1),
   then lists it in the manifest. Every process picks the manifest up within
   its ``check_interval`` (or at once, rate-limited, when a refresh token names
   the new id), and from then on MACs new refresh tokens with secret n. There
   is no pending period: a process that has not seen the new secret yet still
   MACs with the previous one, which stays valid.
2. The previous secret is *retired*: it still verifies the tokens it MACed.
   A session refreshed during the overlap gets a token under the new secret.
3. ``prune`` removes a retired secret once ``retired_at + max_session_ttl +
   leeway`` has passed. Every session that could hold a token it MACed was
   opened before ``retired_at`` and so has reached its absolute lifetime: no
   live session can present such a token, and no stale one needs it for reuse
   detection either (its session is gone). The newest secret is never pruned.

Files are written before the manifest that names them and removed after the
manifest that stops naming them, as for signing keys.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import replace
from pathlib import Path

from .clock import Clock, system_clock
from .errors import KeyringError
from .keyfiles import (
    MANIFEST_NAME,
    MAX_REFRESH_SECRET_ID,
    RefreshSecretRecord,
    atomic_write,
    directory_lock,
    prune_retired,
    read_manifest,
    refresh_secret_file,
)

audit = logging.getLogger("jwtsess.audit")


def rotate_refresh_secret(
    directory: str | os.PathLike[str], *, clock: Clock = system_clock
) -> RefreshSecretRecord:
    """Add the next refresh secret; it MACs new refresh tokens from now on.

    :raises KeyringError: the directory is unusable, or ids are exhausted.
    """
    path = Path(directory)
    with directory_lock(path):
        manifest, _ = read_manifest(path)
        now = clock()
        records = manifest.refresh_secrets
        next_id = records[-1].id + 1 if records else 0
        if next_id > MAX_REFRESH_SECRET_ID:
            raise KeyringError(f"{path / MANIFEST_NAME}: refresh secret ids are exhausted")
        # Never before the current secret's creation (a clock stepped back).
        created_at = max([now, *(r.created_at for r in records)])
        record = RefreshSecretRecord(next_id, refresh_secret_file(next_id), created_at)
        atomic_write(path / record.file, secrets.token_bytes(32))
        updated = replace(manifest, refresh_secrets=(*records, record))
        atomic_write(path / MANIFEST_NAME, updated.to_json())
    audit.info(
        "refresh_secret_rotated secret_id=%s",
        record.id,
        extra={"event": "refresh_secret_rotated", "secret_id": record.id},
    )
    return record


def prune_refresh_secrets(
    directory: str | os.PathLike[str], *, clock: Clock = system_clock
) -> list[int]:
    """Remove retired refresh secrets no live session can use. Returns their ids."""
    gone = prune_retired(Path(directory), "refresh_secrets", clock)
    for record in gone:
        audit.info(
            "refresh_secret_pruned secret_id=%s",
            record.id,
            extra={"event": "refresh_secret_pruned", "secret_id": record.id},
        )
    return [r.id for r in gone]
