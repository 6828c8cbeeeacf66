"""JWKSKeySource: public verification keys from a JWKS URL or file, for services that only verify.

A resource server needs the issuer's public keys and nothing else: no private
key, no refresh secret. This source holds the last good JWK Set in memory and
answers ``verification_key(kid)`` with one dictionary lookup, so the request
path never touches the network. Keeping the set current is the job of a
background task started in the app's lifespan (``await keys.start()``, or
``async with keys:``), like the revocation mirror:

- it refetches when the set's lifetime ends: the response's ``Cache-Control:
  max-age``, clamped to ``[min_ttl, max_ttl]`` (a file is re-read every ``min_ttl``);
- a ``kid`` it does not know triggers one refetch, single-flight, and at most
  one per ``refetch_interval`` (counted from the last such refetch; short, so an
  immediate rotation at the issuer costs a few ms, not PyJWT's 30 s). The
  request that met the new kid may wait for that refetch, at most
  ``refetch_wait`` seconds (``Verifier.wait_for_key``, called by the middleware);
- a failed fetch (network, HTTP status, not JSON, too large, a bad key) keeps
  the last good set in force; it is logged (once per kind of failure) and
  counted in ``fetch_failures``, and retried with a backoff;
- a key that leaves the set stops verifying after the next successful fetch
  (the Verifier drops its cache when ``generation`` changes).

Bytes are got by ``jwks_fetch`` (HTTP or file, bounded, ``Cache-Control``) and
read by ``jwks.parse_jwks``: asymmetric keys only, each one checked; an HS256
or ``oct`` key is a configuration error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from .errors import KeyringError
from .jwks import MAX_JWKS_BYTES, PublicKey, parse_jwks
from .jwks_fetch import Fetch, file_fetch, http_fetch, read_jwks_file
from .jwks_fetch import cache_lifetime as cache_lifetime

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger("jwtsess.jwks")


class JWKSKeySource:
    """Verification keys from a JWK Set, kept current in the background.

    Build it with ``from_url`` or ``from_file``. Every option is keyword-only:

    :param min_ttl: the shortest time a fetched set is kept before refetching,
        whatever ``max-age`` says (and the period at which a file is re-read).
    :param max_ttl: the longest; also used when the response gives no ``max-age``.
    :param refetch_interval: at most one unknown-kid refetch per this many seconds.
    :param refetch_wait: the longest a request waits for an unknown-kid refetch.
    :param monotonic: the clock of every interval above.
    :param sleep: how the background tasks wait (tests inject one with ``monotonic``).
    """

    def __init__(
        self,
        fetch: Fetch,
        *,
        source: str,
        min_ttl: float = 30.0,
        max_ttl: float = 300.0,
        refetch_interval: float = 0.5,
        refetch_wait: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        if not 0 < min_ttl <= max_ttl:
            raise ValueError("min_ttl must be positive and at most max_ttl")
        if refetch_interval <= 0 or refetch_wait <= 0:
            raise ValueError("refetch_interval and refetch_wait must be positive")
        self._fetch = fetch
        self._source = source
        self._min_ttl = min_ttl
        self._max_ttl = max_ttl
        self._refetch_interval = refetch_interval
        self._refetch_wait = refetch_wait
        self._monotonic = monotonic
        self._sleep = sleep
        self._close = close
        self._keys: Mapping[str, PublicKey] | None = None
        self._generation = 0
        self._next_refresh = float("-inf")
        self._retry_delay = 1.0
        self._last_forced = float("-inf")
        self._fetches_started = 0  # fetches are serialised by _lock
        self._lock = asyncio.Lock()
        self._forced: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._fetches = 0
        self._fetch_failures = 0
        self._last_error: str | None = None
        self._last_success = float("-inf")
        self._never_started_reported = False

    # -- construction -------------------------------------------------------------

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float = 5.0,
        max_bytes: int = MAX_JWKS_BYTES,
        client: httpx.AsyncClient | None = None,
        min_ttl: float = 30.0,
        max_ttl: float = 300.0,
        refetch_interval: float = 0.5,
        refetch_wait: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> JWKSKeySource:
        """Keys from the JWKS at ``url`` (the issuer's ``/.well-known/jwks.json``).

        Nothing is fetched until ``start()``. Redirects are not followed.

        :param timeout: seconds for each fetch (connect, read, whole body).
        :param max_bytes: a larger body is refused before it is read in full.
        :param client: an ``httpx.AsyncClient`` to use (default: one of its own).
        """
        fetch, close = http_fetch(url, timeout=timeout, max_bytes=max_bytes, client=client)
        return cls(
            fetch,
            source=url,
            min_ttl=min_ttl,
            max_ttl=max_ttl,
            refetch_interval=refetch_interval,
            refetch_wait=refetch_wait,
            monotonic=monotonic,
            sleep=sleep,
            close=close,
        )

    @classmethod
    def from_file(
        cls,
        path: str | PathLike[str],
        *,
        max_bytes: int = MAX_JWKS_BYTES,
        min_ttl: float = 30.0,
        refetch_interval: float = 0.5,
        refetch_wait: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> JWKSKeySource:
        """Keys from a JWKS file, read now (so a bad file fails at construction).

        ``start()`` re-reads it every ``min_ttl`` seconds and on an unknown kid.

        :raises KeyringError: the file is unreadable or not a usable JWKS.
        """
        file = Path(path)
        source = cls(
            file_fetch(file, max_bytes),
            source=str(file),
            min_ttl=min_ttl,
            max_ttl=min_ttl,
            refetch_interval=refetch_interval,
            refetch_wait=refetch_wait,
            monotonic=monotonic,
            sleep=sleep,
        )
        source._apply(read_jwks_file(file, max_bytes), None)
        return source

    # -- the per-request side (no I/O) ------------------------------------------

    @property
    def generation(self) -> int:
        """Changes whenever the set of keys changes."""
        return self._generation

    def check(self) -> None:
        """Nothing to do per request: the background task keeps the set current."""

    def verification_key(self, kid: str) -> PublicKey | None:
        """The key named ``kid``, or None (and a refetch is asked for, rate-limited)."""
        keys = self._keys
        if keys is None:
            self._report_never_started()
            return None
        key = keys.get(kid)
        if key is None:
            self._request_refetch()
        return key

    async def wait_for_key(self, kid: str) -> bool:
        """Wait (at most ``refetch_wait``) for an unknown-kid refetch; whether ``kid`` is known."""
        keys = self._keys
        if keys is None:
            return False
        if kid in keys:
            return True
        task = self._request_refetch()
        if task is None:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), self._refetch_wait)
        keys = self._keys
        return keys is not None and kid in keys

    def _report_never_started(self) -> None:
        if not self._never_started_reported:
            self._never_started_reported = True
            logger.error(
                "the JWKS key source for %s was never started: every token is refused. "
                "Call `await keys.start()` in the app's lifespan (or use `async with keys:`)",
                self._source,
            )

    def _request_refetch(self) -> asyncio.Task[None] | None:
        """The pending unknown-kid refetch, scheduling one if none is (no I/O here)."""
        if self._forced is not None:
            return self._forced
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None  # no event loop: the background task will catch up
        delay = self._last_forced + self._refetch_interval - self._monotonic()
        self._forced = loop.create_task(self._forced_refetch(delay), name="jwtsess-jwks-refetch")
        return self._forced

    async def _forced_refetch(self, delay: float) -> None:
        try:
            if delay > 0:
                await self._sleep(delay)
            self._last_forced = self._monotonic()
            await self._refresh_logged(self._fetches_started)
        finally:
            self._forced = None

    # -- status -------------------------------------------------------------------------

    @property
    def kids(self) -> list[str]:
        """The kids of the key set in force, sorted."""
        return sorted(self._keys or ())

    @property
    def fetches(self) -> int:
        """Successful fetches so far."""
        return self._fetches

    @property
    def fetch_failures(self) -> int:
        """Failed fetches so far (the last good set stayed in force each time)."""
        return self._fetch_failures

    @property
    def last_error(self) -> str | None:
        """Why the latest fetch failed, or None if it succeeded."""
        return self._last_error

    def expires_in(self) -> float:
        """Seconds until the background task fetches again (after a failure: the retry)."""
        return self._next_refresh - self._monotonic()

    def age(self) -> float:
        """Seconds since the last successful fetch (``inf`` if none)."""
        return max(0.0, self._monotonic() - self._last_success)

    # -- fetching -----------------------------------------------------------------------

    def _apply(self, raw: bytes, max_age: float | None) -> None:
        keys = parse_jwks(raw, source=self._source)
        now = self._monotonic()
        ttl = self._max_ttl if max_age is None else max_age
        self._next_refresh = now + min(max(ttl, self._min_ttl), self._max_ttl)
        self._retry_delay = 1.0
        self._fetches += 1
        self._last_success = now
        if self._last_error is not None:
            logger.info("JWKS %s fetched again; kids=%s", self._source, sorted(keys))
        self._last_error = None
        if self._keys is None or dict(self._keys) != keys:
            if self._keys is not None:
                logger.info("JWKS %s changed: kids=%s", self._source, sorted(keys))
            self._keys = keys
            self._generation += 1

    async def refresh(self) -> None:
        """Fetch the set now (single-flight with the background task).

        :raises KeyringError: the fetch failed; the last good set stays in force.
        """
        await self._refresh(self._fetches_started)

    async def _refresh(self, started_before: int) -> None:
        """Fetch, unless a fetch that began after the caller asked has finished meanwhile."""
        async with self._lock:
            if self._fetches_started > started_before:
                return  # its answer is at least as new as the one the caller wants
            self._fetches_started += 1
            try:
                raw, max_age = await self._fetch()
                self._apply(raw, max_age)
            except KeyringError as exc:
                self._fail(str(exc))
                raise

    async def _refresh_logged(self, started_before: int) -> None:
        with contextlib.suppress(KeyringError):
            await self._refresh(started_before)

    def _fail(self, message: str) -> None:
        self._fetch_failures += 1
        now = self._monotonic()
        self._next_refresh = now + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, self._min_ttl)
        if message != self._last_error:
            kept = f"keeping kids={self.kids}" if self._keys is not None else "no keys yet"
            logger.warning("JWKS fetch failed (%s): %s", kept, message)
        self._last_error = message

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Fetch the set (if not loaded yet), then keep it current in a background task.

        :raises KeyringError: the first fetch failed (fail fast at start-up).
        """
        if self._keys is None:
            await self.refresh()
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="jwtsess-jwks-refresher")

    async def stop(self) -> None:
        """Stop the background task and close the HTTP client this source made."""
        for task in (self._task, self._forced):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._forced = None
        if self._close is not None:
            await self._close()
            self._close = None

    async def __aenter__(self) -> JWKSKeySource:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _follow(self) -> None:
        while True:
            await self._sleep(max(0.0, self._next_refresh - self._monotonic()))
            await self._refresh_logged(self._fetches_started)
