"""Shared by every target: the failure type, and the choosers (one input generator, two drivers)."""

from __future__ import annotations

import random
import string
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final, TypeVar

from hypothesis import strategies as st

from jwtsess import (
    TokenExpired,
    TokenInvalid,
    TokenMalformed,
    UnknownKeyId,
)
from tests.support.kit import T0

T = TypeVar("T")

B64_ALPHABET: Final = string.ascii_letters + string.digits + "-_"
NOW: Final = T0 + 10  # the fuzzed verifiers' "now": after every key of the ring activated
P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ED25519_ORDER: Final = 2**252 + 27742317777372353535851937790883648493

# What the verifier may raise (exact classes) and the codes they carry (docs/errors.md).
VERIFIER_ERRORS: Final = frozenset({TokenMalformed, TokenInvalid, UnknownKeyId, TokenExpired})
VERIFIER_CODES: Final = frozenset({"token_malformed", "token_invalid", "token_expired"})
REFRESH_ERRORS: Final = frozenset({TokenMalformed, TokenInvalid})
# Every code an HTTP answer may carry, with the statuses docs/http.md allows for it.
HTTP_CODE_STATUS: Final[Mapping[str, frozenset[int]]] = {
    "token_missing": frozenset({401}),
    "token_malformed": frozenset({401}),
    "token_expired": frozenset({401}),
    "token_invalid": frozenset({401}),
    "token_revoked": frozenset({401}),
    "session_not_found": frozenset({401, 404}),
    "refresh_reused": frozenset({401}),
    "insufficient_role": frozenset({403}),
    "csrf_failed": frozenset({403}),
    "bad_request": frozenset({400}),
    "rate_limited": frozenset({429}),
    "store_unavailable": frozenset({503}),
    "claims_unavailable": frozenset({503}),
    "revocation_state_stale": frozenset({503}),
}


class PropertyFailure(AssertionError):
    """A fuzzed property broke. ``kind`` names the property; the message holds the input.

    ``signature`` tells distinct bugs apart (the campaign reports each once): the
    kind, plus where an unexpected exception came from or what was accepted.
    """

    def __init__(self, kind: str, message: str, *, signature: str | None = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.signature = signature or kind


def origin(error: BaseException) -> str:
    """Type and innermost frame of an exception: ``UnicodeEncodeError@responses.py:64``."""
    stack = traceback.extract_tb(error.__traceback__)
    where = f"{Path(stack[-1].filename).name}:{stack[-1].lineno}" if stack else "?"
    return f"{type(error).__name__}@{where}"


def exception_summary(error: BaseException, frames: int = 4) -> str:
    """``Type: message`` and the innermost frames, for failure reports."""
    stack = traceback.extract_tb(error.__traceback__)[-frames:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack))
    return f"{type(error).__name__}: {error} [at {where}]"


def _short(value: object, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


# -- choosers: one input generator, two drivers ------------------------------------------------


class Chooser(ABC):
    """Where a target's random decisions come from (hypothesis, or a seeded Random)."""

    @abstractmethod
    def integer(self, lo: int, hi: int) -> int: ...

    @abstractmethod
    def pick(self, options: Sequence[T]) -> T: ...

    @abstractmethod
    def chance(self, percent: int) -> bool:
        """True with about ``percent`` % probability (shrinks to False)."""

    @abstractmethod
    def text(self, alphabet: str | None, max_size: int) -> str:
        """A string of at most ``max_size`` characters; ``alphabet`` None means any unicode."""

    @abstractmethod
    def binary(self, max_size: int) -> bytes: ...


class HypothesisChooser(Chooser):
    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def pick(self, options: Sequence[T]) -> T:
        return options[self.data.draw(st.integers(0, len(options) - 1))]

    def chance(self, percent: int) -> bool:
        return self.data.draw(st.integers(0, 99)) >= 100 - percent

    def text(self, alphabet: str | None, max_size: int) -> str:
        if alphabet is None:
            return self.data.draw(st.text(max_size=max_size))
        return self.data.draw(st.text(alphabet=alphabet, max_size=max_size))

    def binary(self, max_size: int) -> bytes:
        return self.data.draw(st.binary(max_size=max_size))


def _random_char(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.55:
        return chr(rng.randint(0x20, 0x7E))
    if r < 0.62:
        return chr(rng.randint(0, 0x1F))
    if r < 0.80:
        return chr(rng.randint(0x7F, 0xFF))
    if r < 0.97:
        code = rng.randint(0x100, 0xFFFD)
        return chr(0x2603 if 0xD800 <= code <= 0xDFFF else code)
    return chr(rng.randint(0x10000, 0x10FFFF))


class RandomChooser(Chooser):
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def pick(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def chance(self, percent: int) -> bool:
        return self.rng.randrange(100) < percent

    def _size(self, max_size: int) -> int:
        # Mostly short, sometimes up to the maximum (like hypothesis' own bias).
        if max_size <= 0:
            return 0
        if self.rng.random() < 0.1:
            return self.rng.randint(0, max_size)
        return min(max_size, int(self.rng.expovariate(1.0 / min(8, max_size))))

    def text(self, alphabet: str | None, max_size: int) -> str:
        size = self._size(max_size)
        if alphabet is None:
            return "".join(_random_char(self.rng) for _ in range(size))
        return "".join(self.rng.choice(alphabet) for _ in range(size))

    def binary(self, max_size: int) -> bytes:
        return self.rng.randbytes(self._size(max_size))


def pick_or(ch: Chooser, options: Sequence[T], *makers: Callable[[], T]) -> T:
    """One of ``options``, or what one of ``makers`` makes: only a chosen maker draws.

    (Fewer draws per example make hypothesis faster, and its shrinking much faster.)
    """
    i = ch.integer(0, len(options) + len(makers) - 1)
    return options[i] if i < len(options) else makers[i - len(options)]()


def make_rng(seed: int) -> random.Random:
    """A seeded, reproducible generator (fuzzing input, not secrets)."""
    return random.Random(seed)
