"""What most tests build on: fixed names and instants, a clock a test moves, a key kit.

The fixtures of tests/conftest.py make these; tests import the types and
constants from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jwtsess import AccessTokenSigner, KeyRing, TokenSettings, Verifier
from jwtsess.issuer import Issuer
from jwtsess.store.base import SessionStore

ISSUER = "https://auth.example.test"
AUDIENCE = "api.example.test"
T0 = 1_800_000_000.0  # a fixed "now" for tests (2027-01-15)


class MutableClock:
    """An injected wall clock that only moves when a test moves it."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class TokenKit:
    """A keyring with a signer and a verifier sharing one clock."""

    directory: Path
    clock: MutableClock
    keyring: KeyRing
    settings: TokenSettings
    signer: AccessTokenSigner
    verifier: Verifier

    def token(self, sub: str = "user-1", role: str = "user", sid: str = "sid-1") -> str:
        return self.signer.issue(sub, role, sid)[0]


ALGORITHMS = ("HS256", "RS256", "ES256", "EdDSA")


@dataclass
class IssuerKit:
    kit: TokenKit
    store: SessionStore
    issuer: Issuer

    @property
    def clock(self) -> MutableClock:
        return self.kit.clock
