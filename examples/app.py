"""The jwtsess demo service (``make run``).

Mounts jwtsess the way the README shows: the middleware, the auth routes under
``/auth``, the JWKS, plus a login endpoint, two protected routes and a small
HTML page. The login is throttled with ``LoginLimiter`` (429 with
``Retry-After`` after 5 failures a minute for one account from one address,
escalating; see docs/http.md). A login that carries a ``DPoP`` proof opens a
session bound to the client's key (docs/dpop.md); the page does that with a
WebCrypto key when "Bind this session to a key" is ticked. Demo users
(passwords hashed with scrypt at start-up):

- ``alice`` / ``alice-demo-password``: role ``admin``
- ``bob`` / ``bob-demo-password``: role ``user``

Configuration comes from the environment:

- ``HOST`` / ``PORT``: where uvicorn listens (default 127.0.0.1:8000);
- ``JWTSESS_KEYS_DIR``: the key directory (default ``keys``; dev keys are
  generated there on first start);
- ``JWTSESS_ALG``: algorithm of generated dev keys (default RS256);
- ``JWTSESS_ACCESS_TTL``: access-token lifetime in seconds (default 900);
- ``JWTSESS_SECURE_COOKIES``: ``1`` for ``Secure`` / ``__Host-`` cookies
  (default ``0``: the demo is served over plain http on loopback);
- ``REDIS_URL``: ``redis://...`` switches from the embedded MemoryStore to Redis;
- ``JWTSESS_INTROSPECTION_SECRET``: lets the client ``resource-server`` call
  ``/auth/introspect`` with HTTP Basic (at least 16 characters; unset: only
  ``admin`` access tokens may introspect);
- ``JWTSESS_ISSUER``: the ``iss`` claim (default ``http://HOST:PORT``); give
  several processes serving one site the same value;
- ``JWTSESS_AUDIENCE``: the ``aud`` claim (default ``jwtsess-demo``);
- ``WORKERS``: worker processes on the one port (default 1; more need
  ``REDIS_URL``, so they share sessions and revocations). Served by
  ``examples/serve.py``, which keeps ``TCP_NODELAY`` on (``uvicorn --workers``
  does not: every keep-alive answer then waits ~40 ms).

Several instances behind one address are one issuer: give them the same
``JWTSESS_ISSUER`` (the public address), ``JWTSESS_AUDIENCE``, key directory and
``REDIS_URL``, and each accepts the others' tokens (README, "Running several
instances"). Services that only verify run ``examples/resource_server.py``.

Standard OAuth 2.0 clients (Authlib, AppAuth) refresh at ``/auth/token`` and
revoke at ``/auth/revoke``; ``/.well-known/oauth-authorization-server`` lists them.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route

from jwtsess import (
    AuthError,
    BadRequest,
    DPoPVerifier,
    Issuer,
    KeyRing,
    LoginLimiter,
    MemoryStore,
    RedisStore,
    RevocationMirror,
    SessionStore,
    TokenSettings,
    Verifier,
    devices,
)
from jwtsess.keytool import ensure_keys
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

PAGE = Path(__file__).with_name("index.html")


@dataclass(frozen=True)
class DemoConfig:
    host: str
    port: int
    keys_dir: str
    alg: str
    access_ttl: int
    secure_cookies: bool
    redis_url: str | None
    introspection_secret: str | None = None
    issuer: str = ""  # the ``iss`` claim; default http://HOST:PORT
    audience: str = "jwtsess-demo"

    @classmethod
    def from_env(cls) -> DemoConfig:
        host = os.environ.get("HOST", "127.0.0.1")
        port = int(os.environ.get("PORT", "8000"))
        return cls(
            host=host,
            port=port,
            keys_dir=os.environ.get("JWTSESS_KEYS_DIR", "keys"),
            alg=os.environ.get("JWTSESS_ALG", "RS256"),
            access_ttl=int(os.environ.get("JWTSESS_ACCESS_TTL", "900")),
            secure_cookies=os.environ.get("JWTSESS_SECURE_COOKIES", "0") == "1",
            redis_url=os.environ.get("REDIS_URL") or None,
            introspection_secret=os.environ.get("JWTSESS_INTROSPECTION_SECRET") or None,
            issuer=os.environ.get("JWTSESS_ISSUER", ""),
            audience=os.environ.get("JWTSESS_AUDIENCE") or "jwtsess-demo",
        )


class PasswordBook:
    """Demo users with scrypt password hashes (stdlib, no extra dependency)."""

    _PARAMS: ClassVar[dict[str, int]] = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}

    def __init__(self, users: dict[str, tuple[str, str]]) -> None:
        self._users = {name: (role, *self._hash(pw)) for name, (pw, role) in users.items()}
        # Unknown names are checked against this, so both answers take as long.
        self._dummy = self._hash(secrets.token_urlsafe(16))

    @classmethod
    def _hash(cls, password: str, salt: bytes | None = None) -> tuple[bytes, bytes]:
        salt = salt or secrets.token_bytes(16)
        # surrogatepass: a JSON body may spell a lone surrogate ("\ud800"), which strict
        # UTF-8 cannot encode; such a password is simply wrong, never a 500.
        secret = password.encode("utf-8", "surrogatepass")
        return salt, hashlib.scrypt(secret, salt=salt, **cls._PARAMS)

    def check(self, username: str, password: str) -> str | None:
        """The user's role if the password is right, else None (same cost either way)."""
        record = self._users.get(username)
        salt, expected = (record[1], record[2]) if record else self._dummy
        _, given = self._hash(password, salt)
        ok = hmac.compare_digest(given, expected)
        return record[0] if ok and record else None


