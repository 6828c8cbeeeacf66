"""KeySource: where a Verifier finds the public half of the key a token names.

Two sources satisfy it: ``KeyRing`` (a key directory with the private keys: the
issuing side) and ``JWKSKeySource`` (a JWK Set from a URL or a file: a service
that only verifies and holds no secret). The Verifier makes the same checks with
either; it only ever asks for a key by ``kid``.
"""

from __future__ import annotations

from typing import Any, Protocol

from jwt.algorithms import Algorithm


class VerificationKey(Protocol):
    """One public key, pinned to exactly one algorithm."""

    @property
    def kid(self) -> str: ...

    @property
    def alg(self) -> str: ...

    @property
    def algorithm(self) -> Algorithm: ...

    @property
    def verify_key(self) -> Any: ...


class KeySource(Protocol):
    """Verification keys by ``kid``; never a guess, never a fallback.

    ``check`` and ``verification_key`` run on every request and must not do
    network I/O. ``generation`` changes whenever the set of keys changes (the
    Verifier then drops its verified-token cache). ``wait_for_key`` is the one
    place a request may wait: after ``verification_key`` missed, it waits
    (bounded) for the source to look again, and says whether it knows ``kid`` now.
    """

    @property
    def generation(self) -> int: ...

    def check(self) -> None: ...

    def verification_key(self, kid: str) -> VerificationKey | None: ...

    async def wait_for_key(self, kid: str) -> bool: ...
