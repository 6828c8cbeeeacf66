"""The exceptions jwtsess raises, each with a stable machine-readable ``code``.

Every error a client can cause maps to one HTTP answer (``status``) and one code
that never changes between releases; ``detail`` is safe to show a client and
never carries a token, a key or an internal message.

    JWTSessError                      code                    status
    ├── AuthError                     (client-facing)
    │   ├── TokenMissing              token_missing           401
    │   ├── TokenRejected             (the token presented is refused for good)
    │   │   ├── TokenMalformed        token_malformed         401
    │   │   ├── TokenExpired          token_expired           401
    │   │   ├── TokenInvalid          token_invalid           401
    │   │   │   └── UnknownKeyId      token_invalid           401
    │   │   ├── TokenRevoked          token_revoked           401
    │   │   └── DPoPRequired          dpop_required           401
    │   ├── SessionNotFound           session_not_found       401
    │   ├── RefreshReused             refresh_reused          401
    │   ├── DPoPProofInvalid          invalid_dpop_proof      401
    │   │   └── DPoPNonceRequired     use_dpop_nonce          401
    │   ├── InsufficientRole          insufficient_role       403
    │   ├── CSRFFailed                csrf_failed             403
    │   ├── BadRequest                bad_request             400
    │   ├── RateLimited               rate_limited            429
    │   ├── StoreUnavailable          store_unavailable       503
    │   ├── ClaimsUnavailable         claims_unavailable      503
    │   └── RevocationStateStale      revocation_state_stale  503
    └── KeyringError                  keyring_invalid         (operator error, never sent)

``TokenRejected`` is what the verifier raises about a token itself; an HTTP
answer carries RFC 6750's ``error="invalid_token"`` for it, and a rejected
access cookie is deleted rather than answered.
"""

from __future__ import annotations

from typing import ClassVar


class JWTSessError(Exception):
    """Root of every exception jwtsess raises on purpose."""

    code: ClassVar[str] = "jwtsess_error"
    status: ClassVar[int] = 500
    default_detail: ClassVar[str] = "Internal error."

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail if detail is not None else self.default_detail
        super().__init__(self.detail)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, detail={self.detail!r})"


class AuthError(JWTSessError):
    """An error the client caused or must be told about; safe to send as JSON."""

    status = 401


class TokenMissing(AuthError):
    code = "token_missing"
    default_detail = "No access token was presented."


class TokenRejected(AuthError):
    """The token presented is refused for good (malformed, expired, invalid or
    revoked): presenting it again can never succeed. The parent of the
    verifier's own errors, never raised itself; RFC 6750 calls them all
    ``invalid_token``. Catch it to treat them alike."""


class TokenMalformed(TokenRejected):
    code = "token_malformed"
    default_detail = "The token is not a well-formed compact JWS."


class TokenExpired(TokenRejected):
    code = "token_expired"
    default_detail = "The token has expired."


class TokenInvalid(TokenRejected):
    """Signature, header or claims are wrong, or the token is of the wrong kind."""

    code = "token_invalid"
    default_detail = "The token is invalid."


class UnknownKeyId(TokenInvalid):
    """The ``kid`` names no key in the keyring (never guessed, never a fallback).

    ``kid`` is the unknown key id (for a key source to look for; never sent).
    """

    default_detail = "The token was signed by an unknown key."

    def __init__(self, detail: str | None = None, *, kid: str | None = None) -> None:
        super().__init__(detail)
        self.kid = kid


class TokenRevoked(TokenRejected):
    code = "token_revoked"
    default_detail = "The token has been revoked."


class SessionNotFound(AuthError):
    code = "session_not_found"
    default_detail = "The session does not exist or has ended."


class RefreshReused(AuthError):
    """A refresh token came back after its successor was issued: theft.

    ``sid`` and ``user_id`` name the session that was revoked (for audit; not
    sent to the client).
    """

    code = "refresh_reused"
    default_detail = "The refresh token was already used; the session has been revoked."

    def __init__(
        self, detail: str | None = None, *, sid: str | None = None, user_id: str | None = None
    ) -> None:
        super().__init__(detail)
        self.sid = sid
        self.user_id = user_id


class DPoPRequired(TokenRejected):
    """A DPoP-bound token (``cnf.jkt``) came as a bearer token: it needs its proof."""

    code = "dpop_required"
    default_detail = "This token is bound to a key: send it as 'Authorization: DPoP' with a proof."


class DPoPProofInvalid(AuthError):
    """The ``DPoP`` proof is missing, malformed, or does not match the request or token.

    RFC 9449's ``invalid_dpop_proof``.
    """

    code = "invalid_dpop_proof"
    default_detail = "The DPoP proof is invalid."


class DPoPNonceRequired(DPoPProofInvalid):
    """The proof needs the server's current nonce (RFC 9449 section 8 and 9).

    ``nonce`` is the value to use; the answer carries it in ``DPoP-Nonce``.
    """

    code = "use_dpop_nonce"
    default_detail = "Use the nonce in the DPoP-Nonce header."

    def __init__(self, detail: str | None = None, *, nonce: str) -> None:
        super().__init__(detail)
        self.nonce = nonce


class InsufficientRole(AuthError):
    code = "insufficient_role"
    status = 403
    default_detail = "The token's role does not allow this."


class CSRFFailed(AuthError):
    code = "csrf_failed"
    status = 403
    default_detail = "CSRF check failed."


class BadRequest(AuthError):
    code = "bad_request"
    status = 400
    default_detail = "The request is malformed."


class RateLimited(AuthError):
    code = "rate_limited"
    status = 429
    default_detail = "Too many requests."

    def __init__(self, detail: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class StoreUnavailable(AuthError):
    code = "store_unavailable"
    status = 503
    default_detail = "The session store is unavailable; try again."


class ClaimsUnavailable(AuthError):
    """The application's claims loader failed during a refresh.

    The rotation had already been committed, so the same client retrying the
    same refresh token inside the grace window gets its tokens.
    """

    code = "claims_unavailable"
    status = 503
    default_detail = "The user's claims could not be loaded; try again."


class RevocationStateStale(AuthError):
    code = "revocation_state_stale"
    status = 503
    default_detail = "Revocation state is stale; try again shortly."


class KeyringError(JWTSessError):
    """The key directory is missing, corrupt, unsafe or inconsistent.

    An operator's problem, raised at start-up or by the rotation tool; the
    message names the offending file.
    """

    code = "keyring_invalid"
    default_detail = "The keyring is invalid."
