"""``JWTSessAuth``: the ``httpx.Auth`` that attaches, refreshes and retries."""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
import weakref
from collections.abc import AsyncGenerator, Generator, Mapping
from typing import Any

import httpx

from ..clock import Clock, system_clock
from ..dpop_jwk import DPoPKey
from .failures import MAX_DETAIL, RefreshFailed, refusal
from .tokens import OnRefresh, TokenState

__all__ = ["JWTSessAuth"]


class JWTSessAuth(httpx.Auth):
    """``auth=`` for ``httpx.Client`` and ``httpx.AsyncClient``: bearer tokens that refresh.

    Use one instance per session, with clients of one event loop (or threads);
    give it only to clients that talk to your API, since every request carries
    the access token. Request bodies are read into memory so a request can be
    retried after a 401.

    :param access_token: the current access token.
    :param refresh_token: the current refresh token.
    :param expires_at: when the access token expires, on ``clock``; None means
        unknown (then only a 401 triggers a refresh).
    :param refresh_url: the refresh endpoint; a relative URL is resolved
        against each request's URL, so give an absolute path or a full URL.
    :param on_refresh: called with the new ``TokenState`` after each refresh,
        under the refresh lock (so calls come in rotation order); persist the
        rotated refresh token here. It may be ``async`` with an ``AsyncClient``.
        Its exceptions propagate (the new tokens are already in use).
    :param refresh_margin: refresh before a request when the access token
        expires within this many seconds (at most half its lifetime, so a short
        lifetime does not cause a refresh on every request).
    :param clock: epoch seconds; injectable for tests.
    :param dpop_key: the key a DPoP session is bound to (RFC 9449). With it,
        every request of a ``DPoP`` session carries ``Authorization: DPoP`` and a
        fresh proof, and so does each refresh; a ``use_dpop_nonce`` challenge is
        answered once with a new proof carrying the server's nonce. Keep one key
        per session, for the session's whole life.
    :param oauth: refresh with the standard RFC 6749 §6 request (a form body,
        ``grant_type=refresh_token``) instead of the JSON one; give it the
        token endpoint as ``refresh_url`` (``/auth/token``, or any OAuth 2.0
        server's). Same rotation and theft detection on the server.
    :param client_id: sent with an ``oauth`` refresh (public clients).
    :raises ValueError: empty tokens or a negative or non-finite margin.
    """

    requires_request_body = True
    requires_response_body = True

    def __init__(
        self,
        access_token: str,
        refresh_token: str,
        *,
        expires_at: float | None = None,
        refresh_url: httpx.URL | str = "/auth/refresh",
        on_refresh: OnRefresh | None = None,
        refresh_margin: float = 30.0,
        clock: Clock = system_clock,
        dpop_key: DPoPKey | None = None,
        oauth: bool = False,
        client_id: str | None = None,
    ) -> None:
        if not access_token or not refresh_token:
            raise ValueError("access_token and refresh_token must be non-empty strings")
        if not math.isfinite(refresh_margin) or refresh_margin < 0:
            raise ValueError("refresh_margin must be a finite number of seconds >= 0")
        self.refresh_url = httpx.URL(refresh_url)
        self.on_refresh = on_refresh
        self.refresh_margin = refresh_margin
        self.clock = clock
        self.oauth = oauth
        self.client_id = client_id
        self.dpop_key = dpop_key
        self._nonce: str | None = None  # the server's latest DPoP-Nonce
        token_type = "DPoP" if dpop_key is not None else "Bearer"
        self._state: TokenState | None = TokenState(
            access_token, refresh_token, expires_at, token_type=token_type
        )
        self._failure: RefreshFailed | None = None  # the last attempt's, if it failed
        self._attempts = 0  # refresh attempts finished, to share their outcome with waiters
        self._sync_lock = threading.Lock()
        self._async_lock: asyncio.Lock | None = None
        self._async_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None

    @classmethod
    def from_token_response(
        cls,
        body: Mapping[str, Any],
        *,
        refresh_url: httpx.URL | str = "/auth/refresh",
        on_refresh: OnRefresh | None = None,
        refresh_margin: float = 30.0,
        clock: Clock = system_clock,
        dpop_key: DPoPKey | None = None,
        oauth: bool = False,
        client_id: str | None = None,
    ) -> JWTSessAuth:
        """An auth holding the tokens of a login answer (``POST /auth/login``).

        The other parameters are those of the constructor.

        :param body: the answer's JSON object.
        :param dpop_key: the key whose proof went with the login, if any.
        :raises ValueError: the body is not a Bearer or DPoP token pair, or a
            DPoP pair came without its key.
        """
        state = TokenState.from_token_response(body, now=clock())
        if state.token_type == "DPoP" and dpop_key is None:
            raise ValueError("a DPoP token pair needs the dpop_key its login proof was signed with")
        auth = cls(
            state.access_token,
            state.refresh_token,
            refresh_url=refresh_url,
            on_refresh=on_refresh,
            refresh_margin=refresh_margin,
            clock=clock,
            dpop_key=dpop_key,
            oauth=oauth,
            client_id=client_id,
        )
        auth._state = state
        return auth

    # -- the tokens ----------------------------------------------------------------------

    @property
    def tokens(self) -> TokenState | None:
        """The tokens held now; None after the server refused a refresh."""
        return self._state

    def set_tokens(self, state: TokenState) -> None:
        """Hold new tokens (after a new login, say) and forget past failures."""
        self._state, self._failure = state, None

    def clear(self) -> None:
        """Forget the tokens (after a logout); requests then raise ``RefreshFailed``."""
        self._state = None
        self._failure = RefreshFailed("no_tokens", "The client holds no tokens; log in again.")

    def _current(self) -> TokenState:
        if self._state is None:
            raise (self._failure or RefreshFailed("no_tokens")).again()
        return self._state

    def _due(self, state: TokenState) -> bool:
        if state.expires_at is None:
            return False
        margin = self.refresh_margin
        if state.lifetime is not None:
            margin = min(margin, state.lifetime / 2)
        return self.clock() >= state.expires_at - margin

    def _usable(self, state: TokenState, failure: RefreshFailed) -> bool:
        """After a failed early refresh: may the old, not yet expired token still go?"""
        held = self._state
        return (
            failure.retryable
            and held is not None
            and held.access_token == state.access_token
            and (state.expires_at is None or self.clock() < state.expires_at)
        )

    # -- one refresh, shared ---------------------------------------------------------------

    def _shared(self, used: TokenState, attempts: int) -> TokenState | None:
        """The outcome of a refresh that finished while we waited for the lock, if any."""
        if self._attempts != attempts and self._failure is not None:
            raise self._failure.again()
        current = self._current()
        return current if current.access_token != used.access_token else None

    def _refresh_request(self, request: httpx.Request, state: TokenState) -> httpx.Request:
        headers = {"Accept": "application/json", "Cache-Control": "no-store"}
        if "user-agent" in request.headers:
            headers["User-Agent"] = request.headers["user-agent"]
        extensions = {k: v for k, v in request.extensions.items() if k == "timeout"}
        url = request.url.join(self.refresh_url)
        if self.dpop_key is not None and state.token_type == "DPoP":
            headers["DPoP"] = self.dpop_key.proof("POST", str(url), nonce=self._nonce)
        if self.oauth:
            form = {"grant_type": "refresh_token", "refresh_token": state.refresh_token}
            if self.client_id is not None:
                form["client_id"] = self.client_id
            return httpx.Request("POST", url, data=form, headers=headers, extensions=extensions)
        return httpx.Request(
            "POST",
            url,
            json={"refresh_token": state.refresh_token},
            headers=headers,
            extensions=extensions,
        )

    def _nonce_challenged(self, response: httpx.Response) -> bool:
        """Remember a ``DPoP-Nonce`` the server sent; True if the answer was a
        ``use_dpop_nonce`` challenge (RFC 9449 sections 8 and 9) worth one retry."""
        nonce = response.headers.get("dpop-nonce")
        if nonce is None or self.dpop_key is None:
            return False
        challenged = nonce != self._nonce and response.status_code in (400, 401)
        self._nonce = nonce
        if not challenged:
            return False
        if "use_dpop_nonce" in response.headers.get("www-authenticate", ""):
            return True
        try:
            body = response.json()
        except ValueError:
            return False
        return isinstance(body, dict) and body.get("error") == "use_dpop_nonce"

    def _accept(self, response: httpx.Response) -> TokenState:
        """Take the new pair from a refresh answer, or record and raise the failure."""
        self._attempts += 1
        status = response.status_code
        if 200 <= status < 300:
            try:
                body = response.json()
                if not isinstance(body, dict):
                    raise ValueError("the refresh answer is not a JSON object")
                fresh = TokenState.from_token_response(body, now=self.clock())
            except ValueError as exc:
                failure = RefreshFailed(
                    "invalid_response", str(exc)[:MAX_DETAIL], status_code=status, retryable=True
                )
            else:
                self._state, self._failure = fresh, None
                return fresh
        else:
            failure = refusal(response)
            if not failure.retryable:
                self._state = None
        self._failure = failure
        raise failure.again()

    def _authorize(self, request: httpx.Request, state: TokenState) -> None:
        if self.dpop_key is not None and state.token_type == "DPoP":
            request.headers["Authorization"] = f"DPoP {state.access_token}"
            request.headers["DPoP"] = self.dpop_key.proof(
                request.method, str(request.url), access_token=state.access_token, nonce=self._nonce
            )
        else:
            request.headers["Authorization"] = f"Bearer {state.access_token}"

    # -- httpx.Client ------------------------------------------------------------------------

    def _sync_refresh(
        self, request: httpx.Request, used: TokenState
    ) -> Generator[httpx.Request, httpx.Response, TokenState]:
        attempts = self._attempts
        with self._sync_lock:
            shared = self._shared(used, attempts)
            if shared is not None:
                return shared
            response = yield self._refresh_request(request, self._current())
            response.read()
            if self._nonce_challenged(response):
                response = yield self._refresh_request(request, self._current())
                response.read()
            fresh = self._accept(response)
            if self.on_refresh is not None:
                result = self.on_refresh(fresh)
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()
                    raise TypeError("an async on_refresh needs an httpx.AsyncClient")
            return fresh

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """The flow ``httpx.Client`` runs: attach, refresh early or after a 401, retry once.

        :raises RefreshFailed: no tokens are held, or the refresh was refused.
        """
        request.read()
        state = self._current()
        if self._due(state):
            try:
                state = yield from self._sync_refresh(request, state)
            except RefreshFailed as failure:
                if not self._usable(state, failure):
                    raise
        self._authorize(request, state)
        response = yield request
        if self._nonce_challenged(response):
            response.read()
            self._authorize(request, state)
            response = yield request
        if response.status_code != 401:
            return
        state = yield from self._sync_refresh(request, state)
        self._authorize(request, state)
        yield request

    # -- httpx.AsyncClient -------------------------------------------------------------------

    def _lock(self) -> asyncio.Lock:
        """This event loop's lock (made on first use in each loop)."""
        loop = asyncio.get_running_loop()
        if self._async_lock is None or self._async_loop is None or self._async_loop() is not loop:
            self._async_lock, self._async_loop = asyncio.Lock(), weakref.ref(loop)
        return self._async_lock

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """The flow ``httpx.AsyncClient`` runs: as ``sync_auth_flow``, with an ``asyncio.Lock``.

        :raises RefreshFailed: no tokens are held, or the refresh was refused.
        """
        await request.aread()
        state = self._current()
        if self._due(state):
            used, attempts = state, self._attempts
            try:
                async with self._lock():
                    fresh = self._shared(used, attempts)
                    if fresh is None:
                        response = yield self._refresh_request(request, self._current())
                        if await self._challenged_async(response):
                            response = yield self._refresh_request(request, self._current())
                        fresh = await self._finish(response)
                state = fresh
            except RefreshFailed as failure:
                if not self._usable(used, failure):
                    raise
        self._authorize(request, state)
        response = yield request
        if await self._challenged_async(response):
            self._authorize(request, state)
            response = yield request
        if response.status_code != 401:
            return
        used, attempts = state, self._attempts
        async with self._lock():
            fresh = self._shared(used, attempts)
            if fresh is None:
                response = yield self._refresh_request(request, self._current())
                if await self._challenged_async(response):
                    response = yield self._refresh_request(request, self._current())
                fresh = await self._finish(response)
        self._authorize(request, fresh)
        yield request

    async def _challenged_async(self, response: httpx.Response) -> bool:
        if self.dpop_key is None or "dpop-nonce" not in response.headers:
            return False
        await response.aread()
        return self._nonce_challenged(response)

    async def _finish(self, response: httpx.Response) -> TokenState:
        await response.aread()
        fresh = self._accept(response)
        if self.on_refresh is not None:
            result = self.on_refresh(fresh)
            if inspect.isawaitable(result):
                await result
        return fresh
