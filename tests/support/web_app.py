"""The app the HTTP contract tests run against, built like examples/app.py but parametrizable.

``build_web(kit, store, config=..., ...)`` mounts jwtsess exactly as the demo
does (``JWTAuthMiddleware``, ``Route("/auth/login")`` before
``Mount("/auth", auth_routes(...))``, ``jwks_route``) on a test key directory,
a chosen store and the kit's ``MutableClock``. Beside the library's routes it has
a tiny login route (no passwords: the body names the user and role) and a few
protected routes and websockets exercising the guards and Starlette's own
``requires``.

httpx's ``ASGITransport`` runs no lifespan, so ``build_web`` loads the mirror
itself; the mirror's follower task is never started (no background I/O, no
sleeps): the issuer syncs the mirror after every revocation it makes. The
mirror's staleness clock is ``WebApp.ticker``, separate from the wall clock, so
a test can make revocation state stale without expiring tokens.

Websockets are driven by hand (``websocket_exchange``): one ASGI call in the
test's own event loop, so the Redis store's connections stay on one loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import Message, Scope
from starlette.websockets import WebSocket

from jwtsess import (
    AuthError,
    BadRequest,
    Issuer,
    RevocationMirror,
    SessionPolicy,
    TokenPair,
    Verifier,
)
from jwtsess.dpop import DPoPSettings, DPoPVerifier
from jwtsess.mirror import StalenessPolicy
from jwtsess.sessions import ClientMetadata
from jwtsess.store.base import SessionStore
from jwtsess.web import (
    JWTAuthMiddleware,
    JWTUser,
    OAuthConfig,
    OAuthEndpoints,
    WebConfig,
    auth_routes,
    client_metadata,
    dpop_binding,
    error_response,
    jwks_route,
    read_json_object,
    require_auth,
    require_role,
    set_session_cookies,
)
from tests.support.kit import MutableClock, TokenKit
from tests.support.redis_proxy import RedisFaultProxy

BASE_URL = "https://testserver"
CLIENT_IP = "127.0.0.1"
USER_AGENT = "jwtsess-tests/1.0"
INTROSPECTION_CLIENT = ("resource-server", "rs-secret-0123456789abcdef")
NO_STORE = "no-store"
ALL_METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]


# -- the app's own routes (what an application adds around jwtsess) -----------------------


def _user_json(request: Request | WebSocket) -> dict[str, Any]:
    user = request.user
    body: dict[str, Any] = {
        "authenticated": user.is_authenticated,
        "user_type": type(user).__name__,
        "scopes": list(request.auth.scopes),
    }
    if isinstance(user, JWTUser):
        body.update(
            user_id=user.id,
            role=user.role,
            session_id=user.session_id,
            display_name=user.display_name,
            identity=user.identity,
            sub=user.claims.sub,
        )
    return body


async def public(request: Request) -> Response:
    return JSONResponse(_user_json(request))


async def cookie_names(request: Request) -> Response:
    """Which cookies the client sent here (to check Path scoping)."""
    return JSONResponse(sorted(request.cookies))


@require_auth()
async def me(request: Request) -> Response:
    return JSONResponse({**_user_json(request), "method": request.method})


@require_role("admin")
async def admin(request: Request) -> Response:
    return JSONResponse({"admin": True, "user_id": request.user.identity})


@require_role("admin", "auditor")
async def audit_log(request: Request) -> Response:
    return JSONResponse({"role": request.user.role})


@requires("admin")
async def starlette_admin(request: Request) -> Response:
    return JSONResponse({"scopes": list(request.auth.scopes)})


@requires("reports")
async def starlette_reports(request: Request) -> Response:
    return JSONResponse({"reports": True, "user_id": request.user.identity})


@requires("authenticated", status_code=401)
async def starlette_authenticated(request: Request) -> Response:
    return JSONResponse({"user_id": request.user.identity})


@require_auth()
async def ws_me(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(_user_json(websocket))
    await websocket.close()


@require_role("admin")
async def ws_admin(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(_user_json(websocket))
    await websocket.close()


async def ws_public(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(_user_json(websocket))
    await websocket.close()


@dataclass
class WebApp:
    """One app under test and everything behind it."""

    app: Starlette
    kit: TokenKit
    store: SessionStore
    issuer: Issuer
    verifier: Verifier
    mirror: RevocationMirror
    config: WebConfig
    ticker: MutableClock  # the mirror's monotonic (staleness) clock
    dpop: DPoPVerifier
    oauth: OAuthEndpoints
    clients: list[httpx.AsyncClient] = field(default_factory=list)
    #: Between the store and its Redis when the app came from the ``faulty_web``
    #: fixture: ``web.fault.cut()`` takes the store away, ``restore()`` brings it back.
    fault: RedisFaultProxy | None = None

    @property
    def clock(self) -> MutableClock:
        return self.kit.clock

    def client(
        self, *, ip: str = CLIENT_IP, base_url: str = BASE_URL, raise_app_exceptions: bool = True
    ) -> httpx.AsyncClient:
        """An httpx client talking to the app in-process; closed by ``aclose``."""
        transport = httpx.ASGITransport(
            app=self.app, client=(ip, 50000), raise_app_exceptions=raise_app_exceptions
        )
        client = httpx.AsyncClient(
            transport=transport, base_url=base_url, headers={"user-agent": USER_AGENT}
        )
        self.clients.append(client)
        return client

    async def login(
        self, user_id: str = "alice", role: str = "user", *, ip: str = CLIENT_IP
    ) -> TokenPair:
        """A session opened directly through the issuer (header-mode clients)."""
        return await self.issuer.login(
            user_id, role, metadata=ClientMetadata(user_agent=USER_AGENT, ip=ip)
        )

    async def cookie_client(
        self, user_id: str = "alice", role: str = "user", *, ip: str = CLIENT_IP
    ) -> httpx.AsyncClient:
        """A client whose cookie jar holds a session opened by the login route."""
        client = self.client(ip=ip)
        response = await client.post(
            f"{self.config.prefix}/login", json={"user_id": user_id, "role": role, "cookie": True}
        )
        assert response.status_code == 200, response.text
        return client

    def csrf(self, client: httpx.AsyncClient) -> dict[str, str]:
        """The CSRF header repeating the client's CSRF cookie."""
        token = client.cookies.get(self.config.csrf_cookie_name)
        assert token, "no CSRF cookie in the jar"
        return {self.config.csrf_header: token}

    def make_stale(self) -> None:
        """Let the mirror go silent for longer than its ``stale_after``."""
        self.ticker.advance(self.mirror.stale_after + 1)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


