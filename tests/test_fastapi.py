"""jwtsess.web.fastapi: security schemes, typed users, the auth APIRouter, no 500, no trap."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, WebSocket
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from examples.fastapi_app import build_app
from jwtsess.testing import (
    JWTSessKit,
    assert_forbidden,
    assert_unauthorized,
    refresh_race,
    websocket_refusal,
)
from jwtsess.web import (
    JWTAuthMiddleware,
    JWTUser,
    WebConfig,
    add_exception_handlers,
    auth_routes,
    require_role,
)
from jwtsess.web.fastapi import CurrentUser, OptionalUser, current_user


def bare_app(kit: JWTSessKit, *, config: WebConfig | None = None) -> FastAPI:
    """No exception handlers at all: the middleware alone must answer the guards."""
    app = FastAPI()
    app.add_middleware(JWTAuthMiddleware, verifier=kit.verifier, config=config or kit.config)

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, str]:
        return {"id": user.id}

    @app.get("/maybe")
    async def maybe(user: OptionalUser) -> dict[str, Any]:
        return {"id": user.id if user else None}

    @app.get("/admin", dependencies=[Depends(require_role("admin"))])
    async def admin() -> dict[str, bool]:
        return {"admin": True}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, user: CurrentUser) -> None:
        await websocket.accept()
        await websocket.send_text(user.id)
        await websocket.close()

    return app


def test_guards_answer_401_and_403_without_exception_handlers(jwtsess: JWTSessKit) -> None:
    client = TestClient(bare_app(jwtsess), raise_server_exceptions=True)
    assert_unauthorized(client.get("/me"), "token_missing")
    assert_forbidden(client.get("/admin", headers=jwtsess.headers(role="user")))
    assert_unauthorized(client.get("/admin"), "token_missing")
    assert client.get("/admin", headers=jwtsess.headers(role="admin")).json() == {"admin": True}
    assert client.get("/me", headers=jwtsess.headers("bob")).json() == {"id": "bob"}


def test_optional_user(jwtsess: JWTSessKit) -> None:
    client = TestClient(bare_app(jwtsess))
    assert client.get("/maybe").json() == {"id": None}
    assert client.get("/maybe", headers=jwtsess.headers("bob")).json() == {"id": "bob"}


def test_websocket_guard_refuses_like_the_middleware(jwtsess: JWTSessKit) -> None:
    client = TestClient(bare_app(jwtsess))
    # TestClient offers the denial-response extension: 401 + the JSON body, as http.
    anonymous = websocket_refusal(client, "/ws")
    assert (anonymous.status, anonymous.code) == (401, "token_missing")
    expired = websocket_refusal(client, "/ws", headers=jwtsess.headers(expired=True))
    assert (expired.status, expired.code) == (401, "token_expired")
    with client.websocket_connect("/ws", headers=jwtsess.headers("bob")) as ws:
        assert ws.receive_text() == "bob"


def test_openapi_lists_the_schemes_for_swagger(jwtsess: JWTSessKit) -> None:
    app = build_app(jwtsess.issuer, jwtsess.verifier, jwtsess.keyring, jwtsess.config)
    spec = TestClient(app).get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["jwtsessBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["jwtsessBearer"]["description"],
    }
    assert schemes["jwtsessCookie"]["in"] == "cookie"
    assert schemes["jwtsessCookie"]["name"] == jwtsess.config.access_cookie_name
    either: list[dict[str, list[str]]] = [{"jwtsessBearer": []}, {"jwtsessCookie": []}]
    assert spec["paths"]["/me"]["get"]["security"] == either
    assert spec["paths"]["/admin"]["get"]["security"] == either
    assert "security" not in spec["paths"]["/auth/login"]["post"]
    # The auth routes are in the document, with request and response schemas.
    refresh = spec["paths"]["/auth/refresh"]["post"]
    assert "refresh_token" in str(refresh["requestBody"])
    assert refresh["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "TokenPairBody"
    )
    assert "ErrorBody" in str(refresh["responses"]["401"])
    assert spec["paths"]["/auth/logout"]["post"]["security"] == either
    for path in ("/auth/logout-all", "/auth/sessions", "/auth/sessions/{sid}", "/auth/session"):
        assert path in spec["paths"]
    token = spec["paths"]["/auth/token"]["post"]
    assert "application/x-www-form-urlencoded" in token["requestBody"]["content"]
    assert "/auth/revoke" in spec["paths"]


def test_cookie_scheme_only_in_cookie_mode(jwtsess: JWTSessKit) -> None:
    app = bare_app(jwtsess, config=WebConfig(cookies=False))

    @app.get("/header-only")
    async def header_only(
        user: JWTUser = Depends(require_role("admin", config=WebConfig(cookies=False))),  # noqa: B008
    ) -> dict[str, str]:
        return {"id": user.id}

    spec = TestClient(app).get("/openapi.json").json()
    assert spec["paths"]["/header-only"]["get"]["security"] == [{"jwtsessBearer": []}]


def test_auth_router_behaves_as_the_starlette_router(jwtsess: JWTSessKit) -> None:
    app = build_app(jwtsess.issuer, jwtsess.verifier, jwtsess.keyring, jwtsess.config)
    client = TestClient(app)
    pair = jwtsess.run(jwtsess.login("alice", "admin"))
    response = client.post("/auth/refresh", json={"refresh_token": pair.refresh_token})
    assert response.status_code == 200, response.text
    fresh = response.json()["access_token"]
    assert client.get("/auth/sessions", headers=jwtsess.headers(token=fresh)).json()["sessions"]
    assert_unauthorized(client.post("/auth/logout"), "token_missing")
    assert client.post("/auth/logout", headers=jwtsess.headers(token=fresh)).json() == {
        "logged_out": True
    }
    assert_unauthorized(client.get("/me", headers=jwtsess.headers(token=fresh)), "token_revoked")
    # The OAuth 2.0 token endpoint, through the same APIRouter.
    pair = jwtsess.run(jwtsess.login("alice", "admin"))
    form = {"grant_type": "refresh_token", "refresh_token": pair.refresh_token}
    token = client.post("/auth/token", data=form)
    assert token.status_code == 200, token.text
    assert token.json()["token_type"] == "Bearer"
    metadata = client.get("/.well-known/oauth-authorization-server").json()
    assert metadata["token_endpoint"].endswith("/auth/token")
    bad = client.post("/auth/refresh", content=b"[]", headers={"content-type": "application/json"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "bad_request"


async def test_two_tabs_refreshing_at_once_get_one_successor(jwtsess: JWTSessKit) -> None:
    from jwtsess.testing import asgi_client

    app = build_app(jwtsess.issuer, jwtsess.verifier, jwtsess.keyring, jwtsess.config)
    pair = await jwtsess.login()
    async with asgi_client(app) as client:
        answers = await refresh_race(client, pair.refresh_token)
    assert [a.status_code for a in answers] == [200, 200]
    assert len({a.json()["session_id"] for a in answers}) == 1


def test_dependency_overrides_work_with_current_user(jwtsess: JWTSessKit) -> None:
    app = bare_app(jwtsess)
    app.dependency_overrides[current_user] = lambda: jwtsess.user("root", "admin")
    assert TestClient(app).get("/me").json() == {"id": "root"}  # no token needed


def test_mount_before_the_login_route_is_no_trap(jwtsess: JWTSessKit) -> None:
    """``app.mount("/auth", ...)`` first, ``@app.post("/auth/login")`` after: login works."""
    app = FastAPI()
    app.add_middleware(JWTAuthMiddleware, verifier=jwtsess.verifier, config=jwtsess.config)
    app.mount("/auth", auth_routes(jwtsess.issuer, config=jwtsess.config))

    @app.post("/auth/login")
    async def login() -> dict[str, str]:
        return {"logged_in": "yes"}

    client = TestClient(app)
    assert client.post("/auth/login").json() == {"logged_in": "yes"}
    assert client.get("/auth/login").status_code == 405  # the app's route decides
    assert client.get("/auth/nothing-here").status_code == 404
    assert client.get("/auth/session", headers=jwtsess.headers()).status_code in (200, 401)


def test_starlette_mount_before_the_login_route_is_no_trap(jwtsess: JWTSessKit) -> None:
    async def login(request: Request) -> Response:
        return JSONResponse({"logged_in": "yes"})

    app = Starlette(
        routes=[
            Mount("/auth", app=auth_routes(jwtsess.issuer, config=jwtsess.config)),
            Route("/auth/login", login, methods=["POST"]),
        ],
        middleware=[Middleware(JWTAuthMiddleware, verifier=jwtsess.verifier)],
    )
    client = TestClient(app)
    assert client.post("/auth/login").json() == {"logged_in": "yes"}
    assert client.post("/auth/nothing").status_code == 404


def test_guards_without_the_middleware_never_answer_500(jwtsess: JWTSessKit) -> None:
    """A misconfigured app (no middleware, no handlers) still refuses cleanly."""

    def app(*, handlers: bool) -> FastAPI:
        built = FastAPI()
        if handlers:
            add_exception_handlers(built)

        @built.get("/me")
        async def me(user: CurrentUser) -> dict[str, str]:
            return {"id": user.id}

        @built.websocket("/ws")
        async def ws(websocket: WebSocket, user: CurrentUser) -> None:
            await websocket.accept()

        return built

    client = TestClient(app(handlers=False), raise_server_exceptions=False)
    response = client.get("/me", headers=jwtsess.headers())
    assert response.status_code == 401  # FastAPI's own HTTPException handler answered
    assert response.headers["www-authenticate"] == 'Bearer realm="jwtsess"'
    assert response.json() == {"detail": "Authentication required."}
    refused = websocket_refusal(client, "/ws")
    assert (refused.close_code, refused.code) == (1008, "token_missing")
    # With jwtsess's handler (it comes first): the full RFC 6750 answer.
    with_handlers = TestClient(app(handlers=True), raise_server_exceptions=False)
    assert_unauthorized(with_handlers.get("/me"), "token_missing")
