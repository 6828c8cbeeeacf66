"""The Redis protocol written down once: key names, the session reply, the answer shape.

Key names (``P`` the prefix, ``T`` the 8-character user tag that starts every
sid, so all keys of one user share a cluster slot)::

    P:{T}<rest of sid>   one session          RedisKeys.session(sid)   Lua k_session(sid)
    P:{T}:u:<user>       the user's sessions  RedisKeys.index(...)     Lua k_index(tag, user)
    P:{T}:n:<user>       the user not-before  RedisKeys.not_before()   Lua k_nbf(tag, user)
    P:feed               the revocation feed  RedisKeys.feed
    P:rl:<bucket>:<n>    a rate-limit bucket  RedisKeys.bucket(...)
    P:once:<key>         a one-time value     RedisKeys.once(key)

Python builds the keys a script declares (``KEYS``); the scripts build the keys
they derive from stored values with the Lua twins below, which take the prefix
from ``ARGV[1]``. tests/test_redis_store.py checks the two spell every key alike.

Every state script answers ``{status, pending revocations, payload...}``
(``Answer``): the status word, the revocations a cluster must still append to
the feed (4 values each; always empty on one server, where the script appended
them itself), then the payload. Session payloads follow ``SESSION_FIELDS``,
from which the Lua ``reply`` function is generated, so the field order is
written once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..refresh_token import session_tag
from ..sessions import SessionInfo
from .base import Revocation, RevocationKind


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Every Redis key name RedisStore uses, built in one place."""

    prefix: str

    @property
    def feed(self) -> str:
        return f"{self.prefix}:feed"

    def session(self, sid: str) -> str:
        # The sid's tag wrapped as the cluster hash tag: "P:{T}.<random>".
        return f"{self.prefix}:{{{session_tag(sid)}}}{sid[8:]}"

    def index(self, tag: str, user_id: str) -> str:
        return f"{self.prefix}:{{{tag}}}:u:{user_id}"

    def not_before(self, tag: str, user_id: str) -> str:
        return f"{self.prefix}:{{{tag}}}:n:{user_id}"

    def bucket(self, bucket: str, window_index: int) -> str:
        return f"{self.prefix}:rl:{bucket}:{window_index}"

    def once(self, key: str) -> str:
        return f"{self.prefix}:once:{key}"


#: The Lua twins of ``RedisKeys`` (``P`` is the prefix from ARGV[1]).
LUA_KEYS: Final = r"""
local P = ARGV[1]
local function k_session(sid)
  return P .. ':{' .. string.sub(sid, 1, 8) .. '}' .. string.sub(sid, 9)
end
local function k_index(tag, user) return P .. ':{' .. tag .. '}:u:' .. user end
local function k_nbf(tag, user) return P .. ':{' .. tag .. '}:n:' .. user end
"""


def _text(value: Any) -> str | None:
    return str(value) if value else None


def _seconds(value: Any) -> float:
    return int(value) / 1000


#: (field, Lua expression over ``sid`` and the packed session ``h``, parser).
#: The one list behind the Lua ``reply`` and ``parse_session``.
SESSION_FIELDS: Final[tuple[tuple[str, str, Callable[[Any], Any]], ...]] = (
    ("sid", "sid", str),
    ("user_id", "h[1]", str),
    ("role", "h[2]", str),
    ("extra_claims", "h[3]", json.loads),
    ("generation", "n(h[4])", int),
    ("created_at", "n(h[6])", _seconds),
    ("last_used_at", "n(h[7])", _seconds),
    ("expires_at", "n(expiry(h))", _seconds),
    ("absolute_expires_at", "n(h[8])", _seconds),
    ("user_agent", "h[10]", _text),
    ("ip", "h[11]", _text),
    ("binding", "h[12]", str),
)
SESSION_WIDTH: Final = len(SESSION_FIELDS)

LUA_REPLY: Final = (
    "local function reply(sid, h)\n"
    "  local function n(x) return string.format('%d', x) end\n"
    "  return {" + ", ".join(expr for _, expr, _ in SESSION_FIELDS) + "}\n"
    "end\n"
)


def parse_session(values: Sequence[Any]) -> SessionInfo:
    """A ``SessionInfo`` from one ``reply`` group of ``SESSION_WIDTH`` values."""
    if len(values) != SESSION_WIDTH:
        raise ValueError(f"a session reply has {SESSION_WIDTH} fields, got {len(values)}")
    pairs = zip(SESSION_FIELDS, values, strict=True)
    return SessionInfo(**{name: parse(value) for (name, _, parse), value in pairs})


def parse_sessions(flat: Sequence[Any]) -> list[SessionInfo]:
    return [parse_session(flat[i : i + SESSION_WIDTH]) for i in range(0, len(flat), SESSION_WIDTH)]


@dataclass(frozen=True, slots=True)
class Answer:
    """A state script's answer: status, revocations still to append, payload."""

    status: str
    pending: Sequence[str]
    payload: Sequence[Any]

    @classmethod
    def parse(cls, reply: Sequence[Any]) -> Answer:
        return cls(str(reply[0]), list(reply[1]), list(reply[2:]))


_KINDS: Final[dict[str, RevocationKind]] = {"jti": "jti", "sid": "sid", "user": "user"}
#: jwtsess 0.1.0 wrote ``n`` in whole seconds; any value below this is one of those.
_SECONDS_BELOW: Final = 10**12


def parse_revocation(fields: Mapping[str, str] | Sequence[str]) -> Revocation | None:
    """A feed entry's fields (a mapping, or a flat list from a script), or None if unknown."""
    if not isinstance(fields, Mapping):
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    kind = _KINDS.get(fields.get("k", ""))
    if kind is None:
        return None
    not_before = int(fields.get("n") or 0)
    if 0 < not_before < _SECONDS_BELOW:  # written by 0.1.0 during a rolling upgrade
        not_before *= 1_000_000
    return Revocation(kind, fields["s"], int(fields["u"]) / 1000, not_before)
