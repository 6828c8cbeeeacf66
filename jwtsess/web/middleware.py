"""JWTAuthMiddleware: pure ASGI authentication for http and websocket scopes.

Per request it scans the headers once, verifies the token (usually a cache hit
plus the mirror's dictionary lookups: no I/O), and sets ``scope["user"]`` and
``scope["auth"]`` as Starlette's own AuthenticationMiddleware does, so
``request.user``, ``request.auth.scopes`` and ``starlette.authentication.requires``
work unchanged. No token means an anonymous user and the route decides; a bad
token in the Authorization header is answered here (RFC 6750 401, or 503 when
revocation state is stale; websockets are closed with 1008, or 1013 for 503).
A stale token in the access cookie instead makes the request anonymous and the
response deletes the cookie, so a browser is never locked out by a cookie its
scripts cannot see.
"""

from __future__ import annotations

import hmac
from typing import Any, Final

from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser
from starlette.datastructures import MutableHeaders
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..access import AccessClaims
from ..errors import AuthError, CSRFFailed, TokenMalformed, TokenRejected
from ..verifier import Verifier
from .config import WebConfig
from .responses import error_response

UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _RejectedCookie(Exception):
    """Internal: the access cookie carried a token that no longer verifies."""


SCOPE_KEY: Final = "jwtsess"
_AUTHORIZATION, _COOKIE, _CSRF = 0, 1, 2  # scope entry holding the WebConfig, for guards and routes


class JWTUser(BaseUser):
    """The authenticated user: id, role, session id and the verified claims."""

    __slots__ = ("claims",)

    def __init__(self, claims: AccessClaims) -> None:
        self.claims = claims

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.claims.sub

    @property
    def identity(self) -> str:
        return self.claims.sub

    @property
    def id(self) -> str:
        return self.claims.sub

    @property
    def role(self) -> str:
        return self.claims.role

    @property
    def session_id(self) -> str:
        return self.claims.sid


class JWTAuthMiddleware:
    """Authenticate every http and websocket request with an access token.

    :param app: the ASGI app to wrap.
    :param verifier: verifies tokens (with a ``RevocationMirror`` as its revocation check).
    :param config: transport options (cookies, CSRF, realm, role scopes).
    """

    def __init__(
        self, app: ASGIApp, *, verifier: Verifier, config: WebConfig | None = None
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.config = config or WebConfig()
        self._access_cookie = self.config.access_cookie_name
        self._csrf_cookie = self.config.csrf_cookie_name
        self._wanted = {
            b"authorization": _AUTHORIZATION,
            b"cookie": _COOKIE,
            self.config.csrf_header.lower().encode("latin-1"): _CSRF,
        }
        self._scopes: dict[str, AuthCredentials] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        scope[SCOPE_KEY] = self.config
        try:
            claims = self._authenticate(scope)
        except _RejectedCookie:
            # A stale cookie must not lock the browser out: the request goes on
            # anonymously and the response deletes the cookie.
            scope["user"] = UnauthenticatedUser()
            scope["auth"] = AuthCredentials()
            await self.app(scope, receive, self._clearing_cookie(send) if kind == "http" else send)
            return
        except AuthError as error:
            if kind == "http":
                await error_response(self.config, error)(scope, receive, send)
            else:
                code = 1013 if error.status == 503 else 1008
                await send({"type": "websocket.close", "code": code, "reason": error.code})
            return
        if claims is None:
            scope["user"] = UnauthenticatedUser()
            scope["auth"] = AuthCredentials()
        else:
            scope["user"] = JWTUser(claims)
            scope["auth"] = self._credentials(claims.role)
        await self.app(scope, receive, send)

    def _clearing_cookie(self, send: Send) -> Send:
        name = self._access_cookie
        expired = f"{name}=; Max-Age=0; Path=/; HttpOnly; SameSite=lax" + (
            "; Secure" if self.config.secure else ""
        )

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                # A route that sets a fresh access cookie (login, refresh) wins:
                # browsers apply Set-Cookie in order, so a later deletion would drop it.
                if not any(v.startswith(f"{name}=") for v in headers.getlist("set-cookie")):
                    headers.append("set-cookie", expired)
            await send(message)

        return wrapped

    def _credentials(self, role: str) -> AuthCredentials:
        credentials = self._scopes.get(role)
        if credentials is None:
            credentials = AuthCredentials(self.config.scopes_for(role))
            if len(self._scopes) < 1024:  # roles are few; never let tokens grow this
                self._scopes[role] = credentials
        return credentials

    def _authenticate(self, scope: Scope) -> AccessClaims | None:
        # One dict probe per header (this loop runs on every request).
        authorization: bytes | None = None
        cookie: bytes | None = None
        csrf: bytes | None = None
        wanted = self._wanted
        for name, value in scope["headers"]:
            kind = wanted.get(name)
            if kind is None:
                continue
            if kind == _AUTHORIZATION:
                if authorization is not None:
                    raise TokenMalformed("More than one Authorization header.")
                authorization = value
            elif kind == _COOKIE:
                cookie = value if cookie is None else cookie + b"; " + value
            else:
                csrf = value
        if authorization is not None:
            # The scheme is case-insensitive (RFC 7235); the token is parsed as bytes
            # and decoded once.
            if authorization[:7].lower() == b"bearer ":
                token = authorization[7:].strip()
                if not token or b" " in token:
                    raise TokenMalformed("The Authorization header is not 'Bearer <token>'.")
                return self.verifier.verify(token.decode("latin-1"))
            if authorization.strip().lower() == b"bearer":
                raise TokenMalformed("The Authorization header is not 'Bearer <token>'.")
            # Another scheme (Basic, ...) is not ours to judge: fall through.
        if cookie is None or not self.config.cookies:
            return None
        cookies = cookie_parser(cookie.decode("latin-1"))
        cookie_token = cookies.get(self._access_cookie)
        if not cookie_token:
            return None
        if scope["type"] == "websocket":
            self._check_origin(scope)
        try:
            claims = self.verifier.verify(cookie_token)
        except TokenRejected as error:
            # A stale cookie: the request goes on as anonymous and the cookie is deleted
            # (a 401 could never be cured by the page, which cannot touch an HttpOnly
            # cookie). A 503 (stale revocation state) and CSRF failures still answer.
            raise _RejectedCookie() from error
        # CSRF matters only once the cookie has actually authenticated the request.
        if scope["type"] == "http" and scope["method"] in UNSAFE_METHODS:
            expected = cookies.get(self._csrf_cookie, "").encode("latin-1")
            given = csrf if csrf is not None else b""
            # Bytes: compare_digest refuses non-ASCII str, and a cookie may hold anything.
            if not expected or not hmac.compare_digest(expected, given):
                raise CSRFFailed("A cookie-authenticated request needs the CSRF header.")
        return claims

    def _check_origin(self, scope: Scope) -> None:
        """Cookie-authenticated websockets must come from our own origin (no CSWSH)."""
        headers: dict[bytes, bytes] = dict(scope["headers"])
        origin = headers.get(b"origin", b"").decode("latin-1")
        host = headers.get(b"host", b"").decode("latin-1")
        http_scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
        allowed: set[Any] = {f"{http_scheme}://{host}", *self.config.allowed_origins}
        if not origin or origin not in allowed:
            raise CSRFFailed("A cookie-authenticated websocket must come from an allowed origin.")
