"""The OAuth 2.0 wire format: strict form bodies in, RFC 6749 §5.2 errors out.

``read_form`` parses an ``application/x-www-form-urlencoded`` body with the
standard library (``urllib.parse.parse_qsl``), bounded in size and number of
fields, strictly: a repeated parameter is an error (RFC 6749 §3.2), an empty
one counts as absent, a body that is not percent-encoded UTF-8 is refused.
``OAuthError`` carries an RFC 6749 §5.2 ``error`` code; ``oauth_error`` turns
it, or a jwtsess ``AuthError``, into the JSON answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import (
    AuthError,
    BadRequest,
    DPoPNonceRequired,
    DPoPProofInvalid,
    RateLimited,
    RefreshReused,
    SessionNotFound,
    TokenRejected,
)
from .responses import NO_STORE
from .routes import read_body

FORM: Final = "application/x-www-form-urlencoded"
MAX_FIELDS: Final = 16
# Parameter names a client may legitimately send; only these are ever echoed.
_KNOWN: Final = frozenset(
    {"grant_type", "refresh_token", "client_id", "client_secret", "scope", "token"}
    | {"token_type_hint"}
)


class OAuthError(Exception):
    """An RFC 6749 §5.2 error answer: ``error`` code, description, status, headers."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int = 400,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.headers = dict(headers or {})


def _text(value: str) -> str:
    """Within RFC 6749's error_description alphabet: %x20-21 / %x23-5B / %x5D-7E."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in value)


def oauth_response(error: OAuthError) -> JSONResponse:
    """``{"error", "error_description"}`` with ``no-store``, the status and headers."""
    return JSONResponse(
        {"error": error.error, "error_description": _text(error.description)},
        status_code=error.status,
        headers={**NO_STORE, **error.headers},
    )


def from_auth_error(error: AuthError) -> OAuthError:
    """The §5.2 form of a jwtsess error met while handling a grant or a token.

    A refresh token that is malformed, forged, of an ended or expired session,
    or reused is ``invalid_grant``; a bad DPoP proof is ``invalid_dpop_proof``
    (or ``use_dpop_nonce`` with the ``DPoP-Nonce`` header); an overload keeps
    its status (429, 503) and ``Retry-After`` and is ``temporarily_unavailable``.
    """
    if isinstance(error, BadRequest):
        return OAuthError("invalid_request", error.detail)
    if isinstance(error, DPoPNonceRequired):  # RFC 9449 section 8
        return OAuthError("use_dpop_nonce", error.detail, headers={"DPoP-Nonce": error.nonce})
    if isinstance(error, DPoPProofInvalid):  # RFC 9449 section 5
        return OAuthError("invalid_dpop_proof", error.detail)
    if isinstance(error, TokenRejected | SessionNotFound | RefreshReused):
        return OAuthError("invalid_grant", error.detail)
    if isinstance(error, RateLimited):
        retry = {"Retry-After": str(error.retry_after)}
        return OAuthError("temporarily_unavailable", error.detail, status=429, headers=retry)
    if error.status == 503:
        retry = {"Retry-After": "1"}
        return OAuthError("temporarily_unavailable", error.detail, status=503, headers=retry)
    return OAuthError("invalid_request", error.detail, status=error.status)


async def read_form(request: Request, limit: int) -> dict[str, str]:
    """The parameters of a form body; empty values dropped (RFC 6749 §3.2).

    :raises OAuthError: ``invalid_request`` for a wrong media type, a body over
        ``limit`` bytes or over ``MAX_FIELDS`` fields, bad encoding, or a
        repeated parameter.
    """
    given = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if given != FORM:
        raise OAuthError("invalid_request", f"Content-Type must be {FORM}.")
    try:
        body = await read_body(request, limit)
    except BadRequest as error:
        raise OAuthError("invalid_request", error.detail) from None
    try:
        text = body.decode("ascii")  # a form body is percent-encoded ASCII
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except ValueError:  # UnicodeDecodeError too: not ASCII, or not UTF-8 once decoded
        raise OAuthError("invalid_request", "The body is not a valid form.") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            shown = f"'{name}'" if name in _KNOWN else "a parameter"
            raise OAuthError("invalid_request", f"The body repeats {shown}.")
        params[name] = value
    return {name: value for name, value in params.items() if value}


def require(params: Mapping[str, str], name: str) -> str:
    """A required parameter, or ``invalid_request``."""
    value = params.get(name)
    if value is None:
        raise OAuthError("invalid_request", f"The '{name}' parameter is missing.")
    return value


def basic_challenge(realm: str) -> dict[str, str]:
    return {"WWW-Authenticate": f'Basic realm="{_text(realm)}"'}
