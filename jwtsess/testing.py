"""jwtsess.testing: a pytest plugin and helpers for testing an app that uses jwtsess.

Installed with jwtsess, the plugin is active in every pytest run (entry point
``pytest11``; or ``-p jwtsess.testing``, or ``pytest_plugins = ["jwtsess.testing"]``).
Its fixtures are light: they import jwtsess only when a test asks for them
(the entry point is the tiny top-level module ``jwtsess_pytest``).

- ``jwtsess`` (a :class:`JWTSessKit`): an in-memory issuer, verifier and
  revocation mirror on a :class:`SteppableClock`, with a key directory of its
  own; everything works on whatever event loop the test runs (TestClient's
  thread, pytest-asyncio's loop, ``asyncio.run``).
- ``jwtsess_clock``: that clock. Override ``jwtsess_settings``,
  ``jwtsess_config`` or ``jwtsess_alg`` in your conftest to match your app.

Helpers: a token factory (``kit.token(...)``: user, role, lifetime, expired,
not yet valid, revoked, extra claims), ``kit.headers`` / ``kit.cookies`` for
TestClient and ``httpx.AsyncClient`` (``asgi_client``), ``refresh_race`` (two
tabs refreshing at once), ``assert_unauthorized`` / ``assert_forbidden``
(RFC 6750 answers) and ``websocket_refusal``. docs/testing.md is the guide.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
from collections.abc import Awaitable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from jwtsess_pytest import (
    jwtsess as jwtsess,
)
from jwtsess_pytest import (
    jwtsess_alg as jwtsess_alg,
)
from jwtsess_pytest import (
    jwtsess_clock as jwtsess_clock,
)
from jwtsess_pytest import (
    jwtsess_config as jwtsess_config,
)
from jwtsess_pytest import (
    jwtsess_settings as jwtsess_settings,
)

from . import (
    AccessTokenSigner,
    Issuer,
    KeyRing,
    MemoryStore,
    RevocationMirror,
    TokenSettings,
    Verifier,
    init_keys,
)
from .access import AccessClaims
from .sessions import ClientMetadata, TokenPair
from .store.base import REVOKE_TOKEN, Revocation
from .web.config import WebConfig
from .web.middleware import JWTUser

if TYPE_CHECKING:
    import httpx
    from starlette.testclient import TestClient
    from starlette.types import ASGIApp

T = TypeVar("T")
__all__ = [
    "JWTSessKit",
    "SteppableClock",
    "WebSocketRefusal",
    "asgi_client",
    "assert_forbidden",
    "assert_unauthorized",
    "refresh_race",
    "websocket_refusal",
]

#: The CSRF token ``kit.cookies()`` sets and ``kit.csrf_header()`` repeats.
CSRF_TOKEN = "jwtsess-test-csrf"
_INVALID_TOKEN = frozenset({"token_malformed", "token_expired", "token_invalid", "token_revoked"})


class SteppableClock:
    """A wall clock that moves only when the test moves it (``advance``, ``set``)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = float(int(time.time())) if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def set(self, now: float) -> None:
        self.now = now


