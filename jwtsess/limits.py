"""The per-address refresh limit: a flood brake counted in this process.

The primary refresh limit is per session and lives in the store, inside the
rotation itself (``SessionPolicy.refresh_limit``). This one counts refreshes of
*live* sessions per client address, so requests for sessions that do not exist
never spend anyone's budget. It is kept in the process, not the store, so a
refresh stays one store round trip: with N processes an address gets up to N
times the limit. Behind NAT, or a proxy whose forwarded headers the server does
not read, every client shares one address: keep the limit far above the
per-session one (default 20x) or turn it off.
"""

from __future__ import annotations


class AddressLimiter:
    """Fixed windows of ``window`` seconds; at most ``limit`` answered refreshes per address."""

    def __init__(self, limit: int, window: float) -> None:
        self._limit = limit
        self._window = window
        self._window_end = 0.0
        self._counts: dict[str, int] = {}  # emptied every window: bounded by one window's traffic

    def _roll(self, now: float) -> None:
        if now >= self._window_end:
            self._window_end = (now // self._window + 1) * self._window
            self._counts.clear()

    def retry_after(self, address: str | None, now: float) -> float:
        """Seconds until ``address`` may refresh again, or 0. Counts nothing."""
        if address is None:
            return 0.0
        self._roll(now)
        if self._counts.get(address, 0) >= self._limit:
            return self._window_end - now
        return 0.0

    def count(self, address: str | None, now: float) -> None:
        """Count one answered refresh of a live session from ``address``."""
        if address is not None:
            self._roll(now)
            self._counts[address] = self._counts.get(address, 0) + 1
