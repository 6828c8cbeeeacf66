"""Error answers (RFC 6750) and cookie helpers: one place decides what a client sees."""

from __future__ import annotations

import secrets
from typing import Final

from starlette.responses import JSONResponse, Response

from ..dpop_jwk import PROOF_ALGORITHMS
from ..errors import (
    AuthError,
    DPoPNonceRequired,
    DPoPProofInvalid,
    DPoPRequired,
    InsufficientRole,
    RateLimited,
    TokenMissing,
    TokenRejected,
)
from ..sessions import TokenPair
from .config import WebConfig

_ALL_PROOF_ALGS: Final = " ".join(PROOF_ALGORITHMS)
NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _quoted(text: str) -> str:
    """Safe inside a quoted header value: printable ASCII, no quotes or backslashes."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)


def _dpop_challenge(config: WebConfig, error: AuthError, algs: str) -> str:
    """RFC 9449 section 7.1: the DPoP scheme, its algorithms, and the error."""
    code = "invalid_token"
    if isinstance(error, DPoPNonceRequired):
        code = "use_dpop_nonce"
    elif isinstance(error, DPoPProofInvalid):
        code = "invalid_dpop_proof"
    elif error.code == "insufficient_role":
        code = "insufficient_scope"
    described = f'error="{code}", error_description="{_quoted(error.detail)}"'
    return f'DPoP realm="{config.realm}", algs="{algs}", {described}'


def challenge(config: WebConfig, error: AuthError, *, dpop_algs: str | None = None) -> str | None:
    """The ``WWW-Authenticate`` value for ``error``, or None if it takes none.

    :param dpop_algs: the request used the DPoP scheme: answer with a DPoP
        challenge listing these proof algorithms.
    """
    realm = f'Bearer realm="{config.realm}"'
    if dpop_algs is not None and error.status in (401, 403):
        return _dpop_challenge(config, error, dpop_algs)
    if isinstance(error, DPoPRequired):
        # A bound token sent as Bearer: refuse it, and say which scheme it needs.
        bearer = f'{realm}, error="invalid_token", error_description="{_quoted(error.detail)}"'
        return f'{bearer}, DPoP realm="{config.realm}", algs="{_ALL_PROOF_ALGS}"'
    if isinstance(error, TokenMissing):
        return realm  # RFC 6750 3.1: no error code when no credentials were sent
    if isinstance(error, TokenRejected):
        return f'{realm}, error="invalid_token", error_description="{_quoted(error.detail)}"'
    if isinstance(error, InsufficientRole):
        return f'{realm}, error="insufficient_scope", error_description="{_quoted(error.detail)}"'
    if error.status == 401:
        return realm  # RFC 7235: every 401 carries a challenge
    return None


def error_response(
    config: WebConfig, error: AuthError, *, dpop_algs: str | None = None
) -> JSONResponse:
    """``{"error": code, "detail": safe text}`` with the status and headers the code needs.

    :param dpop_algs: the request used the DPoP scheme (see ``challenge``).
    """
    headers = dict(NO_STORE)
    www = challenge(config, error, dpop_algs=dpop_algs)
    if www is not None:
        headers["WWW-Authenticate"] = www
    if isinstance(error, DPoPNonceRequired):
        headers["DPoP-Nonce"] = error.nonce
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after)
    if error.status == 503:
        headers["Retry-After"] = "1"
    return JSONResponse(
        {"error": error.code, "detail": error.detail}, status_code=error.status, headers=headers
    )


def set_session_cookies(response: Response, config: WebConfig, pair: TokenPair) -> None:
    """Cookie mode: access (HttpOnly, all paths), refresh (HttpOnly, refresh route
    only, SameSite=Strict) and a fresh CSRF token (readable, for the header)."""
    response.set_cookie(
        config.access_cookie_name,
        pair.access_token,
        max_age=pair.expires_in,
        path="/",
        secure=config.secure,
        httponly=True,
        samesite="lax",
    )
    refresh_max_age = max(0, int(pair.refresh_expires_at - pair.claims.iat))
    response.set_cookie(
        config.refresh_cookie_name,
        pair.refresh_token,
        max_age=refresh_max_age,
        path=config.refresh_path,
        secure=config.secure,
        httponly=True,
        samesite="strict",
    )
    response.set_cookie(
        config.csrf_cookie_name,
        secrets.token_urlsafe(24),
        max_age=refresh_max_age,
        path="/",
        secure=config.secure,
        httponly=False,
        samesite="strict",
    )


def clear_session_cookies(response: Response, config: WebConfig) -> None:
    for name, path in (
        (config.access_cookie_name, "/"),
        (config.refresh_cookie_name, config.refresh_path),
        (config.csrf_cookie_name, "/"),
    ):
        response.delete_cookie(name, path=path, secure=config.secure, httponly=True)
