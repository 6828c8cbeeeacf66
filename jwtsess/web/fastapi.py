"""FastAPI integration: typed user dependencies, OpenAPI security schemes, an auth APIRouter.

Importable only where FastAPI is installed (``pip install 'jwtsess[fastapi]'``)::

    from jwtsess.web.fastapi import CurrentUser, OptionalUser, auth_router

    app = FastAPI()
    app.add_middleware(JWTAuthMiddleware, verifier=verifier, config=web)
    app.include_router(auth_router(issuer, config=web))   # /auth/refresh, /auth/logout, ...

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, str]: ...

The guards (``require_auth()``, ``require_role(...)``, and so ``CurrentUser``)
carry OpenAPI security schemes: HTTP Bearer (JWT), and the access cookie when
the ``WebConfig`` has cookies on, so Swagger UI shows its Authorize button and
sends the token. The schemes read nothing: the middleware has already
authenticated the request. A refused guard raises its ``AuthError`` and the
middleware answers it (401/403, RFC 6750), with or without exception handlers.
docs/fastapi.md is the guide.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Security
from fastapi.openapi.models import APIKey, APIKeyIn, HTTPBearer
from fastapi.openapi.models import SecurityBase as SchemeModel
from fastapi.security.base import SecurityBase
from pydantic import BaseModel, Field
from starlette.responses import Response

from ..dpop import DPoPVerifier
from ..issuer import Issuer
from .config import WebConfig
from .guards import Requirement, require_auth
from .middleware import JWTUser
from .oauth import OAuthEndpoints
from .routes import AuthRoutes

BEARER_SCHEME = "jwtsessBearer"
COOKIE_SCHEME = "jwtsessCookie"


class _Scheme(SecurityBase):
    """An OpenAPI security scheme that reads nothing (the middleware authenticates)."""

    def __init__(self, model: SchemeModel, scheme_name: str) -> None:
        self.model = model
        self.scheme_name = scheme_name

    async def __call__(self) -> None:
        return None


@cache
def _schemes(cookie_name: str | None) -> tuple[_Scheme, ...]:
    bearer = _Scheme(
        HTTPBearer(
            bearerFormat="JWT",
            description="An access token from the login route: `Authorization: Bearer <token>`.",
        ),
        BEARER_SCHEME,
    )
    if cookie_name is None:
        return (bearer,)
    cookie = _Scheme(
        APIKey.model_validate(
            {
                "in": APIKeyIn.cookie,
                "name": cookie_name,
                "description": "The HttpOnly access cookie set by a cookie-mode login "
                "(unsafe methods also need the CSRF header).",
            }
        ),
        COOKIE_SCHEME,
    )
    return (bearer, cookie)


def security_parameters(config: WebConfig) -> list[inspect.Parameter]:
    """Keyword parameters that make FastAPI list jwtsess's schemes for a dependency."""
    schemes = _schemes(config.access_cookie_name if config.cookies else None)
    return [
        inspect.Parameter(
            f"_{scheme.scheme_name}",
            inspect.Parameter.KEYWORD_ONLY,
            default=Security(scheme),
            annotation=None,
        )
        for scheme in schemes
    ]


class _OptionalUser(Requirement):
    """The user if authenticated, else None (never refuses)."""

    def __call__(self, request: Any, **schemes: object) -> Any:
        user = request.scope.get("user")
        return user if isinstance(user, JWTUser) else None

    def signature(self) -> inspect.Signature:
        return super().signature().replace(return_annotation=JWTUser | None)


def optional_user(*, config: WebConfig | None = None) -> Requirement:
    """A dependency giving the ``JWTUser`` or None (anonymous); it never refuses."""
    return _OptionalUser(config=config)


#: The dependencies behind the aliases (keys for ``app.dependency_overrides``).
current_user = require_auth()
current_user_or_none = optional_user()
#: ``user: CurrentUser``: the authenticated user, or 401 ``token_missing``.
CurrentUser = Annotated[JWTUser, Depends(current_user)]
#: ``user: OptionalUser``: the authenticated user, or None.
OptionalUser = Annotated[JWTUser | None, Depends(current_user_or_none)]


# -- the auth routes as an APIRouter (OpenAPI request and response schemas) ------------


class ErrorBody(BaseModel):
    error: str = Field(description="A stable code: docs/errors.md.")
    detail: str


class RefreshBody(BaseModel):
    refresh_token: str | None = Field(
        default=None, description="Omit it in cookie mode (then send the CSRF header)."
    )


