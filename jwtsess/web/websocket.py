"""Refusing a websocket handshake the same way from the middleware, the guards and handlers.

Where the server offers the ASGI websocket denial-response extension
(``"websocket.http.response"`` in ``scope["extensions"]``), the refusal is the
same HTTP answer an http request gets: 401/403/503 with ``WWW-Authenticate``
and the JSON body. Elsewhere the handshake is closed with 1008 (1013 for a 503)
and the error code as the reason; ASGI servers then answer HTTP 403.

One exception: uvicorn's ``websockets-sansio`` protocol (its default since
0.35) logs "ASGI callable returned without completing handshake." at ERROR
after every denial response it sends (uvicorn pull request #3138). A refused
token must never put an error in the server's log, so on that protocol the
refusal is the close instead. ``--ws wsproto`` or ``--ws websockets`` send the
denial response.
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from ..access import AccessClaims
from ..errors import AuthError, TokenRevoked
from ..verifier import RevocationCheck
from .config import WebConfig
from .live import POLICY_VIOLATION, LiveConnections, LiveSocket
from .responses import error_response

DENIAL: Final = "websocket.http.response"
_SPURIOUS_ERROR_LOG: Final = frozenset(
    {"uvicorn.protocols.websockets.websockets_sansio_impl.WebSocketsSansIOProtocol"}
)


def close_code(error: AuthError) -> int:
    """1013 (try again later) for a 503, else 1008 (policy violation)."""
    return 1013 if error.status == 503 else 1008


def offers_denial(scope: Scope, send: Send) -> bool:
    """Whether a denial response can be sent on this connection (and sent cleanly)."""
    if DENIAL not in (scope.get("extensions") or {}):
        return False
    server = type(getattr(send, "__self__", None))
    return f"{server.__module__}.{server.__qualname__}" not in _SPURIOUS_ERROR_LOG


async def refuse_websocket(
    config: WebConfig,
    error: AuthError,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    dpop_algs: str | None = None,
) -> None:
    """Refuse a websocket whose handshake has not been answered yet."""
    if offers_denial(scope, send):
        # Starlette's Response sends websocket.http.response.* on a websocket scope.
        await error_response(config, error, dpop_algs=dpop_algs)(scope, receive, send)
    else:
        await send({"type": "websocket.close", "code": close_code(error), "reason": error.code})


class _Session:
    __slots__ = ("accepted", "live")

    def __init__(self) -> None:
        self.accepted = False
        self.live: LiveSocket | None = None


async def serve_websocket(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    config: WebConfig,
    claims: AccessClaims | None,
    live: LiveConnections | None,
    revocation: RevocationCheck | None,
) -> None:
    """Run ``app`` on an authenticated (or anonymous) websocket.

    - An ``AuthError`` the app raises (a guard used as a dependency) refuses the
      handshake, or closes 1008 with the code if the app had already accepted.
    - Once the app accepts a jwtsess-authenticated websocket, ``live`` holds it,
      and closes it when its token is revoked or expires; the app's next
      ``send`` then raises ``WebSocketDisconnect`` (1008, the reason), and that
      exception, or the disconnect its ``receive`` gets, ends the app quietly.
    """
    session = _Session()

    async def send_close(code: int, reason: str) -> None:
        await send({"type": "websocket.close", "code": code, "reason": reason})

    async def wrapped(message: Message) -> None:
        registered = session.live
        if registered is not None and registered.closed:
            raise WebSocketDisconnect(registered.close_code, registered.close_reason)
        kind = message["type"]
        if kind == "websocket.accept":
            await send(message)
            session.accepted = True
            if claims is not None and live is not None:
                session.live = live.add(claims, send_close)
                _recheck(live, session.live, revocation)
            return
        if kind == "websocket.close" and registered is not None:
            live.discard(registered)  # type: ignore[union-attr]
        await send(message)

    try:
        await app(scope, receive, wrapped)
    except AuthError as error:
        if not session.accepted:
            await refuse_websocket(config, error, scope, receive, send)
        elif session.live is None or not session.live.closed:
            await send_close(close_code(error), error.code)
    except WebSocketDisconnect:
        if session.live is None or not session.live.closed:
            raise
        # We closed it (revoked or expired) and the app noticed: that is the end.
    finally:
        if session.live is not None and live is not None:
            live.discard(session.live)


def _recheck(live: LiveConnections, socket: LiveSocket, revocation: RevocationCheck | None) -> None:
    """A revocation applied between the handshake and the accept still closes the socket."""
    if revocation is None:
        return
    try:
        revocation.check(socket.claims)
    except TokenRevoked:
        live.close(socket, POLICY_VIOLATION, TokenRevoked.code)
    except AuthError:
        pass  # stale revocation state: the handshake passed; later revocations still close
