"""The parts of a DPoP check that are about the request, not the proof's signature:
``htu`` normalisation (RFC 9449 section 4.3, RFC 3986 sections 6.2.2-6.2.3),
the access-token hash ``ath``, and the bounded per-process replay cache.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Final
from urllib.parse import urlsplit

from .jwk import b64url

_MAX_HTU_LENGTH: Final = 2048
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_WEB_SCHEMES: Final = {"ws": "http", "wss": "https", "http": "http", "https": "https"}
_PERCENT: Final = re.compile(r"%[0-9a-fA-F]{2}")
_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def token_hash(access_token: str) -> str:
    """The ``ath`` of an access token: base64url(SHA-256(ASCII token))."""
    return b64url(hashlib.sha256(access_token.encode("ascii", "replace")).digest())


def _percent_fix(match: re.Match[str]) -> str:
    char = chr(int(match.group(0)[1:], 16))
    return char if char in _UNRESERVED else match.group(0).upper()


def normalize_htu(uri: str) -> str:
    """``uri`` as RFC 9449 section 4.3 compares it (RFC 3986 sections 6.2.2, 6.2.3).

    Scheme and host lowercase, default port removed, empty path as ``/``,
    percent-encoding normalised, query and fragment dropped; ``ws``/``wss``
    count as ``http``/``https`` (a websocket handshake is an HTTP GET).

    :raises ValueError: not an absolute http(s) URI with a host, or has userinfo.
    """
    if len(uri) > _MAX_HTU_LENGTH:
        raise ValueError("URI too long")
    parts = urlsplit(uri)
    scheme = _WEB_SCHEMES.get(parts.scheme.lower())
    host = parts.hostname
    if scheme is None or not host or "@" in parts.netloc:
        raise ValueError("not an absolute http(s) URI")
    port = parts.port  # ValueError for a bad one
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    path = _PERCENT.sub(_percent_fix, parts.path) or "/"
    return f"{scheme}://{host}{path}"


class ReplayCache:
    """The ``jti``s (per key) of proofs seen while they could still be accepted.

    Bounded: when full, the oldest entry is dropped and proofs issued at or
    before its ``iat`` are refused from then on (a replay of the dropped proof
    can then never be accepted; under such load, clients whose clocks lag see
    ``invalid_dpop_proof`` and retry with a fresh proof).
    """

    def __init__(self, size: int, window: float) -> None:
        self._seen: dict[str, float] = {}  # key -> iat, insertion order
        self._size = size
        self._window = window
        self._floor = -math.inf

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, key: str, iat: float, now: float) -> bool:
        """Record ``key``; False if it was seen already or cannot be told apart."""
        seen = self._seen
        horizon = now - self._window
        while seen:
            first = next(iter(seen))
            if seen[first] > horizon:
                break
            del seen[first]
        if iat <= self._floor or key in seen:
            return False
        if len(seen) >= self._size:
            oldest = next(iter(seen))
            self._floor = max(self._floor, seen.pop(oldest))
        seen[key] = iat
        return True