DEMO_USERS = PasswordBook(
    {"alice": ("alice-demo-password", "admin"), "bob": ("bob-demo-password", "user")}
)


@dataclass(frozen=True)
class DemoParts:
    """The jwtsess objects of the demo, built from its configuration (shared with
    examples/fastapi_app.py)."""

    keyring: KeyRing
    settings: TokenSettings
    store: SessionStore
    mirror: RevocationMirror
    issuer: Issuer
    verifier: Verifier
    web: WebConfig


def demo_parts(config: DemoConfig) -> DemoParts:
    ensure_keys(config.keys_dir, config.alg, max_token_ttl=max(900, config.access_ttl))
    keyring = KeyRing(config.keys_dir)
    settings = TokenSettings(
        issuer=config.issuer or f"http://{config.host}:{config.port}",
        audience=config.audience,
        access_ttl=config.access_ttl,
    )
    store: SessionStore = (
        RedisStore.from_url(config.redis_url) if config.redis_url else MemoryStore()
    )
    mirror = RevocationMirror(store)
    issuer = Issuer(keyring, settings, store, mirror=mirror)
    verifier = Verifier(keyring, settings, revocation=mirror)
    web = WebConfig(secure=config.secure_cookies)
    return DemoParts(keyring, settings, store, mirror, issuer, verifier, web)


