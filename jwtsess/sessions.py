"""The values sessions are made of: policy, client metadata, session records, token pairs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .access import AccessClaims
from .devices import device_label

MAX_USER_AGENT_LENGTH = 256
MAX_IP_LENGTH = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionPolicy:
    """How long sessions live and how racing refreshes are treated.

    :param absolute_ttl: a session ends this long after login, whatever happens (30 days).
    :param idle_ttl: a session ends when not refreshed for this long (7 days).
    :param grace: a reuse of the immediate predecessor token less than this many
        seconds after its rotation gets the same successor (two racing tabs); 0
        makes every reuse theft.
    """

    absolute_ttl: int = 30 * 24 * 3600
    idle_ttl: int = 7 * 24 * 3600
    grace: float = 10.0

    def __post_init__(self) -> None:
        if self.absolute_ttl <= 0 or self.idle_ttl <= 0:
            raise ValueError("absolute_ttl and idle_ttl must be positive")
        if not 0 <= self.grace <= 300:
            raise ValueError("grace must be between 0 and 300 seconds")


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
class Rotation:
    """A successful refresh as the store committed it.

    ``outcome`` is ``"rotated"`` for a new generation or ``"grace"`` when a
    racing reuse of the predecessor got the already-committed successor.
    ``user_not_before`` is the user's revocation instant (0 if none): tokens
    issued from now on must carry ``iat >= user_not_before``.
    """

    outcome: Literal["rotated", "grace"]
    session: SessionInfo
    user_not_before: int


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
