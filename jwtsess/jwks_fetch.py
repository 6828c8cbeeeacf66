"""Getting a JWK Set's bytes: the HTTP and file transports behind ``JWKSKeySource``.

A fetch answers ``(body, max_age)``: the raw document and how long the source
may keep it per the response's ``Cache-Control`` (None: not said; a file never
says). Every failure is a ``KeyringError`` naming the URL or path, so the key
source can keep its last good set and log one line:

- HTTP: only status 200 with a JSON media type; no redirects; the body is
  refused once larger than ``max_bytes`` (by ``Content-Length`` before
  reading, and while streaming); the whole fetch is bounded by ``timeout``;
- a file: unreadable or larger than ``max_bytes``.

What the document says (which keys, each checked) is ``jwks.parse_jwks``'s job.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from .errors import KeyringError

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger("jwtsess.jwks")

Fetch = Callable[[], Awaitable[tuple[bytes, float | None]]]
Close = Callable[[], Awaitable[None]]
_MAX_AGE: Final = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.I)
_NO_CACHE: Final = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\s*(?:,|$)", re.I)
_JSON_TYPES: Final = ("application/json", "application/jwk-set+json")


def cache_lifetime(cache_control: str | None) -> float | None:
    """Seconds a response may be reused per its Cache-Control (None: not said)."""
    if not cache_control:
        return None
    if _NO_CACHE.search(cache_control):
        return 0.0
    match = _MAX_AGE.search(cache_control)
    return float(match.group(1)) if match else None


def http_fetch(
    url: str, *, timeout: float, max_bytes: int, client: httpx.AsyncClient | None
) -> tuple[Fetch, Close | None]:
    """A fetch of the JWKS at ``url``, and how to close the client it made (None: the caller's).

    :raises ValueError: ``url`` is not an http(s) URL.
    :raises KeyringError: httpx is not installed (the ``jwks`` extra).
    """
    try:
        import httpx
    except ImportError:  # pragma: no cover - the jwks extra is missing
        raise KeyringError(
            "JWKSKeySource.from_url needs httpx: pip install jwtsess[jwks]"
        ) from None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        logger.warning("JWKS fetched over plain http from %s: use https", parts.hostname)
    own = client is None
    http = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def fetch() -> tuple[bytes, float | None]:
        try:
            async with asyncio.timeout(timeout):
                return await _get(http, url, max_bytes)
        except httpx.HTTPError as exc:
            raise KeyringError(f"{url}: {type(exc).__name__}: {exc}") from None
        except TimeoutError:
            raise KeyringError(f"{url}: no complete answer within {timeout:g}s") from None

    return fetch, (http.aclose if own else None)


def file_fetch(path: Path, max_bytes: int) -> Fetch:
    """A fetch that re-reads the JWKS file at ``path``."""

    async def fetch() -> tuple[bytes, float | None]:
        return read_jwks_file(path, max_bytes), None

    return fetch


def read_jwks_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of ``path``.

    :raises KeyringError: unreadable, or larger than ``max_bytes``.
    """
    try:
        with path.open("rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise KeyringError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(raw) > max_bytes:
        raise KeyringError(f"{path}: larger than {max_bytes} bytes")
    return raw


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _get(http: httpx.AsyncClient, url: str, max_bytes: int) -> tuple[bytes, float | None]:
    headers = {"Accept": "application/jwk-set+json, application/json"}
    async with http.stream("GET", url, headers=headers) as response:
        if response.status_code != 200:
            raise KeyringError(f"{url}: HTTP {response.status_code}")
        media = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in _JSON_TYPES and not media.endswith("+json"):
            raise KeyringError(f"{url}: content type {media or 'none'!r}, not JSON")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise KeyringError(f"{url}: body of {declared} bytes; at most {max_bytes}")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise KeyringError(f"{url}: body larger than {max_bytes} bytes")
        return bytes(body), cache_lifetime(response.headers.get("cache-control"))
