"""``RefreshFailed``, and how a refresh answer that is not a token pair becomes one."""

from __future__ import annotations

import httpx

from ..errors import JWTSessError

__all__ = ["RefreshFailed", "refusal"]

#: Statuses of a refresh answer that mean the refresh token is dead: drop it.
_FATAL_STATUSES = frozenset({400, 401, 403})
#: Longest ``error`` / ``detail`` text kept from a server's answer.
MAX_DETAIL = 200


class RefreshFailed(JWTSessError):
    """The tokens could not be refreshed.

    :param error: the server's error code (``refresh_reused``,
        ``session_not_found``, ``token_invalid``, ``rate_limited``,
        ``store_unavailable``...) or a client one: ``no_tokens`` (none held),
        ``invalid_response`` (a 2xx without a token pair), ``http_error`` (an
        answer without a jwtsess error body).
    :param detail: the server's ``detail`` text, or a description.
    :param status_code: the refresh answer's HTTP status (None if none was sent).
    :param retryable: True when the client kept its tokens (429, 5xx, a bad
        answer) and a later request may refresh again; False when the server
        refused the refresh token (400, 401, 403), the client dropped its
        tokens and the user must log in again.
    """

    code = "refresh_failed"
    default_detail = "The session could not be refreshed; log in again."

    def __init__(
        self,
        error: str,
        detail: str | None = None,
        *,
        status_code: int | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(detail)
        self.error = error
        self.status_code = status_code
        self.retryable = retryable

    def again(self) -> RefreshFailed:
        """A fresh copy, for another request that shared this refresh."""
        return RefreshFailed(
            self.error, self.detail, status_code=self.status_code, retryable=self.retryable
        )

    def __str__(self) -> str:
        return f"{self.error}: {self.detail}"

    def __repr__(self) -> str:
        return f"RefreshFailed(error={self.error!r}, detail={self.detail!r})"


def refusal(response: httpx.Response) -> RefreshFailed:
    """The failure a non-2xx refresh answer means: the server's ``error`` and
    ``detail`` (or ``error_description``) when it sent a jwtsess or an OAuth
    error body, generic ones otherwise;
    retryable unless the status says the refresh token is dead (400, 401, 403).
    """
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        detail = body.get("detail", body.get("error_description"))  # jwtsess, or RFC 6749 §5.2
        text = detail if isinstance(detail, str) else f"HTTP {status}"
        error, text = body["error"][:MAX_DETAIL], text[:MAX_DETAIL]
    else:
        error, text = "http_error", f"The refresh endpoint answered HTTP {status}."
    return RefreshFailed(error, text, status_code=status, retryable=status not in _FATAL_STATUSES)
