"""The jwtsess demo as a FastAPI app: ``python -m examples.fastapi_app``.

The same users, keys and environment variables as ``examples/app.py`` (its
``DemoConfig``, ``PasswordBook`` and key set-up are reused, not copied): HOST,
PORT, JWTSESS_KEYS_DIR, JWTSESS_ALG, JWTSESS_ACCESS_TTL, JWTSESS_SECURE_COOKIES,
REDIS_URL. Swagger UI is at ``/docs``: log in with ``POST /auth/login``, paste
the ``access_token`` into Authorize, and call ``GET /me``.

- ``POST /auth/login``: ``{"username", "password"}`` -> a token pair;
- the auth routes (``auth_router``): refresh, logout, sessions, ..., and the
  OAuth 2.0 token, revocation and introspection endpoints with their RFC 8414
  metadata;
- ``GET /me``: the caller's claims (``CurrentUser``);
- ``GET /admin``: role ``admin`` only (403 ``insufficient_role`` otherwise);
- ``/ws``: a websocket echoing text for an authenticated user, closed by the
  server (1008 ``token_revoked`` / ``token_expired``) when the session ends.
"""

# No `from __future__ import annotations`: FastAPI reads the local `admin_only` in annotations.

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from examples.app import DEMO_USERS, DemoConfig, demo_parts
from jwtsess import AuthError, BadRequest, Issuer, KeyRing, LoginLimiter, Verifier
from jwtsess.web import (
    JWTAuthMiddleware,
    JWTUser,
    OAuthEndpoints,
    WebConfig,
    client_metadata,
    error_response,
    require_role,
)
from jwtsess.web.fastapi import CurrentUser, ErrorBody, TokenPairBody, auth_router

try:  # Swagger UI's assets served by the app itself, so /docs works offline
    from fastapi_offline import FastAPIOffline as _FastAPI
except ImportError:  # pragma: no cover - FastAPI's own /docs loads them from a CDN
    _FastAPI = FastAPI  # type: ignore[assignment]

DESCRIPTION = "jwtsess demo users: alice / alice-demo-password (admin), bob / bob-demo-password."


class LoginBody(BaseModel):
    username: str
    password: str


def build_app(
    issuer: Issuer,
    verifier: Verifier,
    keyring: KeyRing,
    web: WebConfig,
    *,
    lifespan: Any = None,
    login_limiter: LoginLimiter | None = None,
) -> FastAPI:
    """The app on given jwtsess parts (tests pass the ``jwtsess`` fixture's).

    :param login_limiter: throttles ``/auth/login`` (``create_app`` passes one on the
        demo's store, as ``examples/app.py`` does); None: no throttling.
    """
    app = _FastAPI(title="jwtsess FastAPI demo", description=DESCRIPTION, lifespan=lifespan)
    app.add_middleware(JWTAuthMiddleware, verifier=verifier, config=web)
    admin_only = require_role("admin", config=web)

    async def invalid_body(request: Request, exc: Exception) -> Response:
        # FastAPI's default 422 echoes the input, and NaN, Infinity or a lone surrogate
        # in it cannot be written as JSON: a 500 with a traceback. jwtsess's contract
        # instead (docs/errors.md): 400 bad_request, naming the fields only.
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        fields = sorted({".".join(str(p) for p in e.get("loc", ())[1:]) or "body" for e in errors})
        return error_response(web, BadRequest(f"The body is not valid: {', '.join(fields)}."))

    app.add_exception_handler(RequestValidationError, invalid_body)

    @app.post(
        "/auth/login",
        tags=["auth"],
        response_model=TokenPairBody,
        responses={401: {"model": ErrorBody}, 429: {"model": ErrorBody}},
    )
    async def login(body: LoginBody, request: Request) -> Response:
        meta = client_metadata(request)
        try:
            # Before the password check: a refused guess costs no hash and tells nothing.
            attempt = await login_limiter.attempt(body.username, meta.ip) if login_limiter else None
            # scrypt takes ~50 ms: off the event loop, so other requests go on.
            role = await run_in_threadpool(DEMO_USERS.check, body.username, body.password)
            if role is None:
                return JSONResponse(
                    {"error": "invalid_credentials", "detail": "Wrong username or password."},
                    status_code=401,
                    headers={"Cache-Control": "no-store"},
                )
            if attempt is not None:
                await attempt.succeeded()  # the limits count failures only
            pair = await issuer.login(body.username, role, metadata=meta)
        except AuthError as error:  # rate_limited (429, Retry-After), store_unavailable
            return error_response(web, error)
        return JSONResponse(pair.as_json(), headers={"Cache-Control": "no-store"})

    # Standard OAuth 2.0 clients refresh at /auth/token and revoke at /auth/revoke.
    oauth = OAuthEndpoints(issuer, verifier, config=web)
    app.include_router(auth_router(issuer, config=web, oauth=oauth))
    app.router.routes.append(oauth.metadata_route())  # /.well-known/oauth-authorization-server

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, Any]:
        return user.claims.as_dict()

    @app.get("/admin")
    async def admin(user: Annotated[JWTUser, Depends(admin_only)]) -> dict[str, Any]:
        return {"admin": True, "user": user.id}

    @app.get("/.well-known/jwks.json", include_in_schema=False)
    async def jwks() -> dict[str, Any]:
        return keyring.jwks()

    @app.websocket("/ws")
    async def echo(websocket: WebSocket, user: CurrentUser) -> None:
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):  # either end may close; both are fine
            while True:
                text = await websocket.receive_text()
                await websocket.send_text(f"{user.id}: {text}")

    return app


def create_app(config: DemoConfig) -> FastAPI:
    parts = demo_parts(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await parts.mirror.start()
        try:
            yield
        finally:
            await parts.mirror.stop()
            await parts.store.close()

    # Password guessing: per account and address, per address, per account (docs/http.md).
    limiter = LoginLimiter(parts.store)
    return build_app(
        parts.issuer, parts.verifier, parts.keyring, parts.web,
        lifespan=lifespan, login_limiter=limiter,
    )  # fmt: skip


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory examples.fastapi_app:app_from_env``."""
    return create_app(DemoConfig.from_env())


def main() -> None:
    import uvicorn

    config = DemoConfig.from_env()
    app = create_app(config)
    print(f"jwtsess FastAPI demo: open http://{config.host}:{config.port}/docs")
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")


if __name__ == "__main__":
    main()
