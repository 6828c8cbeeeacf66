"""The values sessions are made of: policy, client metadata, session records, token pairs."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from .access import AccessClaims
from .devices import device_label

MAX_USER_AGENT_LENGTH = 256
MAX_IP_LENGTH = 64
#: The prefix of a key binding (a DPoP key's RFC 7638 thumbprint): enforced on every rotation.
KEY_BINDING_PREFIX: Final = "jkt:"
MAX_BINDING_LENGTH: Final = 96


def session_expiry(absolute_expires_ms: int, last_used_ms: int, idle_ttl_ms: int) -> int:
    """When a session ends unless refreshed (ms): the idle lifetime, capped by the absolute one.

    The one rule every store applies (the Lua scripts spell it ``expiry(h)``;
    tests/test_store_model.py holds the two together).
    """
    return min(absolute_expires_ms, last_used_ms + idle_ttl_ms)


def client_fingerprint(user_agent: str | None, client_value: str | None = None) -> str:
    """A bearer client's binding: a hash of its User-Agent and, if it has one, a
    value only that client holds (cookie mode: the CSRF cookie).

    A fingerprint, not a proof: it stops a replay from a different client, not a
    thief who copies every header. docs/architecture.md ("Grace answers") has the
    reasoning and its cost.
    """
    material = f"{user_agent or ''}\x00{client_value or ''}".encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(material).digest()[:12]
    return "fp:" + base64.urlsafe_b64encode(digest).decode("ascii")


def bound_jkt(binding: str) -> str | None:
    """The DPoP key thumbprint a session's binding names, or None for any other binding."""
    return binding[len(KEY_BINDING_PREFIX) :] if binding.startswith(KEY_BINDING_PREFIX) else None


def key_binding(jkt: str) -> str:
    """The binding of a session held by the owner of one key (DPoP, RFC 9449):
    ``jkt`` is the key's RFC 7638 thumbprint. Enforced on every rotation."""
    if not jkt or len(jkt) + len(KEY_BINDING_PREFIX) > MAX_BINDING_LENGTH:
        raise ValueError("jkt must be a non-empty thumbprint")
    return KEY_BINDING_PREFIX + jkt


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionPolicy:
    """How long sessions live and how racing refreshes are treated.

    :param absolute_ttl: a session ends this long after login, whatever happens (30 days).
    :param idle_ttl: a session ends when not refreshed for this long (7 days).
    :param grace: a reuse of the immediate predecessor token less than this many
        seconds after its rotation, by the client that rotated (same binding),
        gets the same successor (two racing tabs, a lost answer retried); 0
        makes every reuse theft.
    :param grace_answers: at most this many grace answers per generation; more
        are refused with ``RateLimited`` (the session lives on).
    :param refresh_limit: refreshes per session per ``refresh_window`` seconds;
        more are refused with ``RateLimited``, after the reuse check.
    :param refresh_window: the rate-limit window in seconds (fixed windows).
    :param address_refresh_limit: refreshes of live sessions per client address
        per window, counted in this process only; None turns it off. Far above
        ``refresh_limit``: behind NAT many users share one address.
    """

    absolute_ttl: int = 30 * 24 * 3600
    idle_ttl: int = 7 * 24 * 3600
    grace: float = 10.0
    grace_answers: int = 3
    refresh_limit: int = 30
    refresh_window: float = 60.0
    address_refresh_limit: int | None = 600

    def __post_init__(self) -> None:
        if self.absolute_ttl <= 0 or self.idle_ttl <= 0:
            raise ValueError("absolute_ttl and idle_ttl must be positive")
        if not 0 <= self.grace <= 300:
            raise ValueError("grace must be between 0 and 300 seconds")
        if not 1 <= self.grace_answers <= 100:
            raise ValueError("grace_answers must be between 1 and 100")
        if self.refresh_limit < 1 or self.refresh_window <= 0:
            raise ValueError("refresh_limit and refresh_window must be positive")
        if self.address_refresh_limit is not None and self.address_refresh_limit < 1:
            raise ValueError("address_refresh_limit must be None or positive")


@dataclass(frozen=True, slots=True)
class ClientMetadata:
    """Who is using a session; kept with it and shown in session listings.

    Values are truncated to bounded lengths so a client cannot grow the store.
    """

    user_agent: str | None = None
    ip: str | None = None

    def bounded(self) -> ClientMetadata:
        return ClientMetadata(
            user_agent=self.user_agent[:MAX_USER_AGENT_LENGTH] if self.user_agent else None,
            ip=self.ip[:MAX_IP_LENGTH] if self.ip else None,
        )


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One session as the store holds it. Times are epoch seconds."""

    sid: str
    user_id: str
    role: str
    extra_claims: Mapping[str, Any]
    generation: int
    created_at: float
    last_used_at: float
    expires_at: float
    absolute_expires_at: float
    user_agent: str | None
    ip: str | None
    #: the binding of the client holding the current generation ("" if none)
    binding: str = ""

    def public(self) -> dict[str, Any]:
        """What a session listing shows its owner (``device``: see :mod:`jwtsess.devices`)."""
        return {
            "session_id": self.sid,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "expires_at": self.expires_at,
            "device": device_label(self.user_agent),
            "user_agent": self.user_agent,
            "ip": self.ip,
        }


@dataclass(frozen=True, slots=True)
class SessionGrant:
    """What the store committed for a login or a refresh: what a token pair is made from.

    ``outcome`` is ``"created"`` (login), ``"rotated"`` (a new generation) or
    ``"grace"`` (a racing reuse of the predecessor got the already-committed
    successor). ``user_not_before_us`` is the user's revocation instant in
    microseconds (0 if none): tokens issued from now on carry an ``iat_us`` at
    or after it.
    """

    outcome: Literal["created", "rotated", "grace"]
    session: SessionInfo
    user_not_before_us: int


#: The earlier name of ``SessionGrant`` (what ``SessionStore.rotate`` returns).
Rotation = SessionGrant


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What login and refresh return."""

    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str
    claims: AccessClaims
    refresh_expires_at: float
    token_type: str = "Bearer"
    #: ``login``, ``rotated`` (a new generation) or ``grace`` (a racing reuse got
    #: the already-committed successor).
    outcome: str = "login"

    def as_json(self) -> dict[str, Any]:
        """The OAuth-style JSON body of a token response."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "session_id": self.session_id,
        }


class SessionStatus:
    """Where an access token and its session stand (``GET /auth/session``)."""

    __slots__ = ("claims", "now", "session")

    def __init__(self, claims: AccessClaims, session: SessionInfo | None, *, now: float) -> None:
        self.claims = claims
        self.session = session
        self.now = now

    def as_json(self) -> dict[str, Any]:
        claims, session, now = self.claims, self.session, self.now
        return {
            "user_id": claims.sub,
            "role": claims.role,
            "session_id": claims.sid,
            "claims": claims.as_dict(),
            "expires_at": claims.exp,
            "remaining": max(0, int(claims.exp - now)),
            "session_expires_at": session.expires_at if session else None,
            "session_remaining": max(0, int(session.expires_at - now)) if session else 0,
        }
