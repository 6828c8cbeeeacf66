"""JSON values and interesting constants the targets draw from."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Final

from tests.support.kit import AUDIENCE, ISSUER

from .core import NOW, Chooser

# -- JSON values and interesting constants -----------------------------------------------------

INTERESTING_STRINGS: Final = (
    "",
    " ",
    "at+jwt",
    "AT+JWT",
    "application/at+jwt",
    "JWT",
    "none",
    "None",
    "HS256",
    "RS256",
    "ES256",
    "EdDSA",
    "RS512",
    "HS512",
    "alice",
    "admin",
    "user",
    ISSUER,
    AUDIENCE,
    "\x00",
    "\ud800",  # a lone surrogate (JSON can spell it: "\\ud800")
    "a\udfffb",
    "\u2603",
    "\u00e9",
    "\u00b2",
    "\u202e",
    "\ufeff",
    "\r\n",
    '"',
    "\\",
    "../../etc/passwd",
    "rt1.",
    "x" * 129,
    "y" * 600,
)
INTERESTING_NUMBERS: Final[tuple[int | float, ...]] = (
    0,
    -1,
    1,
    int(NOW),
    int(NOW) + 1,
    int(NOW) - 1,
    int(NOW) + 900,
    int(NOW) - 900,
    int(NOW) + 10**6,
    2**31,
    2**53 + 1,
    2**63,
    10**19,
    10**20,
    10**25,
    -(10**25),
    NOW + 0.5,
    1e300,
    -1e300,
    5e-324,
    -0.0,
    0.5,
)
NUMBER_SPELLINGS: Final = (
    "1e999",
    "-1e999",
    "NaN",
    "Infinity",
    "-Infinity",
    "-0",
    "1.0",
    "1E400",
    "0x10",
    "01",
    "9" * 21,
    "9" * 5000,
    "1" + "0" * 30,
    "1.5e308",
    "true",
    "null",
)
HEADER_KEYS: Final = (
    "alg",
    "kid",
    "typ",
    "jwk",
    "jku",
    "x5u",
    "x5c",
    "x5t",
    "crit",
    "b64",
    "cty",
    "enc",
    "zip",
    "\u2603",
    "\u00e9",
    "a\r\nb",
)
CLAIM_KEYS: Final = (
    "iss",
    "aud",
    "sub",
    "role",
    "sid",
    "jti",
    "iat",
    "nbf",
    "exp",
    "scope",
    "extra",
    "__proto__",
)
FRAGMENTS: Final = (
    ".",
    "..",
    "=",
    "==",
    "+",
    "/",
    " ",
    "\t",
    "\n",
    "\x00",
    "rt1.",
    "Bearer ",
    "\u2603",
    "\u00e9",
    "\ufeff",
    "%2E",
    "eyJ",
    "e30",
    "AAAA",
    "\U0001d7d8",
)


def gen_json(ch: Chooser, depth: int = 0) -> Any:
    """A JSON value (python side; strings may hold lone surrogates, as JSON can)."""
    kind = ch.integer(0, 9 if depth < 3 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return ch.chance(50)
    if kind == 2:
        return ch.integer(-1000, 1000)
    if kind == 3:
        return ch.pick(INTERESTING_NUMBERS)
    if kind == 4:
        return ch.integer(-(2**70), 2**70)
    if kind == 5:
        return ch.text(None, 12)
    if kind in (6, 7):
        return ch.pick(INTERESTING_STRINGS)
    if kind == 8:
        return [gen_json(ch, depth + 1) for _ in range(ch.integer(0, 3))]
    return {
        ch.pick(CLAIM_KEYS + HEADER_KEYS): gen_json(ch, depth + 1) for _ in range(ch.integer(0, 3))
    }


def json_bytes(value: Any, variant: int) -> bytes:
    """``value`` as JSON in one of several spellings (all decoding to the same value)."""
    v = variant % 6
    if v == 0:
        text = json.dumps(value, separators=(",", ":"))
    elif v == 1:
        text = json.dumps(value)
    elif v == 2:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    elif v == 3:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    elif v == 4:
        text = json.dumps(value, indent=1)
    else:
        text = json.dumps(value, separators=(",", ":")) + "\n"
    return text.encode("utf-8", "surrogatepass")


def b64(data: bytes) -> str:
    """Canonical unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64_variant(data: bytes, variant: int) -> str:
    """Canonical base64url mostly; sometimes padded or in the standard alphabet."""
    v = variant % 8
    if v == 6:
        return base64.urlsafe_b64encode(data).decode("ascii")  # padded
    if v == 7:
        return base64.b64encode(data).decode("ascii").rstrip("=")  # '+' and '/'
    return b64(data)


def lenient_b64(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return b""


def lenient_json_object(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(lenient_b64(segment))
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}