def build_web(
    kit: TokenKit,
    store: SessionStore,
    *,
    config: WebConfig | None = None,
    policy: SessionPolicy | None = None,
    staleness: StalenessPolicy = "fail_closed",
    dpop: DPoPSettings | None = None,
    oauth: OAuthConfig | None = None,
) -> WebApp:
    """The app of examples/app.py on ``kit``'s keys and clock and on ``store``.

    The OAuth endpoints are mounted too; by default ``INTROSPECTION_CLIENT`` (HTTP
    Basic) and access tokens of role ``admin`` may introspect.
    """
    web = config or WebConfig()
    ticker = MutableClock(1000.0)
    mirror = RevocationMirror(store, clock=kit.clock, monotonic=ticker, policy=staleness)
    issuer = Issuer(kit.keyring, kit.settings, store, policy=policy, clock=kit.clock, mirror=mirror)
    verifier = Verifier(kit.keyring, kit.settings, clock=kit.clock, revocation=mirror)
    proofs = DPoPVerifier(dpop, clock=kit.clock)
    oauth_endpoints = OAuthEndpoints(
        issuer,
        verifier,
        config=web,
        dpop=proofs,
        options=oauth
        or OAuthConfig(
            introspection_clients=dict([INTROSPECTION_CLIENT]), introspection_role="admin"
        ),
    )

    async def login(request: Request) -> Response:
        """Test-only login: the body names the user; no password is checked."""
        try:
            body = await read_json_object(request, web.max_body_bytes)
            user_id, role = body.get("user_id"), body.get("role", "user")
            if not isinstance(user_id, str) or not isinstance(role, str):
                raise BadRequest("user_id and role must be strings.")
            binding = None
            if body.get("cookie") is not True:
                binding = await dpop_binding(request, issuer, proofs)
            try:
                pair = await issuer.login(
                    user_id, role, metadata=client_metadata(request), binding=binding
                )
            except ValueError:  # an empty or over-long user id or role
                raise BadRequest("user_id and role must be short non-empty strings.") from None
        except AuthError as error:
            return error_response(web, error)
        if body.get("cookie") is True:
            response = JSONResponse(
                {"token_type": "Bearer", "expires_in": pair.expires_in,
                 "session_id": pair.session_id},
                headers={"Cache-Control": NO_STORE},
            )  # fmt: skip
            set_session_cookies(response, web, pair)
            return response
        return JSONResponse(pair.as_json(), headers={"Cache-Control": NO_STORE})

    app = Starlette(
        routes=[
            Route(f"{web.prefix}/login", login, methods=["POST"]),
            Mount(
                web.prefix, app=auth_routes(issuer, config=web, oauth=oauth_endpoints, dpop=proofs)
            ),
            Route("/public", public, methods=ALL_METHODS),
            Route("/cookie-names", cookie_names),
            Route("/me", me, methods=ALL_METHODS),
            Route("/admin", admin),
            Route("/audit-log", audit_log),
            Route("/starlette/admin", starlette_admin),
            Route("/starlette/reports", starlette_reports),
            Route("/starlette/authenticated", starlette_authenticated),
            WebSocketRoute("/ws", ws_me),
            WebSocketRoute("/ws/admin", ws_admin),
            WebSocketRoute("/ws/public", ws_public),
            jwks_route(kit.keyring),
            oauth_endpoints.metadata_route(),
        ],
        middleware=[Middleware(JWTAuthMiddleware, verifier=verifier, config=web, dpop=proofs)],
    )
    return WebApp(
        app=app,
        kit=kit,
        store=store,
        issuer=issuer,
        verifier=verifier,
        mirror=mirror,
        config=web,
        ticker=ticker,
        dpop=proofs,
        oauth=oauth_endpoints,
    )


