"""Fuzz targets shared by tests/test_fuzz.py (hypothesis, bounded) and scripts/fuzz.py (long).

Each target is one function ``example(env, chooser) -> outcome``: it draws its
input through a ``Chooser`` and checks the properties, raising
``PropertyFailure`` when one breaks. The same function runs under hypothesis
(``HypothesisChooser`` over ``st.data()``: shrinking, a replayable database)
and in a plain seeded loop (``RandomChooser``: fast enough for a million
inputs), so both explore the same input space.

The properties (docs/errors.md, docs/http.md):

* verifier: any input either verifies or raises an ``AuthError`` of a
  documented class and code (never another exception), whose ``detail`` can
  be sent as an HTTP answer; a string that verifies is byte-identical to a
  token we issued and yields exactly its claims; the caching and the
  non-caching verifier agree. Tokens signed by any other key (random
  headers and claims, public keys used as HMAC secrets, transplanted
  signatures, ``none``) never verify.
* refresh tokens: ``decode_refresh_token`` raises only ``TokenMalformed`` /
  ``TokenInvalid``, and decodes only a refresh token we issued, to its own
  ``(sid, gen)``.
* HTTP, through the real ASGI app of tests/support/web_app.py on a MemoryStore
  (driven directly, no httpx): never an exception out of the app, never a 500,
  never a traceback; every jwtsess error is ``{"error", "detail"}`` with a
  documented code and status (and a challenge on 401); a protected route
  answers 2xx only after the verifier accepted a token, and every token the
  verifier accepts carries exactly the claims of a token the issuer signed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import random
import string
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import strategies as st
from starlette.types import Message, Scope

from jwtsess import (
    AccessClaims,
    AccessTokenSigner,
    AuthError,
    KeyRing,
    TokenExpired,
    TokenInvalid,
    TokenMalformed,
    TokenSettings,
    UnknownKeyId,
    Verifier,
    init_keys,
    rotate_keys,
)
from jwtsess.access import RESERVED_CLAIMS
from jwtsess.jwk import SigningKey, to_low_s
from jwtsess.keyfiles import read_manifest
from jwtsess.refresh_token import (
    RefreshTokenRef,
    decode_refresh_token,
    encode_refresh_token,
    new_session_id,
)
from jwtsess.store.memory import MemoryStore
from jwtsess.verifier import RevocationCheck
from jwtsess.web import WebConfig, error_response
from tests.support.kit import AUDIENCE, ISSUER, T0, MutableClock, TokenKit
from tests.support.web_app import WebApp, start_web

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


# -- token mutations ---------------------------------------------------------------------------

MUTATION_KINDS: Final = (
    "replace_char",
    "bitflip",
    "insert",
    "delete",
    "truncate",
    "repeat",
    "dots",
    "case",
    "wrap",
    "swap_segments",
    "drop_segment",
    "dup_segment",
    "splice",
    "pad",
    "std_b64",
    "noncanonical",
    "header_member",
    "payload_member",
    "header_raw",
    "payload_raw",
    "sig_bitflip",
    "sig_resize",
    "sig_malleate",
    "sig_zero",
    "sig_transplant",
)
WRAPPERS: Final = (" ", "\t", "\n", "\r\n", "\x00", "\ufeff", '"', "'", "Bearer ", ",", ";")


@dataclass(frozen=True, slots=True)
class Mutation:
    """One edit of a token; ``pos``/``num``/``text``/``value`` parametrise ``kind``."""

    kind: str
    pos: int
    num: int
    text: str
    value: Any


@dataclass(frozen=True, slots=True)
class MutationContext:
    """What mutations splice from: other genuine tokens, and the ring's RSA moduli."""

    corpus: Sequence[str]
    rsa_moduli: Sequence[int] = ()


def gen_fragment(ch: Chooser) -> str:
    kind = ch.integer(0, 3)
    if kind == 0:
        return ch.pick(FRAGMENTS)
    if kind == 1:
        return ch.text(B64_ALPHABET + ".=", 6)
    if kind == 2:
        return ch.text(None, 4)
    return ch.pick(FRAGMENTS) + ch.text(B64_ALPHABET, 3)


def gen_mutation(ch: Chooser) -> Mutation:
    return Mutation(
        kind=ch.pick(MUTATION_KINDS),
        pos=ch.integer(0, 4096),
        num=ch.integer(0, 1 << 16),
        text=gen_fragment(ch),
        value=gen_json(ch),
    )


def gen_mutations(ch: Chooser, most: int = 4) -> tuple[Mutation, ...]:
    return tuple(gen_mutation(ch) for _ in range(ch.integer(1, most)))


def _edit_members(obj: dict[str, Any], m: Mutation, keys: Sequence[str]) -> dict[str, Any]:
    obj = dict(obj)
    known = keys[m.pos % len(keys)]
    action = m.num % 4
    if action == 0:
        obj[m.text or known] = m.value
    elif action == 1:
        obj[known] = m.value
    elif action == 2:
        obj.pop(known, None)
    elif known in obj:
        obj[m.text] = obj.pop(known)
    return obj


def _edit_raw_json(raw: bytes, m: Mutation, keys: Sequence[str]) -> bytes:
    text = raw.decode("utf-8", "replace")
    action = m.num % 11
    at = m.pos % (len(text) + 1)
    if action == 0 and text.startswith("{"):  # a duplicate member, first or last
        member = json.dumps(keys[m.pos % len(keys)]) + ":" + json.dumps(m.value)
        if m.num // 11 % 2:
            text = "{" + member + "," + text[1:]
        else:
            text = text[:-1] + "," + member + "}" if len(text) > 2 else text
    elif action == 1:
        text += m.text
    elif action == 2:
        return b"\xef\xbb\xbf" + raw
    elif action == 3:
        return text.encode("utf-16")
    elif action == 4:
        depth = 1 + m.pos % 2500
        text = "[" * depth + "]" * depth if m.num // 11 % 2 else "[" * depth
    elif action == 5:
        text = text[:at] + " \n\t\r" + text[at:]
    elif action == 6:  # swap the first number for an odd spelling
        start = next((i for i, c in enumerate(text) if c.isdigit()), None)
        if start is not None:
            end = start
            while end < len(text) and (text[end].isdigit() or text[end] in ".eE+-"):
                end += 1
            text = text[:start] + NUMBER_SPELLINGS[m.pos % len(NUMBER_SPELLINGS)] + text[end:]
    elif action == 7:
        text = text[:at] + m.text + text[at:]
    elif action == 8:
        return json_bytes(m.value, m.pos)
    elif action == 9:  # a \\u escape for one letter: the same JSON value, another spelling
        letters = [i for i, c in enumerate(text) if c.isalpha() and c.isascii()]
        if letters:
            i = letters[m.pos % len(letters)]
            text = text[:i] + f"\\u{ord(text[i]):04x}" + text[i + 1 :]
    else:
        quote = text.find('"', at)
        if quote >= 0:
            text = text[: quote + 1] + "\\ud800" + text[quote + 1 :]
    return text.encode("utf-8", "surrogatepass")


def _malleate(sig: bytes, m: Mutation, ctx: MutationContext) -> bytes:
    """Known signature malleations: ECDSA (r, n - s), Ed25519 S + L, RSA s + n."""
    if len(sig) == 64:
        if m.num % 2 == 0:
            s = int.from_bytes(sig[32:], "big")
            if 0 < s < P256_ORDER:
                return sig[:32] + (P256_ORDER - s).to_bytes(32, "big")
        else:
            s = int.from_bytes(sig[32:], "little") + ED25519_ORDER
            if s < 2**256:
                return sig[:32] + s.to_bytes(32, "little")
    for modulus in ctx.rsa_moduli:
        size = (modulus.bit_length() + 7) // 8
        if len(sig) == size:
            s = int.from_bytes(sig, "big") + modulus
            if s < 2 ** (8 * size):
                return s.to_bytes(size, "big")
    return sig