class JWTSessKit:
    """An issuer, a verifier and a revocation mirror in memory, on one steppable clock.

    Give ``kit.verifier`` to ``JWTAuthMiddleware`` and ``kit.issuer`` to your
    routes (an app factory, or FastAPI ``dependency_overrides``).
    """

    def __init__(
        self,
        keys_dir: str | Path,
        *,
        alg: str = "ES256",
        settings: TokenSettings | None = None,
        config: WebConfig | None = None,
        clock: SteppableClock | None = None,
    ) -> None:
        self.clock = clock or SteppableClock()
        self.settings = settings or TokenSettings(
            issuer="https://jwtsess.test", audience="jwtsess-test"
        )
        # Plain http (TestClient's http://testserver): no Secure cookies, no __Host- names.
        self.config = config or WebConfig(secure=False)
        if not Path(keys_dir, "manifest.json").exists():
            init_keys(keys_dir, alg, clock=self.clock)
        self.keyring = KeyRing(keys_dir, clock=self.clock, monotonic=self.clock)
        self.store = MemoryStore()
        self._ticker = SteppableClock(1000.0)  # the mirror's staleness clock, apart
        self.mirror = RevocationMirror(self.store, clock=self.clock, monotonic=self._ticker)
        _complete(self.mirror.load())  # MemoryStore never suspends: loaded here, on no loop
        self.issuer = Issuer(
            self.keyring, self.settings, self.store, clock=self.clock, mirror=self.mirror
        )
        self.verifier = Verifier(
            self.keyring, self.settings, clock=self.clock, revocation=self.mirror
        )

    # -- tokens ----------------------------------------------------------------------------

    def token(
        self,
        user: str = "alice",
        role: str = "user",
        *,
        lifetime: int | None = None,
        expired: bool = False,
        not_yet_valid: bool = False,
        revoked: bool = False,
        claims: Mapping[str, Any] | None = None,
        session_id: str = "test-session",
    ) -> str:
        """A signed access token (no session behind it: ``login`` opens a real one).

        :param lifetime: seconds (default: the settings' ``access_ttl``).
        :param expired: expired beyond the leeway now.
        :param not_yet_valid: issued beyond the leeway in the future.
        :param revoked: revoked in the mirror, as a logout's feed entry would.
        :param claims: extra claims (not the registered ones).
        """
        if expired and not_yet_valid:
            raise ValueError("a token cannot be both expired and not yet valid")
        ttl = lifetime if lifetime is not None else self.settings.access_ttl
        leeway = self.settings.leeway
        now = self.clock()
        if expired:
            now -= ttl + leeway + 1
        elif not_yet_valid:
            now += leeway + 60
        settings = dataclasses.replace(self.settings, access_ttl=ttl)
        signer = AccessTokenSigner(self.keyring, settings, clock=lambda: now)
        token, issued = signer.issue(user, role, session_id, extra_claims=claims)
        if revoked:
            self.revoke(token, claims=issued)
        return token

    def revoke(self, token: str, *, claims: AccessClaims | None = None) -> None:
        """Revoke one access token in this process's mirror (as the feed would)."""
        payload = claims.as_dict() if claims else _payload(token)
        until = float(payload["exp"]) + self.settings.leeway + 1
        self.mirror.apply([Revocation(REVOKE_TOKEN, str(payload["jti"]), until)])

    def user(self, user: str = "alice", role: str = "user", **claims: Any) -> JWTUser:
        """A ``JWTUser`` without a request, for FastAPI ``dependency_overrides``."""
        return JWTUser(self.verifier.verify(self.token(user, role, claims=claims or None)))

    def headers(
        self, user: str = "alice", role: str = "user", *, token: str | None = None, **options: Any
    ) -> dict[str, str]:
        """``Authorization: Bearer`` with ``token``, or ``self.token(user, role, **options)``."""
        return {"Authorization": f"Bearer {token or self.token(user, role, **options)}"}

    def cookies(
        self, user: str = "alice", role: str = "user", *, token: str | None = None, **options: Any
    ) -> dict[str, str]:
        """The access and CSRF cookies of cookie mode (unsafe methods: add ``csrf_header()``)."""
        return {
            self.config.access_cookie_name: token or self.token(user, role, **options),
            self.config.csrf_cookie_name: CSRF_TOKEN,
        }

    def csrf_header(self) -> dict[str, str]:
        return {self.config.csrf_header: CSRF_TOKEN}

    # -- sessions (the real issuer) -------------------------------------------------------------

    async def login(
        self, user: str = "alice", role: str = "user", *, claims: Mapping[str, Any] | None = None
    ) -> TokenPair:
        """Open a real session (access and refresh token)."""
        return await self.issuer.login(user, role, extra_claims=claims, metadata=_METADATA)

    def run(self, awaitable: Awaitable[T]) -> T:
        """Run an issuer call from a synchronous test (TestClient): ``kit.run(kit.login())``."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("inside an event loop: await it instead of kit.run(...)")

        async def main() -> T:
            return await awaitable

        return asyncio.run(main())

    # -- time and state -------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move the wall clock (tokens expire; the mirror stays healthy)."""
        self.clock.advance(seconds)

    def make_stale(self) -> None:
        """Make the revocation state stale (fail_closed: requests with a token get 503)."""
        self._ticker.advance(self.mirror.stale_after + 1)


