"""``require_auth`` and ``require_role``: Starlette endpoint decorators and FastAPI dependencies.

One object serves both uses::

    @require_role("admin")                 # Starlette endpoint decorator
    async def admin(request): ...

    @app.get("/admin")                     # FastAPI dependency
    async def admin(user: JWTUser = Depends(require_role("admin"))): ...

As a decorator, a failed check answers directly (401 ``token_missing`` with a
``WWW-Authenticate`` challenge, or 403 ``insufficient_role``; a websocket
handshake is refused as the middleware refuses it). As a dependency it raises
the ``AuthError`` and the middleware answers it (``auth_error_handler`` /
``add_exception_handlers(app)`` answer it the same way, if you prefer a handler).
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast, overload

from starlette.exceptions import HTTPException, WebSocketException
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketState

from ..errors import AuthError, InsufficientRole, TokenMissing
from .config import WebConfig
from .middleware import SCOPE_KEY, JWTUser
from .responses import NO_STORE, challenge, error_response
from .websocket import close_code

Endpoint = TypeVar("Endpoint", bound=Callable[..., Awaitable[Any]])
_POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD


def _config(conn: HTTPConnection) -> WebConfig:
    config = conn.scope.get(SCOPE_KEY)
    return config if isinstance(config, WebConfig) else WebConfig()


class _Signature:
    """``inspect.signature(requirement)`` is ``requirement.signature()``; the class's is its own."""

    def __get__(self, instance: Requirement | None, owner: type) -> inspect.Signature | None:
        return None if instance is None else instance.signature()


class Requirement:
    """An authentication (and optionally role) requirement; see the module docstring."""

    def __init__(self, roles: frozenset[str] | None = None, *, config: WebConfig | None = None):
        self.roles = roles
        self.config = config  # names the cookie in the OpenAPI security scheme (FastAPI)
        self._signature: inspect.Signature | None = None

    __signature__ = _Signature()

    def signature(self) -> inspect.Signature:
        """What FastAPI injects: the connection (so http and websocket routes both
        work) and, once FastAPI is imported, its OpenAPI security schemes (Bearer;
        the access cookie too in cookie mode), so Swagger's Authorize button works."""
        if self._signature is None:
            params = [inspect.Parameter("request", _POSITIONAL, annotation=HTTPConnection)]
            if "fastapi" in sys.modules:  # only FastAPI asks; never import it for Starlette
                from .fastapi import security_parameters

                params += security_parameters(self.config or WebConfig())
            self._signature = inspect.Signature(params, return_annotation=JWTUser)
        return self._signature

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
    def __call__(self, request: HTTPConnection, **schemes: object) -> JWTUser: ...

    @overload
    def __call__(self, request: Endpoint) -> Endpoint: ...

    def __call__(self, request: Any, **schemes: object) -> Any:
        if isinstance(request, HTTPConnection):
            try:
                return self.check(request)
            except AuthError as error:
                if SCOPE_KEY in request.scope:
                    raise  # the middleware answers it (jwtsess/web/middleware.py)
                raise _without_middleware(request, error) from None
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
                    await _refuse(conn, error)
                    return None
                return error_response(_config(conn), error)
            return await endpoint(*args, **kwargs)

        return guarded  # type: ignore[return-value]


_FLAVOURS: dict[type[AuthError], type[AuthError]] = {}


def _http_flavour(kind: type[AuthError]) -> type[AuthError]:
    """``kind`` that is also Starlette's ``HTTPException``: an app's ``AuthError``
    handler still wins (it comes first in the MRO), else the default handler answers."""
    flavour = _FLAVOURS.get(kind)
    if flavour is None:
        flavour = _FLAVOURS[kind] = type(kind.__name__, (kind, HTTPException), {})
    return flavour


def _without_middleware(conn: HTTPConnection, error: AuthError) -> Exception:
    """A refusal every Starlette/FastAPI app answers by default: never a 500."""
    if isinstance(conn, WebSocket):
        return WebSocketException(code=close_code(error), reason=error.code)
    flavour = _http_flavour(type(error))
    refusal = flavour.__new__(flavour)
    headers = dict(NO_STORE)
    www = challenge(WebConfig(), error)
    if www is not None:
        headers["WWW-Authenticate"] = www
    HTTPException.__init__(
        cast(HTTPException, refusal), status_code=error.status, detail=error.detail, headers=headers
    )
    return refusal


def require_auth(*, config: WebConfig | None = None) -> Requirement:
    """Any authenticated user.

    :param config: the app's ``WebConfig``; only names the access cookie in the
        OpenAPI document (the middleware's own config decides everything else).
    """
    return Requirement(config=config)


def require_role(*roles: str, config: WebConfig | None = None) -> Requirement:
    """An authenticated user whose role is one of ``roles`` (``config`` as in ``require_auth``)."""
    if not roles:
        raise ValueError("require_role needs at least one role")
    return Requirement(frozenset(roles), config=config)


async def _refuse(conn: WebSocket, error: AuthError) -> None:
    """Refuse like the middleware does (jwtsess/web/websocket.py)."""
    if SCOPE_KEY in conn.scope:
        raise error  # the middleware answers: denial response or close, one place decides
    if conn.client_state == WebSocketState.CONNECTING:
        await conn.close(code=close_code(error), reason=error.code)


async def auth_error_handler(request: HTTPConnection, exc: Exception) -> Response | None:
    """Starlette/FastAPI exception handler rendering an ``AuthError`` like the middleware.

    On a websocket it refuses the handshake as the middleware does and returns None.
    """
    if not isinstance(exc, AuthError):
        raise exc
    if isinstance(request, WebSocket):
        await _refuse(request, exc)
        return None
    return error_response(_config(request), exc)


def add_exception_handlers(app: Any) -> None:
    """Register ``auth_error_handler`` for ``AuthError`` on a Starlette or FastAPI app."""
    app.add_exception_handler(AuthError, auth_error_handler)