def apply_mutation(token: str, m: Mutation, ctx: MutationContext) -> str:
    kind = m.kind
    n = len(token)
    at = m.pos % (n + 1)
    if kind == "replace_char":
        if not n:
            return m.text
        i = m.pos % n
        return token[:i] + (m.text[:1] or B64_ALPHABET[m.num % 64]) + token[i + 1 :]
    if kind == "bitflip":
        if not n:
            return token
        i = m.pos % n
        return token[:i] + chr(ord(token[i]) ^ (1 << (m.num % 8))) + token[i + 1 :]
    if kind == "insert":
        return token[:at] + m.text + token[at:]
    if kind == "delete":
        return token[:at] + token[at + 1 + m.num % 8 :]
    if kind == "truncate":
        return token[:at]
    if kind == "repeat":
        return token + (m.text or "A") * (m.num % 5000) if m.pos % 2 else token + "." + token
    if kind == "dots":
        return token[:at] + "." * (1 + m.num % 3) + token[at:]
    if kind == "case":
        if not n:
            return token
        i = m.pos % n
        return token[:i] + token[i].swapcase() + token[i + 1 :]
    if kind == "wrap":
        wrapper = WRAPPERS[m.num % len(WRAPPERS)]
        return (wrapper if m.pos % 3 != 1 else "") + token + (wrapper if m.pos % 3 != 0 else "")

    parts = token.split(".")
    i = m.pos % len(parts)
    if kind == "swap_segments":
        j = m.num % len(parts)
        parts[i], parts[j] = parts[j], parts[i]
    elif kind == "drop_segment":
        del parts[i]
    elif kind == "dup_segment":
        parts.insert(i, parts[i])
    elif kind == "splice":
        other = ctx.corpus[m.num % len(ctx.corpus)].split(".")
        parts[i] = other[i % len(other)]
    elif kind == "pad":
        parts[i] += "=" * (1 + m.num % 3)
    elif kind == "std_b64":
        parts[i] = parts[i].replace("-", "+").replace("_", "/")
    elif kind == "noncanonical":
        segment = parts[i]
        unused = {2: 4, 3: 2}.get(len(segment) % 4)
        if unused and segment and segment[-1] in B64_ALPHABET:
            last = B64_ALPHABET.index(segment[-1]) | (1 + m.num % ((1 << unused) - 1))
            parts[i] = segment[:-1] + B64_ALPHABET[last % 64]
    elif kind in ("header_member", "payload_member"):
        i = 0 if kind == "header_member" else min(1, len(parts) - 1)
        keys = HEADER_KEYS if kind == "header_member" else CLAIM_KEYS
        edited = _edit_members(lenient_json_object(parts[i]), m, keys)
        parts[i] = b64_variant(json_bytes(edited, m.num // 4), m.pos // 16)
    elif kind in ("header_raw", "payload_raw"):
        i = 0 if kind == "header_raw" else min(1, len(parts) - 1)
        keys = HEADER_KEYS if kind == "header_raw" else CLAIM_KEYS
        parts[i] = b64_variant(_edit_raw_json(lenient_b64(parts[i]), m, keys), m.num // 121)
    else:
        sig = lenient_b64(parts[-1])
        if kind == "sig_bitflip":
            if sig:
                bit = m.pos % (8 * len(sig))
                flipped = bytearray(sig)
                flipped[bit // 8] ^= 1 << (bit % 8)
                sig = bytes(flipped)
        elif kind == "sig_resize":
            cut = m.pos % (len(sig) + 1)
            sig = sig[:cut] if m.num % 2 else sig + m.text.encode("utf-8", "surrogatepass")
        elif kind == "sig_malleate":
            sig = _malleate(sig, m, ctx)
        elif kind == "sig_zero":
            sig = bytes(len(sig))
        else:  # sig_transplant: a genuine signature over another token's input
            sig = lenient_b64(ctx.corpus[m.num % len(ctx.corpus)].split(".")[-1])
        parts[-1] = b64(sig)
    return ".".join(parts)


def mutate(token: str, mutations: Sequence[Mutation], ctx: MutationContext) -> str:
    for m in mutations:
        token = apply_mutation(token, m, ctx)
    return token


# -- the verifier's world ----------------------------------------------------------------------

RING_ALGORITHMS: Final = ("HS256", "RS256", "ES256", "EdDSA")


def build_key_directory(directory: Path, algorithms: Sequence[str] = RING_ALGORITHMS) -> None:
    """A key directory with one key per algorithm, all verifying; the last one signs.

    The keys activate one second apart from ``T0`` (immediate rotations), so at
    ``NOW`` the last is active and the others are retiring, still verifying.
    """
    clock = MutableClock(T0)
    init_keys(directory, algorithms[0], clock=clock)
    for alg in algorithms[1:]:
        clock.advance(1)
        rotate_keys(directory, alg=alg, immediate=True, clock=clock)


def load_ring(directory: Path) -> tuple[KeyRing, list[SigningKey]]:
    """The ring on a clock frozen at ``NOW`` (no reloads, no stat storms) and its keys."""
    frozen = MutableClock(NOW)
    keyring = KeyRing(directory, clock=frozen, monotonic=frozen)
    manifest, _ = read_manifest(directory)
    keys = []
    for record in manifest.keys:
        key = keyring.verification_key(record.kid)
        assert key is not None
        keys.append(key)
    return keyring, keys


def base_claims(now: float = NOW, **overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "role": "user",
        "sid": "sid-1",
        "jti": "jti-" + hashlib.sha256(repr(sorted(overrides.items())).encode()).hexdigest()[:16],
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + 900,
    }
    claims.update(overrides)
    return claims


def sign_with(key: SigningKey, claims: Mapping[str, Any], header: bytes | None = None) -> str:
    """A token signed by ``key`` exactly as the signer does (or under a raw ``header``)."""
    header_seg = key.header_b64.decode("ascii") if header is None else b64(header)
    signing_input = f"{header_seg}.{b64(json_bytes(dict(claims), 0))}"
    signature = key.algorithm.sign(signing_input.encode("ascii"), key.sign_key)
    if key.alg == "ES256":
        signature = to_low_s(signature)  # as jwtsess signs: one spelling per token
    return f"{signing_input}.{b64(signature)}"


@dataclass(frozen=True, slots=True)
class AttackerKey:
    """A key the attacker holds: ``sign(message) -> signature``, under a nominal ``alg``."""

    name: str
    alg: str
    sign: Callable[[bytes], bytes]


def _hmac_signer(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda message: hmac.new(secret, message, hashlib.sha256).digest()


def _algorithm_signer(alg: str, key: Any) -> Callable[[bytes], bytes]:
    algorithm = jwt.get_algorithm_by_name(alg)
    if alg == "ES256":
        return lambda message: to_low_s(algorithm.sign(message, key))
    return lambda message: algorithm.sign(message, key)


def attacker_keys(ring_keys: Sequence[SigningKey], rng: random.Random) -> list[AttackerKey]:
    """Fresh keys of every algorithm, and the ring's public keys abused as HMAC secrets."""
    keys = [
        AttackerKey("hs-random", "HS256", _hmac_signer(rng.randbytes(32))),
        AttackerKey("hs-empty", "HS256", _hmac_signer(b"")),
        AttackerKey(
            "es-fresh", "ES256", _algorithm_signer("ES256", ec.generate_private_key(ec.SECP256R1()))
        ),
        AttackerKey(
            "ed-fresh", "EdDSA", _algorithm_signer("EdDSA", ed25519.Ed25519PrivateKey.generate())
        ),
        AttackerKey(
            "rs-fresh",
            "RS256",
            _algorithm_signer(
                "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)
            ),
        ),
        AttackerKey("none", "none", lambda message: b""),
        AttackerKey("zeros", "none", lambda message: bytes(64)),
    ]
    for key in ring_keys:
        keys.append(AttackerKey(f"hs-kid-{key.alg}", "HS256", _hmac_signer(key.kid.encode())))
        if key.public_jwk is None:
            continue
        public = key.verify_key
        forms = {
            "pem": public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "der": public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "jwk": json.dumps(dict(key.public_jwk), separators=(",", ":")).encode(),
        }
        for form, secret in forms.items():
            keys.append(AttackerKey(f"hs-{key.alg}-{form}", "HS256", _hmac_signer(secret)))
    return keys


# The envs are plain classes with a short repr, not dataclasses: hypothesis
# pretty-prints a test's arguments field by field, and walking these object
# graphs (keys, lambdas, caches) while it replays an example made it report
# "inconsistent data generation".


class VerifierEnv:
    """A four-key ring, its verifiers, genuine tokens and refresh tokens, attacker keys."""

    def __init__(self, directory: Path, seed: int) -> None:
        keyring, keys = load_ring(directory)
        clock = MutableClock(NOW)
        self.settings = TokenSettings(issuer=ISSUER, audience=AUDIENCE)
        self.keyring = keyring
        self.keys = keys
        # One verifier with the verified-token cache, one that verifies every call afresh.
        self.verifier = Verifier(keyring, self.settings, clock=clock)
        self.uncached = Verifier(
            keyring,
            TokenSettings(issuer=ISSUER, audience=AUDIENCE, verified_cache_size=0),
            clock=clock,
        )
        tokens: list[str] = []
        for key in keys:
            tokens.append(sign_with(key, base_claims(sub=f"user-{key.alg}")))
            tokens.append(sign_with(key, base_claims(aud=[AUDIENCE, "other"], role="admin", n=1)))
            tokens.append(
                sign_with(key, base_claims(sub="\u00e9\u2603", exp=int(NOW) + 5, x=[1.5]))
            )
        signer = AccessTokenSigner(keyring, self.settings, clock=clock)
        tokens.append(signer.issue("bob", "admin", "sid-2")[0])
        tokens.append(signer.issue("carol", "user", "sid-3", extra_claims={"tenant": "t1"})[0])
        # Every genuine token -> its claims (verifying them is the positive control).
        self.issued: dict[str, AccessClaims] = {t: self.uncached.verify(t) for t in tokens}
        self.tokens = tokens
        self.refresh_secret = keyring.refresh_secret
        self.refresh_issued: dict[str, RefreshTokenRef] = {}
        for user, gen in (
            ("alice", 0),
            ("alice", 1),
            ("bob", 7),
            ("carol", 10**15),
            ("eve", 2**53),
        ):
            sid = new_session_id(user)
            token = encode_refresh_token(self.refresh_secret, sid, gen)
            self.refresh_issued[token] = RefreshTokenRef(sid, gen)
        self.refresh_tokens = list(self.refresh_issued)
        self.attackers = attacker_keys(keys, make_rng(seed))
        moduli = [k.verify_key.public_numbers().n for k in keys if k.alg == "RS256"]
        self.context = MutationContext(tokens + self.refresh_tokens[:1], moduli)
        self.refresh_context = MutationContext(self.refresh_tokens + tokens[:1])

    def __repr__(self) -> str:
        algs = ",".join(k.alg for k in self.keys)
        return f"<VerifierEnv keys={algs} tokens={len(self.tokens)}>"


def build_verifier_env(directory: Path, seed: int = 0) -> VerifierEnv:
    """``directory`` must have been made by ``build_key_directory``."""
    return VerifierEnv(directory, seed)


def _verify_object(verifier: Verifier, token: object) -> AccessClaims:
    return verifier.verify(token)  # type: ignore[arg-type]  # fuzzing non-str inputs on purpose


def check_auth_error(error: AuthError, token: object, allowed: frozenset[type[AuthError]]) -> None:
    """A documented class and code, a safe detail, and an answer the middleware can send."""
    if type(error) not in allowed:
        raise PropertyFailure(
            "undocumented error class", f"{type(error).__name__} for {_short(token)}"
        )
    if error.code not in HTTP_CODE_STATUS:
        raise PropertyFailure("undocumented error code", f"{error.code!r} for {_short(token)}")
    if not isinstance(error.detail, str) or not error.detail:
        raise PropertyFailure("error detail is not a string", f"{error!r}")
    if isinstance(token, str) and len(token) >= 16 and token in error.detail:
        raise PropertyFailure("error detail echoes the token", f"{error!r}")
    try:
        error_response(WebConfig(), error)
    except Exception as exc:
        raise PropertyFailure(
            "error cannot be sent as an HTTP answer",
            f"{exception_summary(exc)}; detail={error.detail!r}; token={_short(token)}",
            signature=f"error cannot be sent as an HTTP answer: {origin(exc)}",
        ) from exc


def check_verify(
    env: VerifierEnv,
    token: object,
    *,
    judge: Callable[[AccessClaims], str | None] | None = None,
) -> str:
    """Verify ``token`` with both verifiers; returns "accepted" or the error code.

    An accepted token must be one we issued, with its very claims, unless
    ``judge`` (for tokens signed with our own keys on purpose) says otherwise:
    it returns None to allow the claims, or why they are wrong.
    """
    outcomes: list[str] = []
    for verifier in (env.verifier, env.uncached):
        try:
            claims = _verify_object(verifier, token)
        except AuthError as error:
            check_auth_error(error, token, VERIFIER_ERRORS)
            outcomes.append(error.code)
            continue
        except Exception as error:
            raise PropertyFailure(
                "verifier raised a non-AuthError",
                f"{exception_summary(error)}; token={_short(token)}",
                signature=f"verifier raised {origin(error)}",
            ) from error
        if judge is not None:
            problem = judge(claims)
            if problem is not None:
                raise PropertyFailure("verifier accepted bad claims", f"{problem}; {claims!r}")
        else:
            genuine = env.issued.get(token) if isinstance(token, str) else None
            if genuine is None:
                # Malleability (another spelling of a genuine token: same claims) or forgery.
                what = "same claims" if claims in env.issued.values() else "new claims"
                alg = lenient_json_object(str(token).split(".")[0]).get("alg")
                raise PropertyFailure(
                    "verifier accepted a token that was never issued",
                    f"token={token!r} claims={claims!r}",
                    signature=f"verifier accepted a token never issued ({alg!r}, {what})",
                )
            if claims != genuine:
                raise PropertyFailure(
                    "verifier returned other claims", f"{claims!r} != {genuine!r}"
                )
        outcomes.append("accepted")
    if outcomes[0] != outcomes[1]:
        raise PropertyFailure(
            "cached and uncached verifiers disagree", f"{outcomes} for {_short(token)}"
        )
    return outcomes[0]


# Targets over the verifier. Each returns its outcome, for the campaign's counts.


def verifier_garbage_example(env: VerifierEnv, ch: Chooser) -> str:
    """Arbitrary text, bytes-ish strings, non-strings and three random segments."""
    kind = ch.integer(0, 6)
    token: object
    if kind == 0:
        token = ch.text(None, 64)
    elif kind == 1:
        token = ch.binary(64).decode("latin-1")
    elif kind == 2:
        token = ch.text(B64_ALPHABET + ".=+/ ", 200)
    elif kind == 3:
        token = ch.pick((None, 0, 1.5, b"eyJ.e30.c2ln", ["a.b.c"], {"a": 1}, ("a", "b")))
    elif kind == 4:
        token = ".".join(b64(json_bytes(gen_json(ch), ch.integer(0, 5))) for _ in range(3))
    elif kind == 5:
        segments = [ch.text(B64_ALPHABET, 40) for _ in range(ch.integer(0, 6))]
        token = ".".join(segments)
    else:
        token = "rt1." + ch.text(B64_ALPHABET + ".", 80)
    return check_verify(env, token)


def verifier_mutation_example(env: VerifierEnv, ch: Chooser) -> str:
    """A genuine token after 1-4 mutations: verifies only if it is still a genuine token."""
    original = ch.pick(env.tokens)
    return check_verify(env, mutate(original, gen_mutations(ch), env.context))


def _random_header(ch: Chooser, env: VerifierEnv, attacker: AttackerKey) -> dict[str, Any]:
    header: dict[str, Any] = {}
    real = ch.pick(env.keys)
    if ch.chance(90):
        header["alg"] = pick_or(
            ch, (real.alg, attacker.alg, real.alg, "none", "HS256"), lambda: gen_json(ch)
        )
    if ch.chance(90):
        header["kid"] = pick_or(
            ch, (real.kid, real.kid), lambda: ch.text(None, 8), lambda: gen_json(ch)
        )
    if ch.chance(90):
        header["typ"] = pick_or(ch, ("at+jwt", "at+jwt", "AT+JWT", "JWT"), lambda: gen_json(ch))
    for _ in range(ch.integer(0, 2) if ch.chance(20) else 0):
        header[ch.pick(HEADER_KEYS)] = gen_json(ch)
    return header


def _random_claims(ch: Chooser) -> dict[str, Any]:
    claims = base_claims(sub=ch.pick(("alice", "bob", "admin")), role=ch.pick(("user", "admin")))
    claims["jti"] = ch.text(B64_ALPHABET, 22) or "j"
    for _ in range(ch.integer(0, 3)):
        key = ch.pick(CLAIM_KEYS)
        if ch.chance(15):
            claims.pop(key, None)
        else:
            claims[key] = gen_json(ch)
    return claims


def verifier_forgery_example(env: VerifierEnv, ch: Chooser) -> str:
    """Random headers and claims signed by a key that is not the ring's: never verifies."""
    attacker = ch.pick(env.attackers)
    if attacker.name == "rs-fresh" and not ch.chance(10):  # RSA signing is slow
        attacker = env.attackers[0]
    header = _random_header(ch, env, attacker)
    signing_input = (
        f"{b64(json_bytes(header, ch.integer(0, 5)))}."
        f"{b64(json_bytes(_random_claims(ch), ch.integer(0, 5)))}"
    )
    if attacker.name == "none" and ch.chance(30):
        token = signing_input + "."
    elif ch.chance(10):  # a genuine signature, transplanted
        token = f"{signing_input}.{ch.pick(env.tokens).split('.')[2]}"
    else:
        token = f"{signing_input}.{b64(attacker.sign(signing_input.encode('ascii')))}"
    return check_verify(env, token)


def _claims_judge(payload: Mapping[str, Any], leeway: int) -> Callable[[AccessClaims], str | None]:
    """What the verifier may accept from a payload we signed ourselves (RFC 9068, docs)."""

    def judge(claims: AccessClaims) -> str | None:
        aud = payload.get("aud")

        def date(name: str) -> int | None:
            value = payload.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                return None
            return int(value)

        exp, nbf, iat = date("exp"), date("nbf"), date("iat")
        checks = {
            "iss": payload.get("iss") == ISSUER,
            "aud": aud == AUDIENCE or (isinstance(aud, list) and AUDIENCE in aud),
            "strings": all(
                isinstance(payload.get(n), str)
                and 0 < len(payload[n]) <= 512
                and getattr(claims, n) == payload[n]
                for n in ("sub", "role", "sid", "jti")
            ),
            "live": exp is not None and exp + leeway > NOW,
            "started": nbf is not None and nbf - leeway <= NOW,
            "issued": iat is not None and iat - leeway <= NOW,
            "extra": claims.extra == {k: v for k, v in payload.items() if k not in RESERVED_CLAIMS},
        }
        failed = [name for name, ok in checks.items() if not ok]
        return f"payload {_short(payload)} fails {failed}" if failed else None

    return judge


def verifier_signed_claims_example(env: VerifierEnv, ch: Chooser) -> str:
    """Random claims signed with the ring's own keys: the claim checks never crash, and
    what they accept really is well-formed, current, for us."""
    key = ch.pick(env.keys)
    claims = _random_claims(ch)
    token = sign_with(key, claims)
    return check_verify(env, token, judge=_claims_judge(claims, env.settings.leeway))


# -- refresh tokens ----------------------------------------------------------------------------


def check_refresh_decode(env: VerifierEnv, token: object) -> str:
    try:
        ref = decode_refresh_token(env.refresh_secret, token)
    except AuthError as error:
        check_auth_error(error, token, REFRESH_ERRORS)
        return error.code
    except Exception as error:
        raise PropertyFailure(
            "refresh decoding raised a non-AuthError",
            f"{exception_summary(error)}; token={_short(token)}",
            signature=f"refresh decoding raised {origin(error)}",
        ) from error
    genuine = env.refresh_issued.get(token) if isinstance(token, str) else None
    if genuine is None:
        raise PropertyFailure(
            "a refresh token that was never issued decoded", f"token={token!r} -> {ref!r}"
        )
    if ref != genuine:
        raise PropertyFailure("a refresh token decoded to another (sid, gen)", f"{ref!r}")
    return "accepted"


def refresh_garbage_example(env: VerifierEnv, ch: Chooser) -> str:
    kind = ch.integer(0, 4)
    token: object
    if kind == 0:
        token = ch.text(None, 64)
    elif kind == 1:
        token = "rt1." + ch.text(B64_ALPHABET + ".", 140)
    elif kind == 2:
        sid = ch.text(B64_ALPHABET, 9) + "." + ch.text(B64_ALPHABET, 23)
        token = f"rt1.{sid}.{ch.integer(-5, 10**17)}.{ch.text(B64_ALPHABET, 44)}"
    elif kind == 3:
        token = ch.pick((None, 1, b"rt1.", ["rt1."], 2.5))
    else:
        token = ch.binary(130).decode("latin-1")
    return check_refresh_decode(env, token)


def refresh_mutation_example(env: VerifierEnv, ch: Chooser) -> str:
    original = ch.pick(env.refresh_tokens)
    return check_refresh_decode(env, mutate(original, gen_mutations(ch), env.refresh_context))


# -- HTTP: the real ASGI app, driven directly ---------------------------------------------------


class AcceptRecorder:
    """The verifier's revocation check, recording every claims it lets through."""

    def __init__(self, inner: RevocationCheck) -> None:
        self.inner = inner
        self.accepted: list[AccessClaims] = []

    def check(self, claims: AccessClaims) -> None:
        self.inner.check(claims)
        self.accepted.append(claims)


class RecordingSigner(AccessTokenSigner):
    """The issuer's signer, remembering every access token it issued (by jti)."""

    def __init__(
        self,
        keyring: KeyRing,
        settings: TokenSettings,
        *,
        clock: MutableClock,
        issued: dict[str, AccessClaims],
        sids: dict[str, int],
    ) -> None:
        super().__init__(keyring, settings, clock=clock)
        self.issued = issued
        self.sids = sids  # sid -> how many tokens had been issued when it first appeared

    def issue(
        self,
        sub: str,
        role: str,
        sid: str,
        *,
        extra_claims: Mapping[str, Any] | None = None,
        not_before: int = 0,
        jkt: str | None = None,
    ) -> tuple[str, AccessClaims]:
        token, claims = super().issue(
            sub, role, sid, extra_claims=extra_claims, not_before=not_before, jkt=jkt
        )
        self.issued[claims.jti] = claims
        self.sids.setdefault(sid, len(self.issued))
        return token, claims


HTTP_CONFIG: Final = WebConfig(refresh_limit=200)


class HttpKeys:
    """What every HTTP env shares: a loaded ring, and genuine tokens of another ring."""

    def __init__(self, directory: Path, foreign: Sequence[str]) -> None:
        self.directory = directory
        self.keyring, _ = load_ring(directory)
        self.foreign = foreign

    def __repr__(self) -> str:
        return f"<HttpKeys {self.directory.name}>"


class HttpEnv:
    """One app under fuzz, with its signer and its verifier's acceptances wiretapped."""

    def __init__(
        self,
        web: WebApp,
        recorder: AcceptRecorder,
        issued: dict[str, AccessClaims],
        sids: dict[str, int],
        foreign: Sequence[str],
    ) -> None:
        self.web = web
        self.recorder = recorder
        self.issued = issued  # jti -> claims of every access token the app signed
        self.sids = sids  # every session id the app signed a token for -> when first seen
        self.foreign = foreign
        self.examples = 0

    def __repr__(self) -> str:
        return f"<HttpEnv examples={self.examples} tokens={len(self.issued)}>"


def load_http_keys(directory: Path, foreign: Sequence[str]) -> HttpKeys:
    return HttpKeys(directory, foreign)


async def build_http_env(keys: HttpKeys, config: WebConfig = HTTP_CONFIG) -> HttpEnv:
    """A fresh app (MemoryStore, clock at ``NOW``) with its signer and verifier wiretapped."""
    clock = MutableClock(NOW)
    settings = TokenSettings(issuer=ISSUER, audience=AUDIENCE)
    kit = TokenKit(
        directory=keys.directory,
        clock=clock,
        keyring=keys.keyring,
        settings=settings,
        signer=AccessTokenSigner(keys.keyring, settings, clock=clock),
        verifier=Verifier(keys.keyring, settings, clock=clock),
    )
    web = await start_web(kit, MemoryStore(), config=config)
    issued: dict[str, AccessClaims] = {}
    sids: dict[str, int] = {}
    web.issuer.signer = RecordingSigner(
        keys.keyring, settings, clock=clock, issued=issued, sids=sids
    )
    recorder = AcceptRecorder(web.mirror)
    web.verifier.revocation = recorder
    return HttpEnv(web, recorder, issued, sids, keys.foreign)


ASGI_TIMEOUT: Final = 10.0  # seconds; a request taking longer is reported as a hang


@dataclass
class HttpResult:
    status: int | None
    headers: list[tuple[bytes, bytes]]
    body: bytes
    messages: list[Message]
    error: BaseException | None

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    def header_list(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k.lower() == name]


async def call_asgi(app: Any, scope: Scope, incoming: list[Message]) -> HttpResult:
    """One ASGI call; ``incoming`` is what the client sends, then it disconnects."""
    sent: list[Message] = []
    pending = list(incoming)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        disconnect = "http.disconnect" if scope["type"] == "http" else "websocket.disconnect"
        return {"type": disconnect, "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    error: BaseException | None = None
    try:
        await asyncio.wait_for(app(scope, receive, send), timeout=ASGI_TIMEOUT)
    except Exception as exc:
        error = exc
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = []
    body = b""
    for message in sent:
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")
    return HttpResult(status=status, headers=headers, body=body, messages=sent, error=error)


# The request model. Tokens are named by where they come from and resolved per example.

ACCESS_SOURCES: Final = (
    "access",
    "access",
    "last_access",
    "last_access",
    "other_access",
    "mutated_access",
    "mutated_access",
    "refresh",
    "foreign",
    "random",
    "empty",
)
FLOW_SOURCES: Final = ("last_access",) * 6 + ACCESS_SOURCES  # after an HTTP login
REFRESH_SOURCES: Final = (
    "refresh",
    "refresh",
    "last_refresh",
    "old_refresh",
    "mutated_refresh",
    "mutated_refresh",
    "access",
    "random",
    "empty",
)


@dataclass(frozen=True, slots=True)
class TokenRef:
    source: str
    mutations: tuple[Mutation, ...] = ()
    text: str = ""


@dataclass
class ExampleState:
    """The genuine credentials one HTTP example holds, and what responses gave it."""

    access: str
    refresh: str
    sid: str
    other_access: str
    other_sid: str
    csrf: str
    last_access: str | None = None
    last_refresh: str | None = None
    old_refresh: str | None = None
    last_csrf: str | None = None
    context: MutationContext = field(default_factory=lambda: MutationContext(corpus=("a.b.c",)))


def gen_token_ref(ch: Chooser, sources: Sequence[str]) -> TokenRef:
    source = ch.pick(sources)
    if source.startswith("mutated"):
        return TokenRef(source, gen_mutations(ch, 3))
    if source == "random":
        text = pick_or(ch, (), lambda: ch.text(None, 40), lambda: ch.text(B64_ALPHABET + ".", 200))
        return TokenRef(source, text=text)
    return TokenRef(source)


def resolve_token(ref: TokenRef, state: ExampleState, foreign: Sequence[str]) -> str:
    source = ref.source
    if source == "access":
        return state.access
    if source == "last_access":
        return state.last_access or state.access
    if source == "other_access":
        return state.other_access
    if source == "mutated_access":
        return mutate(state.access, ref.mutations, state.context)
    if source == "refresh":
        return state.refresh
    if source == "last_refresh":
        return state.last_refresh or state.refresh
    if source == "old_refresh":
        return state.old_refresh or state.refresh
    if source == "mutated_refresh":
        return mutate(state.refresh, ref.mutations, state.context)
    if source == "foreign":
        return foreign[len(ref.text) % len(foreign)] if foreign else "a.b.c"
    if source == "random":
        return ref.text
    return ""


# (path, its natural methods); a request mostly uses one of those, else any method.
HTTP_ROUTES: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("/auth/refresh", ("POST",)),
    ("/auth/refresh", ("POST",)),
    ("/auth/refresh", ("POST",)),
    ("/auth/refresh", ("POST",)),
    ("/auth/login", ("POST",)),
    ("/auth/login", ("POST",)),
    ("/auth/login", ("POST",)),
    ("/auth/logout", ("POST",)),
    ("/auth/logout-others", ("POST",)),
    ("/auth/logout-all", ("POST",)),
    ("/auth/sessions", ("GET", "HEAD")),
    ("/auth/sessions/{sid}", ("DELETE",)),
    ("/auth/sessions/{other_sid}", ("DELETE",)),
    ("/auth/sessions/{random}", ("DELETE",)),
    ("/auth/session", ("GET",)),
    ("/auth/session", ("GET",)),
    ("/me", ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")),
    ("/me", ("POST", "PUT", "PATCH", "DELETE")),
    ("/admin", ("GET",)),
    ("/public", ("GET", "POST", "DELETE")),
    ("/.well-known/jwks.json", ("GET",)),
    ("/auth", ("POST", "GET")),  # Starlette's slash redirect
    ("/auth/{random}", ("POST", "GET")),
)
HTTP_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "post", "TRACE")
WS_PATHS: Final = ("/ws", "/ws/admin", "/ws/public")
# A protected route answers 2xx only after the verifier accepted a token.
PROTECTED_PATHS: Final = frozenset(
    {
        "/me",
        "/admin",
        "/auth/logout",
        "/auth/logout-others",
        "/auth/logout-all",
        "/auth/sessions",
        "/auth/session",
        "/ws",
        "/ws/admin",
    }
)
CONTENT_TYPES: Final = (
    b"application/json",
    b"application/json",
    b"application/json; charset=utf-8",
    b"APPLICATION/JSON ;charset=latin-1",
    b"text/plain",
    b"application/json, text/plain",
    b"application/x-www-form-urlencoded",
    b"multipart/form-data; boundary=x",
    b"",
)
CONTENT_LENGTHS: Final = (
    "0",
    "-1",
    "+5",
    " 5",
    "5 ",
    "00",
    "0x10",
    "1e3",
    "\u00b2",
    "1\u00b3",
    "\u00b9" * 3,
    "9" * 20,
    "1" * 5000,
    "8193",
    "",
    "5, 5",
)
ASCII_QUERY: Final = string.ascii_letters + string.digits + "%&=+-_.~"
COOKIE_SEPARATORS: Final = ("; ", ";", ", ", " ;", ";;", "\t")
SHAPES: Final = ("token", "string", "json", "none")


@dataclass(frozen=True, slots=True)
class BodySpec:
    kind: str  # empty, refresh, login, json, text, bytes, deep, big, duplicate
    token: TokenRef | None = None
    shape: str = "token"
    value: Any = None
    extra: Any = None
    raw: bytes = b""
    variant: int = 0


@dataclass(frozen=True, slots=True)
class RequestSpec:
    websocket: bool
    method: str
    path: str
    path_text: str
    authorization: tuple[tuple[str, TokenRef | None, bytes], ...]
    cookies: tuple[tuple[str, TokenRef | None, str], ...]
    raw_cookie: bytes | None
    cookie_separator: str
    csrf: str | None  # None, "state", "last", or a literal value
    content_type: bytes | None
    content_length: str | None  # None: absent; "auto": exact
    chunked: bool
    body: BodySpec
    chunks: int
    user_agent: bytes | None
    client: tuple[str, int] | None
    origin: bytes | None
    query: bytes
    advance: int


def _latin1(ch: Chooser, max_size: int) -> str:
    return ch.binary(max_size).decode("latin-1") if ch.chance(30) else ch.text(None, max_size)


def gen_login_body(ch: Chooser, variant: int) -> BodySpec:
    """The test app's login: the body names the user and role (no password)."""
    user = pick_or(
        ch,
        ("alice", "bob", "mallory", "", "a" * 300),
        lambda: gen_json(ch),
        lambda: ch.text(None, 10),
    )
    role = pick_or(
        ch,
        ("user", "admin", "auditor", "", "\ud800", "\u2603"),
        lambda: gen_json(ch),
        lambda: ch.text(None, 10),
    )
    cookie = pick_or(ch, (True, False, None), lambda: gen_json(ch))
    value = {"user_id": user, "role": role, "cookie": cookie}
    if ch.chance(15):
        value.pop(ch.pick(tuple(value)))
    return BodySpec("login", value=value, variant=variant)


def gen_login_request(ch: Chooser) -> RequestSpec:
    """A well-formed HTTP login (random user, role and mode): the start of a flow."""
    return RequestSpec(
        websocket=False,
        method="POST",
        path="/auth/login",
        path_text="",
        authorization=(),
        cookies=(),
        raw_cookie=None,
        cookie_separator="; ",
        csrf=None,
        content_type=b"application/json",
        content_length="auto",
        chunked=False,
        body=gen_login_body(ch, ch.pick((0, 1, 2, 4, 5))),  # spellings json.loads reads
        chunks=1,
        user_agent=b"fuzz/1.0",
        client=("127.0.0.1", 5000),
        origin=None,
        query=b"",
        advance=0,
    )


def gen_body(ch: Chooser) -> BodySpec:
    kind = ch.pick(
        (
            *("empty", "refresh", "refresh", "refresh", "login", "login"),
            *("json", "text", "bytes", "deep", "big", "duplicate"),
        )
    )
    variant = ch.integer(0, 9)
    if kind in ("refresh", "duplicate"):
        shape = ch.pick(SHAPES)
        extra = {ch.pick(CLAIM_KEYS): gen_json(ch)} if ch.chance(20) else None
        return BodySpec(
            kind, gen_token_ref(ch, REFRESH_SOURCES), shape, gen_json(ch), extra, variant=variant
        )
    if kind == "login":
        return gen_login_body(ch, variant)
    if kind == "json":
        return BodySpec(kind, value=gen_json(ch), variant=variant)
    if kind == "text":
        return BodySpec(kind, raw=ch.text(None, 100).encode("utf-8", "surrogatepass"))
    if kind == "bytes":
        return BodySpec(kind, raw=ch.binary(100))
    if kind == "deep":
        depth = ch.pick((10, 1000, 4000, 100_000))
        return BodySpec(kind, raw=b"[" * depth if ch.chance(50) else b'{"a":' * depth)
    if kind == "big":
        return BodySpec(kind, value={"refresh_token": "x" * ch.pick((8100, 8200, 20000))})
    return BodySpec("empty")


def _gen_cookies(
    ch: Chooser, access_sources: Sequence[str]
) -> tuple[list[tuple[str, TokenRef | None, str]], bytes | None]:
    """A browser's session cookies (mostly), or random ones, or raw bytes."""
    cookies: list[tuple[str, TokenRef | None, str]] = []
    mode = ch.integer(0, 3)
    if mode == 0:
        return cookies, None
    if mode == 1:  # what a logged-in browser sends, give or take
        if ch.chance(85):
            cookies.append((HTTP_CONFIG.access_cookie_name, gen_token_ref(ch, access_sources), ""))
        if ch.chance(80):
            literal = pick_or(ch, ("{csrf}", "{csrf}", "{csrf}", ""), lambda: _latin1(ch, 12))
            cookies.append((HTTP_CONFIG.csrf_cookie_name, None, literal))
        if ch.chance(50):
            cookies.append(
                (HTTP_CONFIG.refresh_cookie_name, gen_token_ref(ch, REFRESH_SOURCES), "")
            )
        return cookies, None
    for _ in range(ch.integer(1, 4)):
        name = pick_or(
            ch,
            (
                HTTP_CONFIG.access_cookie_name,
                HTTP_CONFIG.csrf_cookie_name,
                HTTP_CONFIG.refresh_cookie_name,
                "jwtsess-access",
            ),
            lambda: ch.text(None, 8),
        )
        if ch.chance(40):
            cookies.append((name, None, _latin1(ch, 20)))
        else:
            sources = REFRESH_SOURCES if "refresh" in name else ACCESS_SOURCES
            cookies.append((name, gen_token_ref(ch, sources), ""))
    return cookies, ch.binary(80) if mode == 3 else None


def gen_request(ch: Chooser, access_sources: Sequence[str] = ACCESS_SOURCES) -> RequestSpec:
    websocket = ch.chance(8)
    natural: tuple[str, ...]
    if websocket:
        path, natural = ch.pick(WS_PATHS), ("GET",)
    else:
        path, natural = ch.pick(HTTP_ROUTES)
    method = ch.pick(natural) if ch.chance(80) else ch.pick(HTTP_METHODS)
    if ch.chance(2):
        method = ch.text(string.ascii_letters + "-_ ", 8) or "X"
    authorization: list[tuple[str, TokenRef | None, bytes]] = []
    for _ in range(ch.pick((1, 1, 1, 1, 2)) if ch.chance(50) else 0):
        scheme = ch.pick(("Bearer ", "Bearer ", "bearer ", "BEARER  ", "Bearer", "Basic ", "raw"))
        if scheme == "raw":
            authorization.append((scheme, None, ch.binary(60)))
        else:
            authorization.append((scheme, gen_token_ref(ch, access_sources), b""))
    cookies, raw_cookie = _gen_cookies(ch, access_sources)
    csrf: str | None = None
    if ch.chance(50):
        csrf = pick_or(ch, ("state", "state", "last", ""), lambda: _latin1(ch, 12))
    content_type: bytes | None = None
    if ch.chance(75):
        content_type = pick_or(ch, CONTENT_TYPES, lambda: ch.binary(30))
    content_length: str | None = "auto"
    if ch.chance(20):
        content_length = pick_or(ch, (None, None, *CONTENT_LENGTHS), lambda: _latin1(ch, 4))
    user_agent = pick_or(ch, (None, b"fuzz/1.0", b"u" * 400), lambda: ch.binary(40))
    client = None if ch.chance(5) else (ch.pick(("127.0.0.1", "::1", "10.0.0.7", "x" * 80)), 5000)
    origin = None
    if websocket and ch.chance(70):
        origin = ch.pick((b"https://testserver", b"http://testserver", b"https://evil", b""))
    return RequestSpec(
        websocket=websocket,
        method=method,
        path=path,
        path_text=ch.text(None, 12) if "{random}" in path else "",
        authorization=tuple(authorization),
        cookies=tuple(cookies),
        raw_cookie=raw_cookie,
        cookie_separator=ch.pick(COOKIE_SEPARATORS),
        csrf=csrf,
        content_type=content_type,
        content_length=content_length,
        chunked=ch.chance(10),
        body=gen_body(ch),
        chunks=ch.integer(1, 4),
        user_agent=user_agent,
        client=client,
        origin=origin,
        # ASCII only: servers hand over the raw query, and Starlette's own URL (its
        # slash redirect) fails on non-UTF-8 queries, which is not jwtsess's to fix.
        query=pick_or(ch, (b"", b"", b"access_token=x"), lambda: ch.text(ASCII_QUERY, 20).encode()),
        advance=ch.pick((0,) * 12 + (11, 600, 901, 8 * 24 * 3600)),
    )


def _header_bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def _body_bytes(body: BodySpec, state: ExampleState, foreign: Sequence[str]) -> bytes:
    if body.kind in ("refresh", "duplicate"):
        token: Any
        if body.shape == "token" and body.token is not None:
            token = resolve_token(body.token, state, foreign)
        elif body.shape == "string":
            token = resolve_token(body.token, state, foreign) + " " if body.token else ""
        elif body.shape == "json":
            token = body.value
        else:
            token = None
        value: dict[str, Any] = {"refresh_token": token}
        if body.extra is not None:
            value.update(body.extra)
        encoded = json_bytes(value, body.variant)
        if body.kind == "duplicate":  # the first spelling is garbage, the last wins in json
            encoded = b'{"refresh_token":"garbage",' + encoded.lstrip()[1:]
        if body.variant == 9:
            encoded = encoded.decode("utf-8", "surrogatepass").encode("utf-16", "surrogatepass")
        return encoded
    if body.kind in ("login", "json", "big"):
        return json_bytes(body.value, body.variant)
    return body.raw


def build_request(
    spec: RequestSpec, state: ExampleState, foreign: Sequence[str]
) -> tuple[Scope, list[Message], str, bytes]:
    """The ASGI scope and messages for ``spec``; also the path and the body, for reports."""
    path = spec.path.replace("{sid}", state.sid).replace("{other_sid}", state.other_sid)
    path = path.replace("{random}", spec.path_text)
    headers: list[tuple[bytes, bytes]] = [(b"host", b"testserver")]
    for scheme, ref, raw in spec.authorization:
        header = raw if ref is None else _header_bytes(scheme + resolve_token(ref, state, foreign))
        headers.append((b"authorization", header))
    if spec.cookies or spec.raw_cookie is not None:
        pairs = []
        for name, ref, literal in spec.cookies:
            if ref is not None:
                value = resolve_token(ref, state, foreign)
            elif literal == "{csrf}":
                value = state.last_csrf or state.csrf
            else:
                value = literal
            pairs.append(f"{name}={value}")
        cookie = _header_bytes(spec.cookie_separator.join(pairs))
        if spec.raw_cookie is not None:
            cookie = spec.raw_cookie + b"; " + cookie
        headers.append((b"cookie", cookie))
    if spec.csrf is not None:
        csrf = {"state": state.csrf, "last": state.last_csrf or state.csrf}.get(
            spec.csrf, spec.csrf
        )
        headers.append((HTTP_CONFIG.csrf_header.encode("latin-1"), _header_bytes(csrf)))
    if spec.user_agent is not None:
        headers.append((b"user-agent", spec.user_agent))
    if spec.websocket:
        headers += [(b"connection", b"upgrade"), (b"sec-websocket-version", b"13")]
        if spec.origin is not None:
            headers.append((b"origin", spec.origin))
        scope: Scope = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "wss",
            "server": ("testserver", 443),
            "client": spec.client,
            "root_path": "",
            "path": path,
            "raw_path": path.encode("utf-8", "surrogatepass"),
            "query_string": spec.query,
            "headers": headers,
            "subprotocols": [],
            "state": {},
        }
        return scope, [{"type": "websocket.connect"}], path, b""
    body = _body_bytes(spec.body, state, foreign)
    if spec.content_type is not None:
        headers.append((b"content-type", spec.content_type))
    if spec.content_length == "auto":
        if body or spec.method in ("POST", "PUT", "PATCH"):
            headers.append((b"content-length", str(len(body)).encode()))
    elif spec.content_length is not None:
        headers.append((b"content-length", _header_bytes(spec.content_length)))
    if spec.chunked:
        headers.append((b"transfer-encoding", b"chunked"))
    size = max(1, -(-len(body) // spec.chunks))
    pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages: list[Message] = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": spec.method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogatepass"),
        "root_path": "",
        "query_string": spec.query,
        "headers": headers,
        "client": spec.client,
        "server": ("testserver", 443),
        "state": {},
    }
    return scope, messages, path, body


def _describe(scope: Scope, body: bytes, result: HttpResult) -> str:
    return (
        f"request: {scope['type']} {scope.get('method', '')} {scope['path']!r} "
        f"headers={_short(scope['headers'], 1500)} body={_short(body, 400)}; "
        f"answer: status={result.status} headers={_short(result.headers, 600)} "
        f"body={_short(result.body, 400)} messages={_short(result.messages[:3], 300)}"
    )


def _set_cookies(result: HttpResult) -> list[tuple[str, str, bool]]:
    """(name, value, is_deletion) for every Set-Cookie, in order."""
    cookies = []
    for raw in result.header_list(b"set-cookie"):
        first, *attributes = raw.decode("latin-1").split(";")
        name, _, value = first.strip().partition("=")
        deletion = any(a.strip().lower() == "max-age=0" for a in attributes)
        cookies.append((name, value.strip('"'), deletion))
    return cookies


def check_http_answer(
    env: HttpEnv,
    scope: Scope,
    body: bytes,
    result: HttpResult,
    accepted: Sequence[AccessClaims],
    issued_before: int,
) -> str:
    """Every property of one HTTP or websocket answer; returns an outcome label."""
    where = _describe(scope, body, result)
    if result.error is not None:
        raise PropertyFailure(
            "the app raised",
            f"{exception_summary(result.error, 6)}; {where}",
            signature=f"the app raised {origin(result.error)}",
        ) from result.error
    for claims in accepted:
        genuine = env.issued.get(claims.jti)
        if genuine is None or genuine != claims:
            raise PropertyFailure(
                "the verifier accepted claims the issuer never signed", f"{claims!r}; {where}"
            )
    path = scope["path"]
    protected = path in PROTECTED_PATHS or path.startswith("/auth/sessions/")
    if scope["type"] == "websocket":
        return _check_websocket(result, accepted, protected, path, where)
    status = result.status
    if status is None:
        raise PropertyFailure("no HTTP answer", where)
    if status >= 500 and status != 503:
        raise PropertyFailure(f"HTTP {status}", where)
    if b"Traceback" in result.body or b'File "' in result.body:
        raise PropertyFailure("a traceback in the answer", where)
    code = ""
    content_type = result.header(b"content-type") or b""
    if status >= 400:
        if scope["method"] == "HEAD" and not result.body:
            code = "head"
        elif status in (404, 405) and content_type.startswith(b"text/plain"):
            code = "starlette"  # the router's own answer for no such route / method
        else:
            code = _check_error_body(result, status, where)
    elif 200 <= status < 300 and protected and not accepted:
        raise PropertyFailure("a protected route answered 2xx without a verified token", where)
    if status == 200 and path == "/auth/refresh":
        try:
            answer = json.loads(result.body)
        except ValueError:
            answer = None
        sid = answer.get("session_id") if isinstance(answer, dict) else None
        first_seen = env.sids.get(sid) if isinstance(sid, str) else None
        if first_seen is None or first_seen > issued_before:
            raise PropertyFailure("a refresh succeeded for a session nobody opened", where)
    last: dict[str, bool] = {}
    for name, _, deletion in _set_cookies(result):
        last[name] = deletion
    fresh = {name for name, value, deletion in _set_cookies(result) if value and not deletion}
    for name in fresh:
        if last.get(name):
            raise PropertyFailure("an answer sets a fresh cookie, then deletes it", where)
    return f"{status} {code}".strip()


def _check_error_body(result: HttpResult, status: int, where: str) -> str:
    try:
        answer = json.loads(result.body)
    except ValueError:
        raise PropertyFailure("an error answer is not JSON", where) from None
    if not isinstance(answer, dict) or set(answer) != {"error", "detail"}:
        raise PropertyFailure('an error answer is not {"error", "detail"}', where)
    code, detail = answer["error"], answer["detail"]
    if not isinstance(detail, str) or not detail:
        raise PropertyFailure("an error detail is not a string", where)
    if code not in HTTP_CODE_STATUS or status not in HTTP_CODE_STATUS[code]:
        raise PropertyFailure("an undocumented error code or status", where)
    if "no-store" not in (result.header(b"cache-control") or b"").decode("latin-1"):
        raise PropertyFailure("an error answer without Cache-Control: no-store", where)
    if status == 401:
        challenge = result.header(b"www-authenticate") or b""
        if not challenge.startswith(f'Bearer realm="{HTTP_CONFIG.realm}"'.encode()):
            raise PropertyFailure("a 401 without a Bearer challenge", where)
    return str(code)


def _check_websocket(
    result: HttpResult, accepted: Sequence[AccessClaims], protected: bool, path: str, where: str
) -> str:
    if not result.messages:
        raise PropertyFailure("the websocket got no answer", where)
    first = result.messages[0]
    if first["type"] == "websocket.accept":
        if protected and not accepted:
            raise PropertyFailure("a guarded websocket accepted without a verified token", where)
        if path == "/ws/admin" and not any(c.role == "admin" for c in accepted):
            raise PropertyFailure("the admin websocket accepted a non-admin", where)
        return "ws accept"
    if first["type"] != "websocket.close":
        raise PropertyFailure("the websocket's first message is neither accept nor close", where)
    code, reason = first.get("code", 1000), first.get("reason") or ""
    if code not in (1008, 1013) or reason not in HTTP_CODE_STATUS:
        raise PropertyFailure("an undocumented websocket close", where)
    return f"ws {code} {reason}"


def _learn(state: ExampleState, result: HttpResult, presented_refresh: str | None) -> None:
    """Remember the tokens and CSRF value an answer handed out, as a client would."""
    try:
        answer = json.loads(result.body) if result.body else None
    except ValueError:
        answer = None
    if isinstance(answer, dict):
        if isinstance(answer.get("access_token"), str):
            state.last_access = answer["access_token"]
        if isinstance(answer.get("refresh_token"), str):
            state.old_refresh = presented_refresh or state.refresh
            state.last_refresh = answer["refresh_token"]
    for name, value, deletion in _set_cookies(result):
        if deletion or not value:
            continue
        if name == HTTP_CONFIG.access_cookie_name:
            state.last_access = value
        elif name == HTTP_CONFIG.refresh_cookie_name:
            state.old_refresh = presented_refresh or state.refresh
            state.last_refresh = value
        elif name == HTTP_CONFIG.csrf_cookie_name:
            state.last_csrf = value


async def http_example(env: HttpEnv, ch: Chooser, outcomes: list[str] | None = None) -> list[str]:
    """Two direct logins, then 1-3 fuzzed requests (each may use what the last returned).

    Returns one outcome per request, also appended to ``outcomes`` as they come.
    """
    web = env.web
    role = ch.pick(("user", "admin", "auditor"))
    main = await web.login(ch.pick(("alice", "bob")), role)
    other = await web.login(ch.pick(("bob", "carol")), ch.pick(("user", "admin")))
    state = ExampleState(
        access=main.access_token,
        refresh=main.refresh_token,
        sid=main.session_id,
        other_access=other.access_token,
        other_sid=other.session_id,
        csrf=ch.pick(("csrf-value-123", "", "\u00e9t\u00e9")),
        context=MutationContext(corpus=(main.access_token, other.access_token, main.refresh_token)),
    )
    if outcomes is None:
        outcomes = []
    # A quarter of the examples are flows: log in over HTTP, then use what came back.
    flow = ch.chance(25)
    for i in range(ch.integer(2, 3) if flow else ch.integer(1, 3)):
        if flow and i == 0:
            spec = gen_login_request(ch)
        else:
            spec = gen_request(ch, FLOW_SOURCES if flow else ACCESS_SOURCES)
        web.clock.advance(spec.advance)
        scope, messages, _, body = build_request(spec, state, env.foreign)
        env.recorder.accepted.clear()
        issued_before = len(env.issued)
        result = await call_asgi(web.app, scope, messages)
        accepted = list(env.recorder.accepted)
        outcomes.append(check_http_answer(env, scope, body, result, accepted, issued_before))
        presented = None
        if spec.body.token is not None:
            presented = resolve_token(spec.body.token, state, env.foreign)
        _learn(state, result, presented)
    env.examples += 1
    return outcomes