MakeWeb = Callable[..., Awaitable[WebApp]]


async def start_web(kit: TokenKit, store: SessionStore, **options: Any) -> WebApp:
    """``build_web`` plus what the lifespan would do: load the revocation mirror."""
    web = build_web(kit, store, **options)
    await web.mirror.load()
    return web


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- websockets, by hand ---------------------------------------------------------------------


@dataclass
class WebSocketResult:
    """What the app sent over one websocket conversation."""

    messages: list[Message]

    @property
    def accepted(self) -> bool:
        return bool(self.messages) and self.messages[0]["type"] == "websocket.accept"

    @property
    def close(self) -> Message:
        closes = [m for m in self.messages if m["type"] == "websocket.close"]
        assert closes, f"the app never closed the websocket: {self.messages}"
        return closes[0]

    @property
    def close_code(self) -> int:
        code: int = self.close.get("code", 1000)
        return code

    @property
    def close_reason(self) -> str:
        reason: str = self.close.get("reason") or ""
        return reason

    @property
    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages if m["type"] == "websocket.send" and "text" in m]


async def websocket_exchange(
    app: Starlette,
    path: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    query_string: str = "",
    scheme: str = "wss",
    host: str = "testserver",
) -> WebSocketResult:
    """Connect, let the app run to completion, and return every message it sent.

    After the connect message the client has nothing more to say: a further
    ``receive`` gets a disconnect.
    """
    raw_headers = [(b"host", host.encode("latin-1"))]
    raw_headers += [(b"connection", b"upgrade"), (b"sec-websocket-version", b"13")]
    raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    scope: Scope = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "scheme": scheme,
        "server": (host, 443 if scheme == "wss" else 80),
        "client": (CLIENT_IP, 50000),
        "root_path": "",
        "path": path,
        "raw_path": path.encode("ascii"),
        "query_string": query_string.encode("ascii"),
        "headers": raw_headers,
        "subprotocols": [],
        "state": {},
    }
    incoming: list[Message] = [{"type": "websocket.connect"}]
    sent: list[Message] = []

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout=5)
    return WebSocketResult(sent)
