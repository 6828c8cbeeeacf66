"""Key rotation: ``init``, ``rotate``, ``rotate-refresh``, ``prune``, ``list`` and ``jwks``.

Installed as the ``jwtsess-keys`` command and wrapped by
``scripts/rotate_keys.py``. The schedule that makes a rotation safe:

1. ``rotate`` adds a *pending* key whose ``activates_at`` is ``publish_delay``
   seconds away. It is in the JWKS at once, so caches fetch it before any
   token uses it.
2. At ``activates_at`` every process starts signing with it (the state
   follows from the clock; nobody has to run anything); the previous key is
   *retiring* and still verifies.
3. ``prune`` removes a retiring key once every token it signed has expired:
   retired at + ``max_token_ttl`` + ``leeway``.

``rotate-refresh`` and the refresh-secret half of ``prune`` are in
``jwtsess.refresh_secrets``.

Key files are written before the manifest that names them, and removed after
the manifest that no longer names them, so a reader never sees a manifest
naming a missing file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from .clock import Clock, system_clock
from .errors import KeyringError
from .jwk import SUPPORTED_ALGORITHMS, SYMMETRIC_ALGORITHMS, generate_key_material, kid_for
from .keyfiles import (
    DEFAULT_MAX_SESSION_TTL,
    MANIFEST_NAME,
    PENDING,
    REFRESH_SECRET_NAME,
    KeyRecord,
    Manifest,
    RefreshSecretRecord,
    atomic_write,
    directory_lock,
    prune_retired,
    read_manifest,
)
from .keyring import KeyRing
from .refresh_secrets import prune_refresh_secrets, rotate_refresh_secret

audit = logging.getLogger("jwtsess.audit")

DEFAULT_PUBLISH_DELAY = 3600.0
DEFAULT_MAX_TOKEN_TTL = 900.0
DEFAULT_LEEWAY = 60.0


def _new_key(directory: Path, alg: str, now: float, activates_at: float) -> KeyRecord:
    material = generate_key_material(alg)
    kid = kid_for(alg, material)
    suffix = "secret" if alg in SYMMETRIC_ALGORITHMS else "pem"
    record = KeyRecord(
        kid=kid, alg=alg, file=f"{kid}.{suffix}", created_at=now, activates_at=activates_at
    )
    atomic_write(directory / record.file, material)
    return record


def init_keys(
    directory: str | os.PathLike[str],
    alg: str,
    *,
    publish_delay: float = DEFAULT_PUBLISH_DELAY,
    max_token_ttl: float = DEFAULT_MAX_TOKEN_TTL,
    leeway: float = DEFAULT_LEEWAY,
    max_session_ttl: float = DEFAULT_MAX_SESSION_TTL,
    clock: Clock = system_clock,
) -> KeyRecord:
    """Create the first key (active at once) and refresh-token secret 0.

    ``max_session_ttl`` is the longest absolute session lifetime the apps use
    (``SessionPolicy.absolute_ttl``); ``prune`` keeps a retired refresh secret
    that long.
    """
    if alg not in SUPPORTED_ALGORITHMS:
        raise KeyringError(f"unsupported algorithm {alg!r}; choose one of {SUPPORTED_ALGORITHMS}")
    path = Path(directory)
    with directory_lock(path):
        if (path / MANIFEST_NAME).exists():
            raise KeyringError(f"{path / MANIFEST_NAME}: already exists; use 'rotate'")
        now = clock()
        record = _new_key(path, alg, now, activates_at=now)
        if not (path / REFRESH_SECRET_NAME).exists():
            atomic_write(path / REFRESH_SECRET_NAME, secrets.token_bytes(32))
        manifest = Manifest(
            keys=(record,),
            publish_delay=publish_delay,
            max_token_ttl=max_token_ttl,
            leeway=leeway,
            refresh_secrets=(RefreshSecretRecord(0, REFRESH_SECRET_NAME, now),),
            max_session_ttl=max_session_ttl,
        )
        atomic_write(path / MANIFEST_NAME, manifest.to_json())
    audit.info(
        "key_created kid=%s alg=%s",
        record.kid,
        alg,
        extra={"event": "key_created", "kid": record.kid, "alg": alg},
    )
    return record


def rotate_keys(
    directory: str | os.PathLike[str],
    *,
    alg: str | None = None,
    immediate: bool = False,
    clock: Clock = system_clock,
) -> KeyRecord:
    """Add the next key, pending for ``publish_delay`` (or active now if ``immediate``).

    ``immediate`` is for a compromised key: verifiers sharing ``keys/`` pick the
    new key up on its first token, but third parties caching the JWKS may not
    know it for up to their cache lifetime.

    :raises KeyringError: if a key is still pending (rotate again after it activates).
    """
    path = Path(directory)
    with directory_lock(path):
        manifest, _ = read_manifest(path)
        now = clock()
        pending = [k for k in manifest.keys if manifest.state_of(k, now) == PENDING]
        if pending and not immediate:
            when = _iso(pending[0].activates_at)
            raise KeyringError(
                f"key {pending[0].kid} is still pending until {when}; "
                "rotate again once it is active (or pass --immediate)"
            )
        current = manifest.active_at(now) or manifest.keys[-1]
        new_alg = alg or current.alg
        if new_alg not in SUPPORTED_ALGORITHMS:
            raise KeyringError(f"unsupported algorithm {new_alg!r}")
        if immediate:
            # Pending keys were never used: drop them, or they would activate
            # after, and so replace, the emergency key.
            dropped = [k for k in manifest.keys if k.activates_at > now]
            manifest = replace(manifest, keys=tuple(k for k in manifest.keys if k not in dropped))
            start = now
        else:
            dropped = []
            start = now + manifest.publish_delay
        # No two keys may share an activation instant.
        start = max(start, manifest.keys[-1].activates_at + 1e-3)
        record = _new_key(path, new_alg, now, activates_at=start)
        atomic_write(
            path / MANIFEST_NAME, replace(manifest, keys=(*manifest.keys, record)).to_json()
        )
        for old in dropped:
            (path / old.file).unlink(missing_ok=True)
    audit.info(
        "key_rotated kid=%s alg=%s activates_at=%s",
        record.kid,
        new_alg,
        _iso(start),
        extra={"event": "key_rotated", "kid": record.kid, "alg": new_alg, "activates_at": start},
    )
    return record


def prune_keys(directory: str | os.PathLike[str], *, clock: Clock = system_clock) -> list[str]:
    """Remove retiring keys whose every token has expired. Returns the removed kids."""
    gone = prune_retired(Path(directory), "keys", clock)
    for record in gone:
        audit.info(
            "key_pruned kid=%s", record.kid, extra={"event": "key_pruned", "kid": record.kid}
        )
    return [r.kid for r in gone]


def ensure_keys(
    directory: str | os.PathLike[str], alg: str, *, max_token_ttl: float = DEFAULT_MAX_TOKEN_TTL
) -> bool:
    """Create a keyring if there is none (dev convenience). Returns True if created."""
    if (Path(directory) / MANIFEST_NAME).exists():
        return False
    init_keys(directory, alg, max_token_ttl=max_token_ttl)
    return True


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def list_table(directory: str | os.PathLike[str], *, clock: Clock = system_clock) -> str:
    """A readable table of the keys: kid, alg, state and schedule."""
    manifest, _ = read_manifest(Path(directory))
    now = clock()
    rows = [("KID", "ALG", "STATE", "ACTIVATES", "RETIRED", "PRUNABLE AFTER")]
    for record in manifest.keys:
        retired = manifest.retired_at(record)
        prunable = manifest.prunable_after(record)
        state = manifest.state_of(record, now)
        rows.append(
            (
                record.kid,
                record.alg,
                state,
                _iso(record.activates_at),
                _iso(retired) if retired is not None and state != "active" else "-",
                _iso(prunable) if prunable is not None and state != "active" else "-",
            )
        )
    secrets_rows = [("REFRESH SECRET", "STATE", "RETIRED", "PRUNABLE AFTER")]
    for secret in manifest.refresh_secrets:
        retired_at = manifest.refresh_secret_retired_at(secret)
        prunable = manifest.prunable_after(secret)
        if retired_at is None or prunable is None:
            secrets_rows.append((str(secret.id), "current", "-", "-"))
        else:
            secrets_rows.append((str(secret.id), "retired", _iso(retired_at), _iso(prunable)))
    return _table(rows) + "\n\n" + _table(secrets_rows)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


class _ShowDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to an option's help, except for flags and unset options."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def main(argv: Sequence[str] | None = None) -> int:
    # Every subcommand's --help shows its defaults: each option has a help text,
    # and the formatter appends the default to it.
    helpful = _ShowDefaults
    parser = argparse.ArgumentParser(
        prog="jwtsess-keys",
        description="Manage the jwtsess key directory.",
        formatter_class=helpful,
    )
    parser.add_argument(
        "--dir",
        default=os.environ.get("JWTSESS_KEYS_DIR", "keys"),
        help="key directory; $JWTSESS_KEYS_DIR when set",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_init = sub.add_parser(
        "init", help="create the first key and the refresh secret", formatter_class=helpful
    )
    p_init.add_argument(
        "--alg", choices=SUPPORTED_ALGORITHMS, default="RS256", help="algorithm of the first key"
    )
    p_init.add_argument(
        "--publish-delay",
        type=float,
        default=DEFAULT_PUBLISH_DELAY,
        help="seconds a rotated key is published in the JWKS before it signs",
    )
    p_init.add_argument(
        "--max-token-ttl",
        type=float,
        default=DEFAULT_MAX_TOKEN_TTL,
        help="longest access-token lifetime the apps use (seconds); "
        "a retiring key is kept this long after its last signature",
    )
    p_init.add_argument(
        "--leeway",
        type=float,
        default=DEFAULT_LEEWAY,
        help="extra seconds a retiring key is kept for clock skew before prune removes it "
        "(a key-schedule margin, not TokenSettings.leeway, which the verifier applies "
        "to exp/nbf/iat)",
    )
    p_init.add_argument(
        "--max-session-ttl",
        type=float,
        default=DEFAULT_MAX_SESSION_TTL,
        help="longest absolute session lifetime the apps use (seconds, SessionPolicy."
        "absolute_ttl); a retired refresh secret is kept this long",
    )
    p_rot = sub.add_parser(
        "rotate", help="add the next key (pending for the publish delay)", formatter_class=helpful
    )
    p_rot.add_argument(
        "--alg",
        choices=SUPPORTED_ALGORITHMS,
        default=None,
        help="algorithm of the new key (default: the active key's)",
    )
    p_rot.add_argument(
        "--immediate",
        action="store_true",
        help="activate now (compromised key); see docs/operations.md",
    )
    sub.add_parser(
        "prune",
        help="remove retiring keys and retired refresh secrets nothing can use any more",
        description="Remove retiring keys once retired_at + max_token_ttl + leeway has passed, "
        "and retired refresh secrets once retired_at + max_session_ttl + leeway has passed "
        "(the durations from the manifest, as init set them).",
        formatter_class=helpful,
    )
    sub.add_parser(
        "rotate-refresh",
        help="add the next refresh-token secret (MACs new refresh tokens at once)",
        description="Add refresh-<n>.secret. New refresh tokens are MACed with it; tokens of "
        "the previous secrets keep working until prune removes them, max_session_ttl + "
        "leeway after they were retired. See docs/operations.md.",
        formatter_class=helpful,
    )
    sub.add_parser(
        "list", help="show the keys, the refresh secrets and their states", formatter_class=helpful
    )
    sub.add_parser("jwks", help="print the JWKS document", formatter_class=helpful)
    args = parser.parse_args(argv)
    directory = Path(args.dir)
    try:
        if args.command == "init":
            record = init_keys(
                directory,
                args.alg,
                publish_delay=args.publish_delay,
                max_token_ttl=args.max_token_ttl,
                leeway=args.leeway,
                max_session_ttl=args.max_session_ttl,
            )
            print(f"created {record.alg} key {record.kid} (active) in {directory}")
        elif args.command == "rotate":
            record = rotate_keys(directory, alg=args.alg, immediate=args.immediate)
            print(f"added {record.alg} key {record.kid}, signing from {_iso(record.activates_at)}")
        elif args.command == "rotate-refresh":
            secret = rotate_refresh_secret(directory)
            print(f"added refresh secret {secret.id} ({secret.file}); it MACs new refresh tokens")
        elif args.command == "prune":
            removed = prune_keys(directory)
            removed += [f"refresh secret {n}" for n in prune_refresh_secrets(directory)]
            print("pruned " + (", ".join(removed) if removed else "nothing"))
        elif args.command == "list":
            print(list_table(directory))
        else:
            print(json.dumps(KeyRing(directory).jwks(), indent=2))
    except KeyringError as exc:
        print(f"jwtsess-keys: {exc}", file=sys.stderr)
        return 1
    return 0
