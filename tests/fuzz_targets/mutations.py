"""Token mutations: edits of a compact JWS that an attacker might try."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from .core import B64_ALPHABET, ED25519_ORDER, P256_ORDER, Chooser
from .values import (
    CLAIM_KEYS,
    FRAGMENTS,
    HEADER_KEYS,
    NUMBER_SPELLINGS,
    b64,
    b64_variant,
    gen_json,
    json_bytes,
    lenient_b64,
    lenient_json_object,
)

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
