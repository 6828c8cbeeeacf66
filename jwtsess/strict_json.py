"""JSON as jwtsess reads JOSE documents (token headers and claims, JWK sets): strictly.

A member may appear once (``DuplicateMember`` otherwise: two parsers could
read two different values); ``NaN`` and ``Infinity`` are not JSON; an integer
has at most 20 digits (past any date, and ``int()`` on long digit strings is
quadratic); a float must be finite.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

MAX_INT_DIGITS: Final = 20


class DuplicateMember(ValueError):
    """An object names one member twice."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise DuplicateMember("duplicate member")
    return obj


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError("integer too long")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("non-finite number")
    return value


_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_no_duplicates,
    parse_constant=_no_constants,
    parse_int=_bounded_int,
    parse_float=_finite_float,
)


def loads(text: str) -> Any:
    """Parse ``text``.

    :raises DuplicateMember: an object names a member twice.
    :raises ValueError: not JSON, or a number out of bounds.
    :raises RecursionError: nested too deeply.
    """
    return _DECODER.decode(text)