def _complete(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (MemoryStore calls), inside or outside a loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coroutine.close()
    raise RuntimeError("expected a call that completes without waiting")


_METADATA = ClientMetadata(user_agent="python-httpx", ip="testclient")


def _payload(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    payload: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return payload


# -- clients and races -----------------------------------------------------------------------


def asgi_client(app: ASGIApp, **kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` calling ``app`` in-process on the test's own loop."""
    import httpx

    kwargs.setdefault("base_url", "http://testserver")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), **kwargs)


async def refresh_race(
    client: httpx.AsyncClient, refresh_token: str, *, tabs: int = 2, path: str = "/auth/refresh"
) -> list[httpx.Response]:
    """``tabs`` refreshes of one refresh token at once, as two browser tabs do.

    jwtsess's answer: every tab gets 200 and the same successor session
    (the grace window), never a revoked session.
    """
    started = asyncio.Event()

    async def tab() -> httpx.Response:
        await started.wait()
        return await client.post(path, json={"refresh_token": refresh_token})

    tasks = [asyncio.create_task(tab()) for _ in range(tabs)]
    started.set()
    return list(await asyncio.gather(*tasks))


# -- RFC 6750 assertions -----------------------------------------------------------------------


@dataclass(frozen=True)
class WebSocketRefusal:
    """How a websocket handshake was refused: a denial response (``status``) or a close."""

    code: str  # the jwtsess error code
    status: int | None = None  # the HTTP status of a denial response
    close_code: int | None = None  # the websocket close code otherwise


def _check(response: Any, status: int, code: str | None, challenge_error: str | None) -> None:
    assert response.status_code == status, f"expected {status}, got {response.status_code}"
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    if code is not None:
        assert body["error"] == code, body
    challenge = response.headers.get("www-authenticate", "")
    assert challenge.startswith("Bearer realm="), f"no Bearer challenge: {challenge!r}"
    if challenge_error is not None:
        assert f'error="{challenge_error}"' in challenge, challenge
    elif body["error"] == "token_missing":
        assert "error=" not in challenge, challenge  # RFC 6750 3.1: no code without credentials
    assert response.headers.get("cache-control") == "no-store"


def assert_unauthorized(response: Any, code: str | None = None) -> None:
    """401 with an RFC 6750 ``Bearer`` challenge and the JSON body (code checked if given)."""
    _check(response, 401, code, "invalid_token" if code in _INVALID_TOKEN else None)


def assert_forbidden(response: Any, code: str = "insufficient_role") -> None:
    """403 ``insufficient_role`` with ``error="insufficient_scope"`` in the challenge."""
    _check(response, 403, code, "insufficient_scope")


def websocket_refusal(
    client: TestClient, path: str, *, headers: Mapping[str, str] | None = None
) -> WebSocketRefusal:
    """Open a websocket that must be refused; how it was refused (raises if accepted)."""
    from starlette.testclient import WebSocketDenialResponse
    from starlette.websockets import WebSocketDisconnect

    try:
        with client.websocket_connect(path, headers=dict(headers or {})):
            pass
    except WebSocketDenialResponse as denial:
        return WebSocketRefusal(denial.json()["error"], status=denial.status_code)
    except WebSocketDisconnect as close:
        return WebSocketRefusal(close.reason, close_code=close.code)
    raise AssertionError(f"the websocket at {path} was accepted")