class TokenPairBody(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int
    session_id: str


class LoggedOutBody(BaseModel):
    logged_out: bool


class EndedBody(BaseModel):
    ended: int = Field(description="How many sessions were ended.")


class RevokedBody(BaseModel):
    revoked: bool


class SessionBody(BaseModel):
    session_id: str
    created_at: float
    last_used_at: float
    expires_at: float
    user_agent: str | None
    ip: str | None
    current: bool


class SessionsBody(BaseModel):
    sessions: list[SessionBody]


class SessionStatusBody(BaseModel):
    user_id: str
    role: str
    session_id: str
    claims: dict[str, Any]
    expires_at: int
    remaining: int
    session_expires_at: float | None
    session_remaining: int


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 429, 503)
}


_OAUTH_FORMS: dict[str, tuple[str, dict[str, Any]]] = {
    "/token": (
        "OAuth 2.0 refresh (RFC 6749 section 6)",
        {
            "grant_type": {"type": "string", "enum": ["refresh_token"]},
            "refresh_token": {"type": "string"},
            "client_id": {"type": "string"},
            "scope": {"type": "string"},
        },
    ),
    "/revoke": (
        "OAuth 2.0 token revocation (RFC 7009)",
        {"token": {"type": "string"}, "token_type_hint": {"type": "string"}},
    ),
    "/introspect": (
        "OAuth 2.0 token introspection (RFC 7662)",
        {"token": {"type": "string"}, "token_type_hint": {"type": "string"}},
    ),
}


def _form_schema(fields: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "properties": fields}
    return {"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": schema}}}}


def auth_router(
    issuer: Issuer,
    *,
    config: WebConfig | None = None,
    oauth: OAuthEndpoints | None = None,
    tags: list[str] | None = None,
    dpop: DPoPVerifier | None = None,
) -> APIRouter:
    """The auth routes (docs/http.md) as a FastAPI ``APIRouter`` at ``config.prefix``.

    The same handlers as ``auth_routes``, so the same answers; here each route
    is plain (no ``Mount``), so an app's own ``/auth/login`` may come before or
    after ``include_router``, and the OpenAPI document lists every route with
    its schemas.

    :param oauth: also the OAuth 2.0 endpoints (``/token``, ``/revoke``,
        ``/introspect``), as ``auth_routes(..., oauth=)`` mounts them.
    :param dpop: checks the DPoP proofs of refreshes, as in ``auth_routes``.
    """
    web = config or (oauth.config if oauth is not None else WebConfig())
    handlers = AuthRoutes(issuer, web, oauth, dpop)
    answer = handlers._answer
    router = APIRouter(prefix=web.prefix, tags=list(tags or ["auth"]), responses=_ERRORS)
    signed_in = [Depends(require_auth(config=web))]

    def add(
        path: str,
        method: str,
        handler: Any,
        model: type[BaseModel],
        summary: str,
        *,
        authenticated: bool = True,
        body: type[BaseModel] | None = None,
    ) -> None:
        answered = answer(handler)

        async def endpoint(request: Request) -> Response:
            return await answered(request)

        endpoint.__name__ = handler.__name__
        extra = None
        if body is not None:  # documented here; the handler reads and checks the body itself
            schema = body.model_json_schema()
            extra = {
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": schema}},
                }
            }
        router.add_api_route(
            path,
            endpoint,
            methods=[method],
            summary=summary,
            response_model=None,
            responses={200: {"model": model}},
            dependencies=signed_in if authenticated else None,
            openapi_extra=extra,
        )

    add("/refresh", "POST", handlers.refresh, TokenPairBody,
        "Rotate a refresh token", authenticated=False, body=RefreshBody)  # fmt: skip
    add("/logout", "POST", handlers.logout, LoggedOutBody, "End this session")
    add("/logout-others", "POST", handlers.logout_others, EndedBody, "End my other sessions")
    add("/logout-all", "POST", handlers.logout_all, EndedBody, "End all my sessions")
    add("/sessions", "GET", handlers.list_sessions, SessionsBody, "List my sessions")
    add("/sessions/{sid}", "DELETE", handlers.revoke_session, RevokedBody, "End one session")
    add("/session", "GET", handlers.session_status, SessionStatusBody, "This session's expiry")
    for route in oauth.routes() if oauth is not None else ():
        summary, fields = _OAUTH_FORMS[route.path]
        router.add_api_route(
            route.path,
            _forwarding(route.endpoint),
            methods=["POST"],
            summary=summary,
            response_model=None,
            openapi_extra=_form_schema(fields),
        )
    return router


def _forwarding(handler: Any) -> Any:
    """An endpoint FastAPI sees as taking only the request (the handler reads the form)."""

    async def endpoint(request: Request) -> Response:
        response: Response = await handler(request)
        return response

    endpoint.__name__ = getattr(handler, "__name__", "oauth_endpoint")
    return endpoint
