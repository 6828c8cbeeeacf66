"""require_auth / require_role as Starlette endpoint decorators and as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jwtsess import InsufficientRole, TokenMissing
from jwtsess.testing import JWTSessKit, asgi_client, assert_forbidden, assert_unauthorized
from jwtsess.web import (
    JWTAuthMiddleware,
    JWTUser,
    Requirement,
    WebConfig,
    add_exception_handlers,
    auth_error_handler,
    require_auth,
    require_role,
)
from tests.support.web_app import MakeWeb, WebApp, bearer

MISSING = 'Bearer realm="{realm}"'
SCOPE = (
    'Bearer realm="{realm}", error="insufficient_scope", '
    'error_description="The token\'s role does not allow this."'
)


def assert_error(response: httpx.Response, status: int, code: str, detail: str, www: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"error": code, "detail": detail}
    assert response.headers["www-authenticate"] == www
    assert response.headers["cache-control"] == "no-store"


# -- Starlette decorators ---------------------------------------------------------------------


async def test_require_auth_answers_401_with_a_bare_challenge(web: WebApp) -> None:
    response = await web.client().get("/me")
    assert_error(
        response, 401, "token_missing", "Authentication required.", MISSING.format(realm="jwtsess")
    )
    pair = await web.login()
    assert (await web.client().get("/me", headers=bearer(pair.access_token))).status_code == 200


async def test_require_role_answers_403_insufficient_scope(web: WebApp) -> None:
    client = web.client()
    user = await web.login("alice", "user")
    response = await client.get("/admin", headers=bearer(user.access_token))
    assert_error(
        response,
        403,
        "insufficient_role",
        "The token's role does not allow this.",
        SCOPE.format(realm="jwtsess"),
    )
    root = await web.login("root", "admin")
    response = await client.get("/admin", headers=bearer(root.access_token))
    assert response.status_code == 200
    assert response.json() == {"admin": True, "user_id": "root"}
    response = await client.get("/admin")  # anonymous: 401 before any role talk
    assert_error(
        response, 401, "token_missing", "Authentication required.", MISSING.format(realm="jwtsess")
    )


async def test_require_role_accepts_any_of_its_roles(web: WebApp) -> None:
    client = web.client()
    for role, status in (("admin", 200), ("auditor", 200), ("user", 403), ("Admin", 403)):
        pair = await web.login(f"u-{role}", role)
        response = await client.get("/audit-log", headers=bearer(pair.access_token))
        assert response.status_code == status, role


async def test_guard_answers_use_the_middlewares_realm(make_web: MakeWeb) -> None:
    web = await make_web(config=WebConfig(realm="shop"))
    client = web.client()
    assert (await client.get("/me")).headers["www-authenticate"] == 'Bearer realm="shop"'
    pair = await web.login()
    response = await client.get("/admin", headers=bearer(pair.access_token))
    assert response.headers["www-authenticate"] == SCOPE.format(realm="shop")


async def test_guards_without_the_middleware_refuse_everyone() -> None:
    @require_auth()
    async def guarded(request: Request) -> Response:
        return JSONResponse({"reached": True})

    class Endpoint(HTTPEndpoint):
        @require_role("admin")
        async def get(self, request: Request) -> Response:
            return JSONResponse({"reached": True})

    app = Starlette(routes=[Route("/guarded", guarded), Route("/endpoint", Endpoint)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        for path in ("/guarded", "/endpoint"):
            response = await client.get(path, headers={"Authorization": "Bearer whatever"})
            assert_error(
                response,
                401,
                "token_missing",
                "Authentication required.",
                MISSING.format(realm="jwtsess"),  # the default WebConfig
            )


async def test_guard_works_on_an_http_endpoint_method(web: WebApp) -> None:
    class Admin(HTTPEndpoint):
        @require_role("admin")
        async def get(self, request: Request) -> Response:
            return JSONResponse({"user": request.user.identity})

    web.app.router.routes.append(Route("/endpoint-admin", Admin))
    client = web.client()
    user = await web.login("alice", "user")
    root = await web.login("root", "admin")
    assert (
        await client.get("/endpoint-admin", headers=bearer(user.access_token))
    ).status_code == 403
    response = await client.get("/endpoint-admin", headers=bearer(root.access_token))
    assert response.json() == {"user": "root"}


async def test_decorator_keeps_the_endpoint_identity_and_needs_a_connection() -> None:
    async def endpoint(request: Request) -> Response:
        """Docs."""
        return Response()

    guarded = require_auth()(endpoint)
    assert guarded.__name__ == "endpoint"
    assert guarded.__doc__ == "Docs."
    with pytest.raises(TypeError, match="Request or WebSocket"):
        await guarded("not a request")  # type: ignore[arg-type]


def test_require_role_needs_a_role() -> None:
    with pytest.raises(ValueError, match="at least one role"):
        require_role()


def test_requirement_check_raises_the_auth_errors() -> None:
    scope: dict[str, Any] = {"type": "http", "headers": [], "user": None}
    request = Request(scope)
    with pytest.raises(TokenMissing):
        require_auth().check(request)
    with pytest.raises(TokenMissing):
        require_role("admin")(request)
    assert isinstance(require_role("admin"), Requirement)


async def test_auth_error_handler_reraises_other_exceptions() -> None:
    request = Request({"type": "http", "headers": []})
    with pytest.raises(RuntimeError, match="boom"):
        await auth_error_handler(request, RuntimeError("boom"))
    response = await auth_error_handler(request, InsufficientRole())
    assert response is not None
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == SCOPE.format(realm="jwtsess")


# -- FastAPI dependencies (with the jwtsess.testing plugin's kit) -----------------------------


def fastapi_app(kit: JWTSessKit, *, config: WebConfig) -> FastAPI:
    app = FastAPI()
    app.add_middleware(JWTAuthMiddleware, verifier=kit.verifier, config=config)
    add_exception_handlers(app)

    @app.get("/admin")
    async def admin(user: JWTUser = Depends(require_role("admin"))) -> dict[str, str]:  # noqa: B008
        return {"id": user.id, "role": user.role, "sid": user.session_id}

    @app.get("/me")
    async def me(user: Annotated[JWTUser, Depends(require_auth())]) -> dict[str, str]:
        return {"id": user.id}

    @app.get("/ops", dependencies=[Depends(require_role("admin", "ops"))])
    async def ops() -> dict[str, bool]:
        return {"ops": True}

    return app


@pytest.fixture
async def fastapi_client(jwtsess: JWTSessKit) -> AsyncIterator[httpx.AsyncClient]:
    app = fastapi_app(jwtsess, config=WebConfig(realm="fastapi"))
    async with asgi_client(app, base_url="https://testserver") as client:
        yield client


async def test_fastapi_require_role_dependency(
    jwtsess: JWTSessKit, fastapi_client: httpx.AsyncClient
) -> None:
    root = await jwtsess.login("root", "admin")
    response = await fastapi_client.get("/admin", headers=jwtsess.headers(token=root.access_token))
    assert response.status_code == 200, response.text
    assert response.json() == {"id": "root", "role": "admin", "sid": root.session_id}

    response = await fastapi_client.get("/admin", headers=jwtsess.headers("alice", "user"))
    assert_error(
        response,
        403,
        "insufficient_role",
        "The token's role does not allow this.",
        SCOPE.format(realm="fastapi"),
    )
    assert_forbidden(response)


async def test_fastapi_require_auth_dependency(
    jwtsess: JWTSessKit, fastapi_client: httpx.AsyncClient
) -> None:
    response = await fastapi_client.get("/me")
    assert_error(
        response, 401, "token_missing", "Authentication required.", MISSING.format(realm="fastapi")
    )
    assert_unauthorized(response, "token_missing")
    response = await fastapi_client.get("/me", headers=jwtsess.headers("alice"))
    assert response.status_code == 200, response.text
    assert response.json() == {"id": "alice"}


async def test_fastapi_route_level_dependency(
    jwtsess: JWTSessKit, fastapi_client: httpx.AsyncClient
) -> None:
    response = await fastapi_client.get("/ops", headers=jwtsess.headers("olga", "ops"))
    assert response.status_code == 200, response.text
    response = await fastapi_client.get("/ops", headers=jwtsess.headers("alice", "user"))
    assert_forbidden(response)


async def test_fastapi_bad_tokens_are_answered_by_the_middleware(
    jwtsess: JWTSessKit, fastapi_client: httpx.AsyncClient
) -> None:
    response = await fastapi_client.get("/me", headers=bearer("garbage"))
    assert_unauthorized(response, "token_malformed")
    assert response.headers["www-authenticate"] == (
        'Bearer realm="fastapi", error="invalid_token", '
        'error_description="The token is not a compact JWS of three segments."'
    )
    for token, code in (
        (jwtsess.token(expired=True), "token_expired"),
        (jwtsess.token(revoked=True), "token_revoked"),
        (jwtsess.token(not_yet_valid=True), "token_invalid"),
    ):
        response = await fastapi_client.get("/me", headers=jwtsess.headers(token=token))
        assert_unauthorized(response, code)
