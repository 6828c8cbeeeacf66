"""OAuth 2.0 endpoints: token (RFC 6749 §5-6), revocation (RFC 7009),
introspection (RFC 7662) and authorization-server metadata (RFC 8414).

``OAuthEndpoints`` is mounted through the auth router and publishes its own
metadata, so the document lists exactly what is served::

    oauth = OAuthEndpoints(issuer, verifier, config=web)
    Mount("/auth", app=auth_routes(issuer, config=web, oauth=oauth))  # + /token, /revoke, ...
    oauth.metadata_route()  # GET /.well-known/oauth-authorization-server

The token endpoint refreshes through ``Issuer.refresh``, the path ``/auth/refresh``
takes too: the same reuse detection, grace, rotation and rate limits. None of
these endpoints reads a cookie (docs/oauth-clients.md, "CSRF"). docs/http.md
is the contract.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote_plus, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..access import AccessClaims
from ..dpop import DPoPVerifier
from ..errors import AuthError, DPoPProofInvalid, TokenExpired, TokenRevoked
from ..issuer import Issuer
from ..refresh_token import REFRESH_TOKEN_PREFIX
from ..sessions import bound_jkt, key_binding
from ..verifier import Verifier
from .binding import dpop_binding
from .config import WebConfig
from .middleware import JWTUser
from .oauth_wire import (
    OAuthError,
    basic_challenge,
    from_auth_error,
    oauth_response,
    read_form,
    require,
)
from .responses import NO_STORE
from .routes import client_metadata

Handler = Callable[[Request], Awaitable[Response]]
GRANT: Final = "refresh_token"
_SCOPE_CHARS: Final = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}
MAX_CLIENT_ID: Final = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class OAuthConfig:
    """What the OAuth endpoints publish and who may introspect.

    :param base_url: scheme and authority (and path, if any) the endpoints are
        reached at, for the metadata document; default: the token settings'
        ``issuer``. It must have no query or fragment (RFC 8414 §2).
    :param introspection_clients: ``client_id -> secret`` allowed to call
        ``/introspect`` with HTTP Basic (``client_secret_basic``).
    :param introspection_role: a Bearer access token (in the ``Authorization``
        header) whose scopes include this role may call ``/introspect``.
        Without clients and role the endpoint is not mounted.
    :param introspection_limit: introspections per caller in each
        ``introspection_window`` seconds (answered 429 beyond).
    :param jwks_path: where ``jwks_route`` is mounted (published as ``jwks_uri``).
    """

    base_url: str | None = None
    introspection_clients: Mapping[str, str] = field(default_factory=dict)
    introspection_role: str | None = None
    introspection_limit: int = 600
    introspection_window: float = 60.0
    jwks_path: str = "/.well-known/jwks.json"

    def __post_init__(self) -> None:
        for client_id, secret in self.introspection_clients.items():
            if not client_id or ":" in client_id or len(secret) < 16:
                raise ValueError("introspection clients need an id without ':' and a secret")
        if self.introspection_limit < 1 or self.introspection_window <= 0:
            raise ValueError("introspection_limit and introspection_window must be positive")


def _check_base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError("the OAuth base URL must be http(s)://host[/path], no query or fragment")
    return url.rstrip("/")


def _scope_set(value: str) -> set[str]:
    """RFC 6749 §3.3: space-delimited scope tokens of NQCHAR."""
    tokens = value.split(" ")
    if any(not token or not set(token) <= _SCOPE_CHARS for token in tokens):
        raise OAuthError("invalid_scope", "The scope is malformed.")
    return set(tokens)


class OAuthEndpoints:
    """The OAuth 2.0 endpoints of one issuer, and their metadata.

    :param issuer: refreshes and revokes sessions.
    :param verifier: checks access tokens presented for revocation or introspection.
    :param config: the ``WebConfig`` of the auth routes (prefix, limits, realm).
    :param options: publishing and introspection settings.
    :param dpop: checks DPoP proofs at the token endpoint (RFC 9449 section 5): a
        bound session refreshes only with a proof from its key.
    :raises ValueError: a bad ``base_url`` or introspection settings.
    """

    def __init__(
        self,
        issuer: Issuer,
        verifier: Verifier,
        *,
        config: WebConfig | None = None,
        options: OAuthConfig | None = None,
        dpop: DPoPVerifier | None = None,
    ) -> None:
        self.issuer = issuer
        self.verifier = verifier
        self.dpop = dpop or DPoPVerifier()
        self.config = config or WebConfig()
        self.options = options or OAuthConfig()
        self.base_url = _check_base_url(self.options.base_url or issuer.settings.issuer)
        self._clients = {
            cid: secret.encode("utf-8")
            for cid, secret in self.options.introspection_clients.items()
        }
        self._dummy = secrets.token_bytes(32)  # unknown clients cost a comparison too

    # -- what is mounted, and published --------------------------------------------------

    @property
    def introspection(self) -> bool:
        """Whether ``/introspect`` is mounted (some caller is allowed)."""
        return bool(self._clients) or self.options.introspection_role is not None

    def paths(self) -> dict[str, str]:
        """Metadata name -> path under the auth prefix, for every endpoint mounted."""
        paths = {"token_endpoint": "/token", "revocation_endpoint": "/revoke"}
        if self.introspection:
            paths["introspection_endpoint"] = "/introspect"
        return paths

    def routes(self) -> list[Route]:
        """The routes to mount at ``config.prefix`` (``auth_routes(..., oauth=)`` does)."""
        handlers = {
            "token_endpoint": self.token,
            "revocation_endpoint": self.revoke,
            "introspection_endpoint": self.introspect,
        }
        return [
            Route(path, self._answer(handlers[name]), methods=["POST"])
            for name, path in self.paths().items()
        ]

    def metadata(self) -> dict[str, Any]:
        """The RFC 8414 document: what is mounted, and nothing else."""
        prefix = f"{self.base_url}{self.config.prefix}"
        document: dict[str, Any] = {
            "issuer": self.issuer.settings.issuer,
            **{name: f"{prefix}{path}" for name, path in self.paths().items()},
            "jwks_uri": f"{self.base_url}{self.options.jwks_path}",
            "response_types_supported": [],  # no authorization endpoint
            "grant_types_supported": [GRANT],
            "token_endpoint_auth_methods_supported": ["none"],
            "dpop_signing_alg_values_supported": self.dpop.algs.split(),  # RFC 9449 5.1
            "revocation_endpoint_auth_methods_supported": ["none"],
        }
        if self.introspection:
            # Only registered names: a Bearer token with the role is documented apart.
            methods = ["client_secret_basic"] if self._clients else []
            document["introspection_endpoint_auth_methods_supported"] = methods
        return document

    def metadata_path(self) -> str:
        """RFC 8414 §3: the well-known suffix goes between the host and the issuer's path."""
        path = urlsplit(self.issuer.settings.issuer).path.rstrip("/")
        return f"/.well-known/oauth-authorization-server{path}"

    def metadata_route(self) -> Route:
        """``GET /.well-known/oauth-authorization-server``, mounted at the app's root."""
        document = self.metadata()

        async def metadata(request: Request) -> Response:
            return JSONResponse(document, headers={"Cache-Control": "public, max-age=300"})

        return Route(self.metadata_path(), metadata, methods=["GET"])

    # -- handlers ----------------------------------------------------------------------------

    def _answer(self, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except OAuthError as error:
                return oauth_response(error)
            except AuthError as error:
                return oauth_response(from_auth_error(error))

        endpoint.__name__ = handler.__name__
        return endpoint

    def _no_client_auth(self, request: Request, params: Mapping[str, str]) -> None:
        """Public clients only: a client that tries to authenticate is refused (§5.2)."""
        scheme = request.headers.get("authorization", "").split(" ", 1)[0].lower()
        if scheme == "basic":
            raise OAuthError(
                "invalid_client",
                "This endpoint serves public clients: send client_id, no credentials.",
                status=401,
                headers=basic_challenge(self.config.realm),
            )
        if "client_secret" in params:
            raise OAuthError("invalid_client", "This endpoint takes no client_secret.")
        client_id = params.get("client_id")
        if client_id is not None and (
            len(client_id) > MAX_CLIENT_ID or not client_id.isprintable() or not client_id.isascii()
        ):
            raise OAuthError("invalid_request", "The client_id is malformed.")

    async def token(self, request: Request) -> Response:
        """RFC 6749 §6: ``grant_type=refresh_token`` -> a §5.1 token response."""
        params = await read_form(request, self.config.max_body_bytes)
        grant_type = require(params, "grant_type")
        if grant_type != GRANT:
            raise OAuthError(
                "unsupported_grant_type", "Only the refresh_token grant is supported here."
            )
        self._no_client_auth(request, params)
        token = require(params, "refresh_token")
        requested = _scope_set(params["scope"]) if "scope" in params else None
        if requested is not None:
            await self._check_scope(token, requested)
        binding = await dpop_binding(request, self.issuer, self.dpop)
        pair = await self.issuer.refresh(token, client_metadata(request), binding=binding)
        body = pair.as_json()
        body["scope"] = " ".join(self.config.scopes_for(pair.claims.role))
        return JSONResponse(body, headers=NO_STORE)

    async def _check_scope(self, token: str, requested: set[str]) -> None:
        """§6: a scope beyond the session's (its role's scopes) is ``invalid_scope``.

        Checked before the rotation, so a refused request does not spend its
        token; a reused token goes on to the rotation, where reuse detection wins.
        """
        session = await self.issuer.refresh_token_session(token)
        if session is None:
            return
        granted = set(self.config.scopes_for(session.role))
        if not requested <= granted:
            raise OAuthError("invalid_scope", "The scope exceeds what the session was granted.")

    async def revoke(self, request: Request) -> Response:
        """RFC 7009: a refresh token ends its session; an access token is denied by
        its ``jti`` everywhere. Unknown, invalid or expired tokens: 200 all the same."""
        params = await read_form(request, self.config.max_body_bytes)
        self._no_client_auth(request, params)
        token = require(params, "token")
        # The two kinds cannot be confused (distinct prefix), so the hint never
        # narrows the search (RFC 7009 §2.1: search every supported type).
        if token.startswith(REFRESH_TOKEN_PREFIX):
            try:
                session = await self.issuer.refresh_token_session(token)
                if session is not None and bound_jkt(session.binding) is not None:
                    await self._require_key(request, session.binding)
                await self.issuer.revoke_refresh_token(token, metadata=client_metadata(request))
            except DPoPProofInvalid:
                raise
            except AuthError as error:
                if error.status == 503:
                    raise
            return Response(status_code=200, headers=NO_STORE)
        claims = self._access_claims(token)
        if claims is not None:
            if claims.jkt is not None:
                await self._require_key(request, key_binding(claims.jkt))
            await self.issuer.revoke_access_token(claims)
        return Response(status_code=200, headers=NO_STORE)

    async def _require_key(self, request: Request, binding: str) -> None:
        """A DPoP-bound token is revoked only by its key's holder: a copied token is
        useless on its own, and must not end its owner's session either (docs/dpop.md).
        A stale refresh token needs no key: presenting it anywhere is theft (invariant 8).

        :raises DPoPProofInvalid: no proof for this request, or one from another key.
        """
        if await dpop_binding(request, self.issuer, self.dpop) != binding:
            raise DPoPProofInvalid("The token is bound to a key: send a DPoP proof made with it.")

    def _access_claims(self, token: str) -> AccessClaims | None:
        """The claims of a live access token of ours, or None; 503 if revocation
        state is stale (the answer would be a guess)."""
        try:
            return self.verifier.verify(token)
        except (TokenExpired, TokenRevoked):
            return None
        except AuthError as error:
            if error.status == 503:
                raise
            return None

    async def introspect(self, request: Request) -> Response:
        """RFC 7662: ``active`` and the claims of a live access token, else ``active: false``."""
        caller = self._introspection_caller(request)
        await self.issuer.rate_limit(
            f"introspect:{caller}",
            limit=self.options.introspection_limit,
            window=self.options.introspection_window,
        )
        params = await read_form(request, self.config.max_body_bytes)
        claims = self._access_claims(require(params, "token"))
        if claims is None:  # refresh tokens too: no business of a resource server
            return JSONResponse({"active": False}, headers=NO_STORE)
        body = {
            **claims.as_dict(),
            "active": True,
            # RFC 9449 section 6.2: a bound token is not a bearer token (cnf.jkt says whose).
            "token_type": "Bearer" if claims.jkt is None else "DPoP",
            "scope": " ".join(self.config.scopes_for(claims.role)),
        }
        return JSONResponse(body, headers=NO_STORE)

    def _introspection_caller(self, request: Request) -> str:
        """Who calls: a Basic client (by secret) or a Bearer token with the role.

        :raises OAuthError: 401 ``invalid_client`` (bad or unknown Basic client),
            401 without credentials, 403 ``insufficient_scope`` (Bearer without the role).
        """
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic" and self._clients:
            client_id = self._basic_client(value.strip())
            if client_id is None:
                raise OAuthError(
                    "invalid_client",
                    "Client authentication failed.",
                    status=401,
                    headers=basic_challenge(self.config.realm),
                )
            return f"client:{client_id}"
        role = self.options.introspection_role
        user = request.scope.get("user")
        if role is not None and scheme.lower() == "bearer" and isinstance(user, JWTUser):
            if role not in request.auth.scopes:
                raise OAuthError(
                    "insufficient_scope",
                    "The token's role may not introspect.",
                    status=403,
                    headers={
                        "WWW-Authenticate": f'Bearer realm="{self.config.realm}", '
                        'error="insufficient_scope"'
                    },
                )
            return f"user:{user.id}"
        challenges = ([f'Basic realm="{self.config.realm}"'] if self._clients else []) + (
            [f'Bearer realm="{self.config.realm}"'] if role is not None else []
        )
        raise OAuthError(
            "invalid_client",
            "The introspection endpoint needs client credentials.",
            status=401,
            headers={"WWW-Authenticate": ", ".join(challenges)},
        )

    def _basic_client(self, value: str) -> str | None:
        """RFC 6749 §2.3.1: base64 of form-encoded ``client_id:secret``; the id if it matches."""
        try:
            decoded = base64.b64decode(value.encode("ascii"), validate=True).decode("utf-8")
        except (UnicodeError, binascii.Error, ValueError):
            return None
        raw_id, sep, raw_secret = decoded.partition(":")
        if not sep:
            return None
        client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret).encode("utf-8")
        expected = self._clients.get(client_id)
        ok = hmac.compare_digest(secret, expected if expected is not None else self._dummy)
        return client_id if ok and expected is not None else None
