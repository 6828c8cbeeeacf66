"""Audit events: structured records on the ``jwtsess.audit`` logger and an optional async hook.

An event never carries a token, a refresh token or a key; only who, which
session, from where, and what happened.

The log line's message says it all on its own, so any log format shows it:
``login user=alice session=Ab3x... ip=198.51.100.7``. The same fields, and
more (``at``, ``user_agent``, ``details``), are on the record as the
``audit`` attribute (a dict) for structured handlers. Values that are not
plain words are JSON-quoted, so a user id or an address cannot forge a second
line or a field (docs/logging.md).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

logger = logging.getLogger("jwtsess.audit")

AuditEventName = Literal[
    "login",
    "refresh",
    "refresh_grace",
    "reuse_detected",
    "logout",
    "logout_others",
    "logout_all",
    "session_revoked",
    "reissue",
    "token_revoked",
    "key_rotated",
]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit record: what happened, to whom, from where. Never a token."""

    event: AuditEventName
    at: float
    user_id: str | None = None
    session_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "at": self.at,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "ip": self.ip,
            "user_agent": self.user_agent,
            "details": dict(self.details),
        }

    def message(self) -> str:
        """The log line: event, then ``user=``, ``session=``, ``ip=`` and any details."""
        fields = [
            ("user", self.user_id),
            ("session", self.session_id),
            ("ip", self.ip),
            *self.details.items(),
        ]
        return " ".join([self.event, *(f"{name}={log_value(v)}" for name, v in fields)])


_PLAIN = re.compile(r"[A-Za-z0-9_.:@+/-]{1,200}")


def log_value(value: object) -> str:
    """A value as one log token: plain words as they are, ``-`` for none, anything
    else JSON-quoted (spaces, quotes, control and non-ASCII characters escaped)."""
    if value is None:
        return "-"
    text = value if isinstance(value, str) else str(value)
    if _PLAIN.fullmatch(text):
        return text
    return json.dumps(text)


AuditHook = Callable[[AuditEvent], Awaitable[None]]


class Auditor:
    """Emits audit events: a log record always, and the hook if one is set.

    A failing hook is logged and swallowed: audit delivery must never turn a
    logout into an error or a refresh into a lost token.
    """

    def __init__(self, hook: AuditHook | None = None) -> None:
        self.hook = hook

    async def emit(self, event: AuditEvent) -> None:
        level = logging.WARNING if event.event == "reuse_detected" else logging.INFO
        if logger.isEnabledFor(level):  # the record costs ~50 us: build it only if kept
            logger.log(level, event.message(), extra={"audit": event.as_dict()})
        if self.hook is not None:
            try:
                await self.hook(event)
            except Exception:  # any hook failure; the auth decision stands
                logger.exception("audit hook failed for %s", event.event)
