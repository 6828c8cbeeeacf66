"""The tokens a client holds, read from a login or refresh answer."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OnRefresh", "TokenState"]


@dataclass(frozen=True, slots=True)
class TokenState:
    """The tokens a client holds. Times are the client clock's epoch seconds.

    :param access_token: sent as ``Authorization: Bearer ...`` (or ``DPoP ...``).
    :param refresh_token: exchanged for a new pair at the refresh endpoint.
    :param expires_at: when the access token expires (None: unknown, refresh on 401 only).
    :param lifetime: how long the access token was granted for (``expires_in``).
    :param session_id: the server's session id, if it sent one.
    :param token_type: ``Bearer``, or ``DPoP`` for a session bound to the client's key.
    """

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float | None = None
    lifetime: float | None = None
    session_id: str | None = None
    token_type: str = "Bearer"

    @classmethod
    def from_token_response(cls, body: Mapping[str, Any], *, now: float) -> TokenState:
        """Read a login or refresh answer (``access_token``, ``refresh_token``,
        ``expires_in``, ``token_type``, ``session_id``).

        :param body: the decoded JSON object.
        :param now: the client clock when the answer arrived.
        :raises ValueError: a token is missing or not a string, ``token_type`` is
            not Bearer or DPoP, or ``expires_in`` is not a positive number.
        """
        access, refresh = body.get("access_token"), body.get("refresh_token")
        if not isinstance(access, str) or not access:
            raise ValueError("the token response has no 'access_token' string")
        if not isinstance(refresh, str) or not refresh:
            raise ValueError("the token response has no 'refresh_token' string")
        token_type = body.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() not in ("bearer", "dpop"):
            raise ValueError("the token response's token_type is not Bearer or DPoP")
        expires_in = body.get("expires_in")
        lifetime: float | None = None
        if expires_in is not None:
            if (
                isinstance(expires_in, bool)
                or not isinstance(expires_in, int | float)
                or not math.isfinite(expires_in)
                or expires_in <= 0
            ):
                raise ValueError("the token response's expires_in is not a positive number")
            lifetime = float(expires_in)
        session_id = body.get("session_id")
        return cls(
            access_token=access,
            refresh_token=refresh,
            expires_at=now + lifetime if lifetime is not None else None,
            lifetime=lifetime,
            session_id=session_id if isinstance(session_id, str) else None,
            token_type="DPoP" if token_type.lower() == "dpop" else "Bearer",
        )


#: Called with the new tokens after every refresh, sync or ``async``; an
#: ``async`` one needs an ``httpx.AsyncClient``.
OnRefresh = Callable[[TokenState], Awaitable[None] | None]
