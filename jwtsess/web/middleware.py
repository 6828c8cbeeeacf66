"""JWTAuthMiddleware: pure ASGI authentication for http and websocket scopes.

Per request it scans the headers once, verifies the token (usually a cache hit
plus the mirror's dictionary lookups: no I/O), and sets ``scope["user"]`` and
``scope["auth"]`` as Starlette's own AuthenticationMiddleware does, so
``request.user``, ``request.auth.scopes`` and ``starlette.authentication.requires``
work unchanged. No token means an anonymous user and the route decides; a bad
token in the Authorization header is answered here (RFC 6750 401, or 503 when
revocation state is stale; a websocket handshake is refused the same way:
jwtsess/web/websocket.py). An ``AuthError`` raised by the app (a guard used as a
FastAPI dependency) is answered here too. Accepted websockets are closed when
their token is revoked or expires (jwtsess/web/live.py).
A stale token in the access cookie instead makes the request anonymous and the
response deletes the cookie, so a browser is never locked out by a cookie its
scripts cannot see.

DPoP (RFC 9449): ``Authorization: DPoP <token>`` with a ``DPoP`` proof header is
checked by the ``DPoPVerifier`` (proof for this method and URI, signed by the
key in the token's ``cnf.jkt``, ``ath`` of this token, never seen before in
this process); its errors carry a DPoP challenge. A bound token that comes as
``Bearer`` or in the cookie is refused (``dpop_required``): on the bearer path
that check is one attribute read on the cached claims.
"""

from __future__ import annotations

import hmac
from typing import Any, Final

from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser
from starlette.datastructures import MutableHeaders
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..access import AccessClaims
from ..dpop import DPoPVerifier
from ..errors import (
    AuthError,
    CSRFFailed,
    DPoPProofInvalid,
    DPoPRequired,
    TokenInvalid,
    TokenMalformed,
    TokenRejected,
    UnknownKeyId,
)
from ..mirror import RevocationMirror
from ..verifier import Verifier
from .config import WebConfig
from .live import LiveConnections
from .responses import error_response
from .websocket import refuse_websocket, serve_websocket

UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _RejectedCookie(Exception):
    """Internal: the access cookie carried a token that no longer verifies."""


class _DPoPRejected(Exception):
    """Internal: a request with the DPoP scheme failed; answer with a DPoP challenge."""

    def __init__(self, error: AuthError) -> None:
        self.error = error


SCOPE_KEY: Final = "jwtsess"  # scope entry holding the WebConfig, for guards and routes
_AUTHORIZATION, _COOKIE, _CSRF, _DPOP = 0, 1, 2, 3  # the headers the scan looks for


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
    :param dpop: checks DPoP proofs (default: ``DPoPVerifier()``, no nonces, the
        request's own scheme and host as the origin of ``htu``).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: Verifier,
        config: WebConfig | None = None,
        dpop: DPoPVerifier | None = None,
        live: LiveConnections | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.dpop = dpop or DPoPVerifier()
        self.config = config or WebConfig()
        self._access_cookie = self.config.access_cookie_name
        self._csrf_cookie = self.config.csrf_cookie_name
        self._wanted = {
            b"authorization": _AUTHORIZATION,
            b"cookie": _COOKIE,
            self.config.csrf_header.lower().encode("latin-1"): _CSRF,
            b"dpop": _DPOP,
        }
        self._scopes: dict[str, AuthCredentials] = {}
        # Open websockets are closed when their token is revoked (the mirror's feed
        # drives it) or expires. Without a mirror only expiry can close them.
        self.live = live if live is not None else LiveConnections(clock=verifier.clock)
        if isinstance(verifier.revocation, RevocationMirror):
            self.live.attach(verifier.revocation)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        scope[SCOPE_KEY] = self.config
        try:
            try:
                claims = self._authenticate(scope)
            except (UnknownKeyId, _RejectedCookie, _DPoPRejected) as error:
                # A key the source does not know yet (an immediate rotation at the
                # issuer): wait, bounded, for one refetch, then try once more. (The
                # access token is verified before a DPoP proof is looked at.)
                if not await self.verifier.wait_for_key(error):
                    raise
                claims = self._authenticate(scope)
        except _RejectedCookie:
            # A stale cookie must not lock the browser out: the request goes on
            # anonymously and the response deletes the cookie.
            scope["user"] = UnauthenticatedUser()
            scope["auth"] = AuthCredentials()
            claims = None
            if kind == "http":
                send = self._clearing_cookie(send)
        except _DPoPRejected as rejected:
            await self._refuse(scope, receive, send, rejected.error, self.dpop.algs)
            return
        except AuthError as error:
            await self._refuse(scope, receive, send, error, None)
            return
        else:
            if claims is None:
                scope["user"] = UnauthenticatedUser()
                scope["auth"] = AuthCredentials()
            else:
                scope["user"] = JWTUser(claims)
                scope["auth"] = self._credentials(claims.role)
        if kind == "websocket":
            await serve_websocket(
                self.app, scope, receive, send, config=self.config, claims=claims,
                live=self.live, revocation=self.verifier.revocation,
            )  # fmt: skip
            return
        try:
            await self.app(scope, receive, send)
        except AuthError as error:
            # A guard used as a dependency (FastAPI) raises; answered here, an app
            # without exception handlers still gives the 401/403, never a 500.
            await self._refuse(scope, receive, send, error, None)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, error: AuthError, algs: str | None
    ) -> None:
        if scope["type"] == "http":
            await error_response(self.config, error, dpop_algs=algs)(scope, receive, send)
        else:
            await refuse_websocket(self.config, error, scope, receive, send, dpop_algs=algs)

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
        proof: bytes | None = None
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
            elif kind == _CSRF:
                csrf = value
            elif proof is None:
                proof = value
            else:
                proof = b""  # two proofs: refused below (RFC 9449 section 4.3, check 1)
        if authorization is not None:
            # The scheme is case-insensitive (RFC 7235); the token is parsed as bytes
            # and decoded once.
            if authorization[:7].lower() == b"bearer ":
                token = authorization[7:].strip()
                if not token or b" " in token:
                    raise TokenMalformed("The Authorization header is not 'Bearer <token>'.")
                claims = self.verifier.verify(token.decode("latin-1"))
                if claims.jkt is not None:
                    raise DPoPRequired()
                return claims
            if authorization[:5].lower() == b"dpop ":
                try:
                    return self._dpop(scope, authorization[5:].strip(), proof)
                except AuthError as error:
                    raise _DPoPRejected(error) from error
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
            if claims.jkt is not None:
                raise DPoPRequired()  # a bound token in a cookie is no better than as Bearer
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

    def _dpop(self, scope: Scope, token: bytes, proof: bytes | None) -> AccessClaims:
        """``Authorization: DPoP <token>`` with its proof (RFC 9449 section 7)."""
        if not token or b" " in token:
            raise TokenMalformed("The Authorization header is not 'DPoP <token>'.")
        if proof is None:
            raise DPoPProofInvalid("A DPoP-bound token needs a DPoP proof header.")
        if not proof:
            raise DPoPProofInvalid("The request has more than one DPoP header.")
        access_token = token.decode("latin-1")
        claims = self.verifier.verify(access_token)
        if claims.jkt is None:
            raise TokenInvalid("The token is not DPoP-bound; send it as Bearer.")
        self.dpop.verify_resource_request(
            proof.decode("latin-1"), scope, access_token=access_token, jkt=claims.jkt
        )
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
