"""``require_auth`` and ``require_role``: Starlette endpoint decorators and FastAPI dependencies.

One object serves both uses::

    @require_role("admin")                 # Starlette endpoint decorator
    async def admin(request): ...

    @app.get("/admin")                     # FastAPI dependency
    async def admin(user: JWTUser = Depends(require_role("admin"))): ...

As a decorator, a failed check answers directly (401 ``token_missing`` with a
``WWW-Authenticate`` challenge, or 403 ``insufficient_role``; websockets are
closed with 1008). As a dependency it raises the ``AuthError``; register
``auth_error_handler`` (``add_exception_handlers(app)``) to answer it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from ..errors import AuthError, InsufficientRole, TokenMissing
from .config import WebConfig
from .middleware import SCOPE_KEY, JWTUser
from .responses import error_response

Endpoint = TypeVar("Endpoint", bound=Callable[..., Awaitable[Any]])


def _config(conn: HTTPConnection) -> WebConfig:
    config = conn.scope.get(SCOPE_KEY)
    return config if isinstance(config, WebConfig) else WebConfig()


class Requirement:
    """An authentication (and optionally role) requirement; see the module docstring."""

    # FastAPI reads this signature to know what to inject: the connection
    # (HTTPConnection, so http and websocket routes both work).
    __signature__ = inspect.Signature(
        [
            inspect.Parameter(
                "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=HTTPConnection
            )
        ],
        return_annotation=JWTUser,
    )

    def __init__(self, roles: frozenset[str] | None = None) -> None:
        self.roles = roles

    def check(self, conn: HTTPConnection) -> JWTUser:
        """The authenticated user, or raise ``TokenMissing`` / ``InsufficientRole``."""
        user = conn.scope.get("user")
        if not isinstance(user, JWTUser):
            raise TokenMissing("Authentication required.")
        if self.roles is not None and user.role not in self.roles:
            raise InsufficientRole()
        return user

    # One parameter, named ``request`` because FastAPI passes dependencies by keyword.
    @overload
    def __call__(self, request: HTTPConnection) -> JWTUser: ...

    @overload
    def __call__(self, request: Endpoint) -> Endpoint: ...

    def __call__(self, request: Any) -> Any:
        if isinstance(request, HTTPConnection):
            return self.check(request)
        return self._decorate(request)

    def _decorate(self, endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            # Functions take the connection first, methods second: look there before scanning.
            if args and isinstance(args[0], HTTPConnection):
                conn: HTTPConnection | None = args[0]
            else:
                conn = next(
                    (a for a in (*args, *kwargs.values()) if isinstance(a, HTTPConnection)), None
                )
            if conn is None:
                raise TypeError("a guarded endpoint must take a Request or WebSocket")
            try:
                self.check(conn)
            except AuthError as error:
                if isinstance(conn, WebSocket):
                    await conn.close(code=1008, reason=error.code)
                    return None
                return error_response(_config(conn), error)
            return await endpoint(*args, **kwargs)

        return guarded  # type: ignore[return-value]


def require_auth() -> Requirement:
    """Any authenticated user."""
    return Requirement()


def require_role(*roles: str) -> Requirement:
    """An authenticated user whose role is one of ``roles``."""
    if not roles:
        raise ValueError("require_role needs at least one role")
    return Requirement(frozenset(roles))


async def auth_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette/FastAPI exception handler rendering an ``AuthError`` like the middleware."""
    if not isinstance(exc, AuthError):
        raise exc
    return error_response(_config(request), exc)


def add_exception_handlers(app: Any) -> None:
    """Register ``auth_error_handler`` for ``AuthError`` on a Starlette or FastAPI app."""
    app.add_exception_handler(AuthError, auth_error_handler)
