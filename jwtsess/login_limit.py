"""LoginLimiter: throttles password guessing on the application's own login route.

jwtsess does not check passwords, but it can count login attempts in the
session store (the refresh limiter's fixed-window counter,
``SessionStore.hit_rate_limit``), so every process behind one Redis shares the
counts. Call ``attempt(account, address)`` before checking the password; it
raises ``RateLimited`` (429 with ``Retry-After``) when a limit is spent, so a
throttled guess costs no password hash and reveals nothing. When the password
was right, call ``succeeded()`` on what it returned: the attempt is refunded,
so the limits count failures only::

    attempt = await limiter.attempt(username, client_metadata(request).ip)
    if not password_ok(username, password):
        return wrong_password_answer()      # the failure stays counted
    await attempt.succeeded()

Three scopes, checked in this order, each a list of escalating tiers
``(limit, window seconds)``:

1. **account + address** (default 5 a minute, 20 a quarter hour, 50 a day):
   the guesser's own budget. An attacker spends it from their address and the
   owner, at another address, is not affected.
2. **address** (default 100 a minute, any accounts): password spraying from
   one address. Behind NAT, or a proxy whose forwarded headers are not used,
   many users share an address; see docs/http.md.
3. **account** (default 100 a quarter hour, from every address): a ceiling on
   distributed guessing. Only attempts that scopes 1 and 2 let through count
   here, so one address cannot spend it (it gets at most 5 a minute through).
   It is the one limit an attacker with many addresses can use against the
   owner, and it lasts at most one window after they stop.

Within a scope the tiers are checked shortest window first and the first one
that refuses ends the check: a refused attempt is not counted by the later
tiers or scopes. Escalation comes from the longer windows filling with the
attempts the shorter ones allowed: a steady guesser waits a minute, then the
rest of a quarter hour, then the rest of the day. Windows are fixed and
aligned (as for refreshes), so refused attempts never extend a wait, and a
burst at a window boundary can get up to twice a tier's limit through.

Counting every attempt first and refunding successes, rather than counting
failures afterwards, keeps the limit exact under concurrency: a hundred
guesses sent at once are counted one by one by the store before any password
is checked. An application that never calls ``succeeded()`` counts successes
too, which is stricter, never looser.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from .clock import Clock, system_clock
from .errors import RateLimited
from .store.base import SessionStore

#: ``(limit, window seconds)``: at most ``limit`` attempts per aligned window.
Tier = tuple[int, float]


def _check_tiers(name: str, tiers: Sequence[Tier]) -> None:
    for limit, window in tiers:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"{name}: every limit must be a positive integer")
        if not (isinstance(window, int | float) and math.isfinite(window) and window > 0):
            raise ValueError(f"{name}: every window must be a positive number of seconds")
    windows = [window for _, window in tiers]
    if windows != sorted(windows) or len(set(windows)) != len(windows):
        raise ValueError(f"{name}: tiers must go from the shortest window to the longest")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginLimits:
    """The tiers of each scope; an empty tuple turns a scope off.

    :param per_account_address: one account from one address.
    :param per_address: every account from one address.
    :param per_account: one account from every address (counted only for
        attempts the other scopes allowed).
    """

    per_account_address: tuple[Tier, ...] = ((5, 60.0), (20, 900.0), (50, 86400.0))
    per_address: tuple[Tier, ...] = ((100, 60.0),)
    per_account: tuple[Tier, ...] = ((100, 900.0),)

    def __post_init__(self) -> None:
        _check_tiers("per_account_address", self.per_account_address)
        _check_tiers("per_address", self.per_address)
        _check_tiers("per_account", self.per_account)


def _digest(*parts: str) -> str:
    # Accounts and addresses are client input: hashed, they make bounded key names.
    joined = "\x00".join(parts).encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(hashlib.sha256(joined).digest()[:15]).decode("ascii")


class LoginLimiter:
    """Counts login attempts per account, per address and per both.

    :param store: the session store the counters live in (shared by every process).
    :param limits: the tiers; ``LoginLimits()`` by default.
    :param clock: wall-clock seconds (the issuer's clock).
    """

    def __init__(
        self,
        store: SessionStore,
        limits: LoginLimits | None = None,
        *,
        clock: Clock = system_clock,
    ) -> None:
        self._store = store
        self._limits = limits or LoginLimits()
        self._clock = clock

    @property
    def limits(self) -> LoginLimits:
        return self._limits

    async def attempt(self, account: str, address: str | None) -> LoginAttempt:
        """Count one login attempt for ``account`` from ``address``.

        Call it before checking the password, with the account name in the
        form the application looks it up (e.g. an e-mail lowercased), and the
        client address (``client_metadata(request).ip``; None if unknown: such
        requests share one address).

        :returns: the counted attempt; call ``succeeded()`` on it if the password was right.
        :raises RateLimited: a limit is spent; ``retry_after`` is the seconds
            until the refusing window ends.
        :raises StoreUnavailable: the store could not be reached.
        """
        addr = address or "-"
        scopes = (
            ("login:aa", _digest(account, addr), self._limits.per_account_address),
            ("login:ip", _digest(addr), self._limits.per_address),
            ("login:a", _digest(account), self._limits.per_account),
        )
        now = self._clock()
        counted: list[tuple[str, float]] = []
        for scope, key, tiers in scopes:
            for limit, window in tiers:
                bucket = f"{scope}:{window:g}:{key}"
                retry_after = await self._store.hit_rate_limit(
                    [bucket], now=now, limit=limit, window=window
                )
                if retry_after > 0:
                    raise RateLimited(
                        "Too many login attempts; try again later.",
                        retry_after=max(1, math.ceil(retry_after)),
                    )
                counted.append((bucket, window))
        return LoginAttempt(self._store, now, tuple(counted))


class LoginAttempt:
    """One attempt ``LoginLimiter.attempt`` counted and let through."""

    def __init__(
        self, store: SessionStore, at: float, counted: tuple[tuple[str, float], ...]
    ) -> None:
        self._store = store
        self._at = at
        self._counted = counted

    async def succeeded(self) -> None:
        """The password was right: take the attempt back from every counter.

        Idempotent. A refund reaches only the windows the attempt was counted
        in (a window that has ended since is left alone).

        :raises StoreUnavailable: the store could not be reached.
        """
        counted, self._counted = self._counted, ()
        for bucket, window in counted:
            await self._store.refund_rate_limit([bucket], now=self._at, window=window)
