"""Refresh tokens and session ids.

A refresh token is not a JWT and can never pass for one::

    rt1.<sid>.<generation>.<mac>                 MACed with refresh secret 0
    rt1.<sid>.<generation>.<secret id>.<mac>     MACed with refresh secret 1, 2, ...

``mac`` is HMAC-SHA256 under the named refresh secret (``keys/refresh.secret``
or ``keys/refresh-<id>.secret``, secrets no access token is ever signed with)
over everything before it, so garbage and forgeries are rejected before any
store call. Secret 0 is never named, so each token has one spelling, and a
token of an unknown secret id is ``token_invalid`` like a bad MAC. The store
keeps each session's current generation; the check-and-rotate is one atomic
store step.

A session id starts with an 8-character tag derived from the user id. Redis
keys use it as their cluster hash tag, so every key of a user's sessions lives
in one slot and each script touches one slot, knowing only the sid.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Final, Protocol

from .errors import TokenInvalid, TokenMalformed
from .jwk import b64url

REFRESH_TOKEN_PREFIX: Final = "rt1."
MAX_REFRESH_TOKEN_LENGTH: Final = 128
_SID_PATTERN: Final = r"[A-Za-z0-9_-]{8}\.[A-Za-z0-9_-]{22}"
_TOKEN_RE: Final = re.compile(
    rf"rt1\.({_SID_PATTERN})\.(0|[1-9][0-9]{{0,15}})\.(?:([1-9][0-9]{{0,8}})\.)?"
    r"([A-Za-z0-9_-]{43})"
)
SID_RE: Final = re.compile(_SID_PATTERN)


def user_tag(user_id: str) -> str:
    """The 8-character hash tag shared by every session of ``user_id``."""
    return b64url(hashlib.sha256(user_id.encode("utf-8")).digest()[:6])


def new_session_id(user_id: str) -> str:
    """``<user tag>.<128 random bits>``."""
    return f"{user_tag(user_id)}.{secrets.token_urlsafe(16)}"


def session_tag(sid: str) -> str:
    return sid[:8]


def is_session_id(value: object) -> bool:
    return isinstance(value, str) and SID_RE.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class RefreshTokenRef:
    """What a refresh token names: a session and a generation within it."""

    sid: str
    gen: int


@dataclass(frozen=True, slots=True)
class RefreshSecret:
    """One refresh-token MAC secret and its id (0 is ``refresh.secret``)."""

    id: int
    secret: bytes = field(repr=False)


class RefreshSecretSource(Protocol):
    """Where ``decode_refresh_token`` finds the secret a token names (a ``KeyRing``)."""

    def refresh_secret_by_id(self, secret_id: int) -> bytes | None:
        """The secret ``secret_id``, or None if there is no such secret."""
        ...


def _lookup(secrets: RefreshSecretSource | RefreshSecret | bytes, secret_id: int) -> bytes | None:
    if isinstance(secrets, bytes):
        return secrets if secret_id == 0 else None
    if isinstance(secrets, RefreshSecret):
        return secrets.secret if secret_id == secrets.id else None
    return secrets.refresh_secret_by_id(secret_id)


def _mac(secret: bytes, body: str) -> str:
    return b64url(hmac.new(secret, body.encode("ascii"), hashlib.sha256).digest())


def encode_refresh_token(secret: RefreshSecret | bytes, sid: str, gen: int) -> str:
    """The refresh token of ``(sid, gen)`` under ``secret`` (bytes: secret 0)."""
    if isinstance(secret, bytes):
        secret = RefreshSecret(0, secret)
    body = f"{REFRESH_TOKEN_PREFIX}{sid}.{gen}" + (f".{secret.id}" if secret.id else "")
    return f"{body}.{_mac(secret.secret, body)}"


def decode_refresh_token(
    secrets: RefreshSecretSource | RefreshSecret | bytes, token: object
) -> RefreshTokenRef:
    """Check shape and MAC; no store is consulted.

    :param secrets: a ``KeyRing`` (every secret it lists), one ``RefreshSecret``,
        or the bytes of secret 0.
    :raises TokenMalformed: not shaped like a refresh token.
    :raises TokenInvalid: the MAC does not verify, or names an unknown secret.
    """
    if not isinstance(token, str) or len(token) > MAX_REFRESH_TOKEN_LENGTH:
        raise TokenMalformed("The refresh token is malformed.")
    match = _TOKEN_RE.fullmatch(token)
    if match is None:
        raise TokenMalformed("The refresh token is malformed.")
    sid, gen, secret_id, mac = match.groups()
    secret = _lookup(secrets, int(secret_id) if secret_id else 0)
    body = token[: -len(mac) - 1]
    if secret is None or not hmac.compare_digest(mac, _mac(secret, body)):
        raise TokenInvalid("The refresh token is invalid.")
    return RefreshTokenRef(sid=sid, gen=int(gen))