def create_app(config: DemoConfig) -> Starlette:
    parts = demo_parts(config)
    keyring, store, mirror, issuer, verifier, web = (
        parts.keyring, parts.store, parts.mirror, parts.issuer, parts.verifier, parts.web
    )  # fmt: skip
    # One per process: checks DPoP proofs, keeps the resource requests' replay cache.
    dpop = DPoPVerifier()
    # Password guessing: per account and address, per address, per account (docs/http.md).
    login_limiter = LoginLimiter(store)
    secret = config.introspection_secret
    clients = {"resource-server": secret} if secret else {}
    oauth = OAuthEndpoints(
        issuer,
        verifier,
        config=web,
        options=OAuthConfig(introspection_clients=clients, introspection_role="admin"),
        dpop=dpop,
    )

    async def login(request: Request) -> Response:
        try:
            body = await read_json_object(request, web.max_body_bytes)
            username, password = body.get("username"), body.get("password")
            if not isinstance(username, str) or not isinstance(password, str):
                raise BadRequest("username and password must be strings.")
            meta = client_metadata(request)
            # Before the password check: a refused guess costs no hash and tells nothing.
            attempt = await login_limiter.attempt(username, meta.ip)
            # scrypt takes ~50 ms: off the event loop, so other requests go on.
            role = await run_in_threadpool(DEMO_USERS.check, username, password)
            if role is None:
                return JSONResponse(
                    {"error": "invalid_credentials", "detail": "Wrong username or password."},
                    status_code=401,
                    headers={"Cache-Control": "no-store"},
                )
            await attempt.succeeded()  # the limits count failures only
            cookie = body.get("cookie") is True
            if cookie and "dpop" in request.headers:
                raise BadRequest("A cookie session is a bearer session; sign in without 'cookie'.")
            # A DPoP proof binds the session to the client's key (docs/dpop.md).
            binding = None if cookie else await dpop_binding(request, issuer, dpop)
            pair = await issuer.login(username, role, metadata=meta, binding=binding)
        except AuthError as error:
            return error_response(web, error)
        if cookie:
            response = JSONResponse(
                {"token_type": "Bearer", "expires_in": pair.expires_in,
                 "session_id": pair.session_id},
                headers={"Cache-Control": "no-store"},
            )  # fmt: skip
            set_session_cookies(response, web, pair)
            return response
        return JSONResponse(pair.as_json(), headers={"Cache-Control": "no-store"})

    @require_auth()
    async def me(request: Request) -> Response:
        user: JWTUser = request.user
        return JSONResponse(user.claims.as_dict())

    @require_role("admin")
    async def admin(request: Request) -> Response:
        return JSONResponse({"admin": True, "user": request.user.identity})

    async def index(request: Request) -> Response:
        return FileResponse(PAGE, headers={"Cache-Control": "no-store"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(devices.preload)  # the session list's device labels
        await mirror.start()
        try:
            yield
        finally:
            await mirror.stop()
            await store.close()

    return Starlette(
        routes=[
            Route("/", index),
            Route("/auth/login", login, methods=["POST"]),
            Mount("/auth", app=auth_routes(issuer, config=web, oauth=oauth, dpop=dpop)),
            Route("/me", me),
            Route("/admin", admin),
            jwks_route(keyring),
            oauth.metadata_route(),
        ],
        middleware=[Middleware(JWTAuthMiddleware, verifier=verifier, config=web, dpop=dpop)],
        lifespan=lifespan,
    )


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory examples.app:app_from_env`` (e.g. with ``--workers 4``)."""
    return create_app(DemoConfig.from_env())


def main() -> None:
    import uvicorn

    config = DemoConfig.from_env()
    created = ensure_keys(config.keys_dir, config.alg, max_token_ttl=max(900, config.access_ttl))
    active = KeyRing(config.keys_dir).signing_key()
    store = f"RedisStore ({config.redis_url})" if config.redis_url else "MemoryStore (embedded)"
    print(
        f"jwtsess demo: keys in {config.keys_dir!r} ({'generated now' if created else 'existing'})"
    )
    print(f"jwtsess demo: signing with {active.alg}, kid {active.kid}")
    print(f"jwtsess demo: store = {store}; access tokens live {config.access_ttl}s")
    issuer = config.issuer or f"http://{config.host}:{config.port}"
    print(f"jwtsess demo: iss {issuer!r}, aud {config.audience!r}")
    print(f"jwtsess demo: open http://{config.host}:{config.port}/  (alice / alice-demo-password)")
    workers = int(os.environ.get("WORKERS", "1"))
    if workers > 1:
        if not config.redis_url:
            raise SystemExit("WORKERS > 1 needs REDIS_URL: each worker would have its own sessions")
        from .serve import run_workers

        run_workers(
            "examples.app:app_from_env", host=config.host, port=config.port, workers=workers
        )
        return
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="info")


if __name__ == "__main__":
    main()
