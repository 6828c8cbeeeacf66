"""The auth routes: refresh, logout variants, session listing and status, the JWKS.

``auth_routes(issuer)`` returns a Starlette ``Router`` to mount at
``WebConfig.prefix`` (default ``/auth``); ``jwks_route(keyring)`` is the
``/.well-known/jwks.json`` route for the app's root. docs/http.md is the
contract, and tests/test_routes.py checks it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from ..dpop import DPoPVerifier
from ..errors import (
    AuthError,
    BadRequest,
    CSRFFailed,
    SessionNotFound,
    TokenMissing,
)
from ..issuer import Issuer
from ..keyring import KeyRing
from ..sessions import ClientMetadata, client_fingerprint
from .binding import dpop_binding
from .config import WebConfig
from .fallthrough import fall_through
from .middleware import JWTUser
from .responses import NO_STORE, clear_session_cookies, error_response, set_session_cookies

if TYPE_CHECKING:  # oauth.py imports this module
    from .oauth import OAuthEndpoints

Handler = Callable[[Request], Awaitable[Response]]


class _NoSuchSession(SessionNotFound):
    """``DELETE /sessions/{sid}`` of a session the caller does not have: a 404."""

    status = 404


def client_metadata(request: Request) -> ClientMetadata:
    """User agent and client address of a request (behind a proxy, run uvicorn
    with ``--proxy-headers`` so ``request.client`` is the real client)."""
    return ClientMetadata(
        user_agent=request.headers.get("user-agent"),
        ip=request.client.host if request.client else None,
    ).bounded()


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes, or ``BadRequest``.

    Every route that reads a body reads it through here. A client that hangs up
    before its body is complete gets a ``BadRequest`` it will never see (the
    server drops an answer to a closed connection): an ordinary answer for an
    ordinary event, instead of Starlette's ``ClientDisconnect`` escaping as a
    server error with a traceback.
    """
    declared = request.headers.get("content-length")
    if declared is not None and not (
        declared.isascii() and declared.isdigit() and len(declared) <= 12 and int(declared) <= limit
    ):
        raise BadRequest(f"The body is larger than {limit} bytes.")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise BadRequest(f"The body is larger than {limit} bytes.")
    except ClientDisconnect:
        raise BadRequest(
            "The client closed the connection before sending the whole body."
        ) from None
    return bytes(body)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object body, or ``BadRequest``: wrong type, too big, not JSON
    (lone surrogates included: I-JSON), or the client went away mid-body (see ``read_body``)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise BadRequest("Content-Type must be application/json.")
    body = await read_body(request, limit)
    try:
        value = json.loads(body)
        if b"\\u" in body:
            # I-JSON (RFC 7493 section 2.1): no lone surrogates ("\ud800"). Python keeps
            # them in str, and the application's first .encode() (a password hash)
            # would fail as a 500; raw surrogate bytes already fail the UTF-8 decode.
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError, RecursionError):
        raise BadRequest("The body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise BadRequest("The body must be a JSON object.")
    return value


def _user(request: Request) -> JWTUser:
    user = request.scope.get("user")
    if not isinstance(user, JWTUser):
        raise TokenMissing("Authentication required.")
    return user


class AuthRoutes:
    """The handlers behind ``auth_routes``; each turns an ``AuthError`` into its answer."""

    def __init__(
        self,
        issuer: Issuer,
        config: WebConfig,
        oauth: OAuthEndpoints | None = None,
        dpop: DPoPVerifier | None = None,
    ) -> None:
        if oauth is not None and oauth.config.prefix != config.prefix:
            raise ValueError("the OAuth endpoints must share the auth routes' WebConfig prefix")
        self.issuer = issuer
        self.config = config
        self.oauth = oauth
        self.dpop = dpop or DPoPVerifier()

    def _answer(self, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except AuthError as error:
                return error_response(self.config, error)

        endpoint.__name__ = handler.__name__
        return endpoint

    def router(self) -> Router:
        a = self._answer
        return Router(
            routes=[
                Route("/refresh", a(self.refresh), methods=["POST"]),
                # Next to /refresh: Starlette matches routes in order, and a refresh
                # through /token should not pay for the routes in between.
                *(self.oauth.routes() if self.oauth is not None else []),
                Route("/logout", a(self.logout), methods=["POST"]),
                Route("/logout-others", a(self.logout_others), methods=["POST"]),
                Route("/logout-all", a(self.logout_all), methods=["POST"]),
                Route("/sessions", a(self.list_sessions), methods=["GET"]),
                Route("/sessions/{sid}", a(self.revoke_session), methods=["DELETE"]),
                Route("/session", a(self.session_status), methods=["GET"]),
            ],
            default=fall_through,  # no route-order trap: jwtsess/web/fallthrough.py
        )

    async def refresh(self, request: Request) -> Response:
        config = self.config
        cookie_token = request.cookies.get(config.refresh_cookie_name) if config.cookies else None
        has_body = request.headers.get("content-length", "0") != "0" or (
            "transfer-encoding" in request.headers
        )
        if has_body or not cookie_token:
            body = await read_json_object(request, config.max_body_bytes)
            token = body.get("refresh_token")
            if not isinstance(token, str) or not token:
                raise BadRequest("The body must carry a 'refresh_token' string.")
            cookie_mode = False
        else:
            expected = request.cookies.get(config.csrf_cookie_name, "")
            given = request.headers.get(config.csrf_header, "")
            if not expected or not hmac.compare_digest(
                expected.encode("latin-1"), given.encode("latin-1")
            ):
                raise CSRFFailed("A cookie refresh needs the CSRF header.")
            token, cookie_mode = cookie_token, True

        meta = client_metadata(request)
        # Cookie mode: the CSRF cookie is a value only this browser holds; with the
        # user agent it is the binding a grace answer must match.
        # Header mode: a DPoP proof names the key (a bound session needs its own).
        # Cookie sessions are bearer sessions; a proof sent with one is not looked at.
        binding = (
            client_fingerprint(meta.user_agent, request.cookies.get(config.csrf_cookie_name))
            if cookie_mode
            else await dpop_binding(request, self.issuer, self.dpop)
        )
        try:
            pair = await self.issuer.refresh(token, meta, binding=binding)
        except AuthError as error:
            if not cookie_mode or error.status != 401:
                raise
            # A 401 refuses the refresh token itself (rejected, session ended, reused):
            # this refresh cookie can never work again, so drop the session's cookies.
            response = error_response(config, error)
            clear_session_cookies(response, config)
            return response
        if not cookie_mode:
            return JSONResponse(pair.as_json(), headers=NO_STORE)
        response = JSONResponse(
            {
                "token_type": pair.token_type,
                "expires_in": pair.expires_in,
                "session_id": pair.session_id,
            },
            headers=NO_STORE,
        )
        set_session_cookies(response, config, pair)
        return response

    def _done(self, body: dict[str, Any], *, clear: bool = False) -> Response:
        response = JSONResponse(body, headers=NO_STORE)
        if clear and self.config.cookies:
            clear_session_cookies(response, self.config)
        return response

    async def logout(self, request: Request) -> Response:
        user = _user(request)
        await self.issuer.logout(user.session_id, metadata=client_metadata(request))
        return self._done({"logged_out": True}, clear=True)

    async def logout_others(self, request: Request) -> Response:
        user = _user(request)
        ended = await self.issuer.logout_others(user.session_id, metadata=client_metadata(request))
        return self._done({"ended": len(ended)})

    async def logout_all(self, request: Request) -> Response:
        user = _user(request)
        ended = await self.issuer.logout_all(
            user.id, session_id=user.session_id, metadata=client_metadata(request)
        )
        return self._done({"ended": len(ended)}, clear=True)

    async def list_sessions(self, request: Request) -> Response:
        user = _user(request)
        sessions = await self.issuer.sessions(user.id)
        listed = [{**s.public(), "current": s.sid == user.session_id} for s in sessions]
        return JSONResponse({"sessions": listed}, headers=NO_STORE)

    async def revoke_session(self, request: Request) -> Response:
        user = _user(request)
        sid = request.path_params["sid"]
        if not await self.issuer.revoke_session(user.id, sid, metadata=client_metadata(request)):
            raise _NoSuchSession()
        return self._done({"revoked": True}, clear=sid == user.session_id)

    async def session_status(self, request: Request) -> Response:
        status = await self.issuer.session_status(_user(request).claims)
        return JSONResponse(status.as_json(), headers=NO_STORE)


def auth_routes(
    issuer: Issuer,
    *,
    config: WebConfig | None = None,
    oauth: OAuthEndpoints | None = None,
    dpop: DPoPVerifier | None = None,
) -> Router:
    """The auth ``Router``; mount it at ``config.prefix`` (default ``/auth``).

    :param oauth: also mount its OAuth 2.0 endpoints (``/token``, ``/revoke``,
        ``/introspect``); it must be built with the same ``config``.
    :param dpop: checks the DPoP proofs of refreshes (docs/dpop.md); default
        ``DPoPVerifier()``.
    """
    web = config or (oauth.config if oauth is not None else WebConfig())
    return AuthRoutes(issuer, web, oauth, dpop).router()


def jwks_route(keyring: KeyRing, *, path: str = "/.well-known/jwks.json") -> Route:
    """The JWKS document, cacheable for less than the key publish delay."""
    max_age = int(max(0, min(300, keyring.manifest.publish_delay / 2)))

    async def jwks(request: Request) -> Response:
        return JSONResponse(keyring.jwks(), headers={"Cache-Control": f"public, max-age={max_age}"})

    return Route(path, jwks, methods=["GET"])
