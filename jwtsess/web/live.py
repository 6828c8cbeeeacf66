"""LiveConnections: open websockets authenticated by jwtsess, closed when their token dies.

Authentication happens once, at the handshake; after that a websocket lives
as long as both ends want. So the middleware registers every websocket it
authenticated (once the app accepts it) here, indexed by the token's ``jti``,
its session ``sid`` and its user, and this registry closes it with code 1008:

- reason ``token_revoked`` as soon as the revocation mirror applies an entry
  that covers the token (logout, session revoked, logout-everywhere, reissue,
  theft detection), in whichever process the revocation was made: the mirror's
  feed drives it, through ``RevocationMirror.add_listener``;
- reason ``token_expired`` when the access token's ``exp`` passes: one event-loop
  timer for the earliest expiry of all connections (a heap), re-armed as they go.

Nothing runs per message and nothing polls: the work is one dictionary lookup
per revocation entry, and one timer.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from ..access import AccessClaims
from ..clock import Clock, system_clock
from ..mirror import RevocationMirror
from ..store.base import REVOKE_SESSION, REVOKE_TOKEN, Revocation

logger = logging.getLogger("jwtsess.live")

#: The close code for a websocket whose token was revoked or expired (policy violation).
POLICY_VIOLATION: Final = 1008
CloseSender = Callable[[int, str], Awaitable[None]]


class LiveSocket:
    """One open websocket: its token's claims and how to close it."""

    __slots__ = ("_send_close", "claims", "close_code", "close_reason", "closed", "ended", "loop")

    def __init__(self, claims: AccessClaims, send_close: CloseSender) -> None:
        self.claims = claims
        self._send_close = send_close
        self.loop = asyncio.get_running_loop()  # the server's loop, where the socket lives
        self.closed = False  # closed by the registry: the app's next send fails
        self.ended = False  # no longer registered (closed by us, or ended by either end)
        self.close_code = 0
        self.close_reason = ""


class LiveConnections:
    """The registry of open, jwtsess-authenticated websockets of one process.

    :param clock: wall-clock seconds, the verifier's (when ``exp`` has passed).
    """

    def __init__(self, *, clock: Clock = system_clock) -> None:
        self._clock = clock
        self._by_jti: dict[str, set[LiveSocket]] = {}
        self._by_sid: dict[str, set[LiveSocket]] = {}
        self._by_user: dict[str, set[LiveSocket]] = {}
        self._expiries: list[tuple[int, int, LiveSocket]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._closing: set[asyncio.Task[None]] = set()
        self._attached: set[int] = set()

    def attach(self, mirror: RevocationMirror) -> None:
        """Follow ``mirror``: its revocations close the websockets they cover (idempotent)."""
        if id(mirror) not in self._attached:
            self._attached.add(id(mirror))
            mirror.add_listener(self.revoked)

    def __len__(self) -> int:
        return sum(len(sockets) for sockets in self._by_jti.values())

    @property
    def next_expiry(self) -> float | None:
        """The ``exp`` the expiry timer is armed for (None: no timer)."""
        return None if self._timer is None else self._timer_at

    # -- registration ---------------------------------------------------------------------

    def add(self, claims: AccessClaims, send_close: CloseSender) -> LiveSocket:
        """Register an accepted websocket; ``send_close(code, reason)`` closes it."""
        live = LiveSocket(claims, send_close)
        self._by_jti.setdefault(claims.jti, set()).add(live)
        self._by_sid.setdefault(claims.sid, set()).add(live)
        self._by_user.setdefault(claims.sub, set()).add(live)
        heapq.heappush(self._expiries, (claims.exp, next(self._order), live))
        if claims.exp < self._timer_at:
            self._arm(claims.exp)
        return live

    def discard(self, live: LiveSocket) -> None:
        """Forget a websocket that ended (its heap entry is dropped lazily)."""
        if live.ended:
            return
        live.ended = True
        claims = live.claims
        for index, key in ((self._by_jti, claims.jti), (self._by_sid, claims.sid)):
            sockets = index.get(key)
            if sockets is not None:
                sockets.discard(live)
                if not sockets:
                    del index[key]
        sockets = self._by_user.get(claims.sub)
        if sockets is not None:
            sockets.discard(live)
            if not sockets:
                del self._by_user[claims.sub]

    # -- closing ------------------------------------------------------------------------------

    def revoked(self, entries: list[Revocation]) -> None:
        """The mirror's listener: close every websocket an entry covers."""
        for entry in entries:
            if entry.kind == REVOKE_TOKEN:
                hit = self._by_jti.get(entry.subject, ())
            elif entry.kind == REVOKE_SESSION:
                hit = self._by_sid.get(entry.subject, ())
            else:
                hit = {
                    live
                    for live in self._by_user.get(entry.subject, ())
                    if live.claims.issued_us < entry.not_before_us  # the mirror's own rule
                }
            for live in tuple(hit):
                self.close(live, POLICY_VIOLATION, "token_revoked")

    def close_expired(self) -> int:
        """Close every websocket whose token has expired by now; the timer calls this."""
        now = self._clock()
        closed = 0
        while self._expiries and self._expiries[0][0] <= now:
            _, _, live = heapq.heappop(self._expiries)
            if not live.ended:
                self.close(live, POLICY_VIOLATION, "token_expired")
                closed += 1
        self._timer, self._timer_at = None, float("inf")
        while self._expiries and self._expiries[0][2].ended:
            heapq.heappop(self._expiries)  # ended sockets: drop them here, lazily
        if self._expiries:
            self._arm(self._expiries[0][0])
        return closed

    def close(self, live: LiveSocket, code: int, reason: str) -> None:
        """Mark ``live`` closed now (its app's next send fails) and send the close frame."""
        if live.ended:
            return
        live.closed, live.close_code, live.close_reason = True, code, reason
        self.discard(live)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is live.loop:
            self._spawn(live, code, reason)
        else:  # a revocation applied on another loop or thread (tests, TestClient)
            live.loop.call_soon_threadsafe(self._spawn, live, code, reason)

    def _spawn(self, live: LiveSocket, code: int, reason: str) -> None:
        task = live.loop.create_task(self._send(live, code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _send(live: LiveSocket, code: int, reason: str) -> None:
        try:
            await live._send_close(code, reason)
        except Exception as error:  # the peer left meanwhile: nothing to close
            logger.debug("closing a websocket failed: %r", error)

    def _arm(self, exp: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous test): close_expired is called by hand
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = exp
        self._timer = loop.call_later(max(0.0, exp - self._clock()), self.close_expired)
