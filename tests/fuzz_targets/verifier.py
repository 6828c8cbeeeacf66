"""The verifier's world: a key ring, attacker keys, and the verifier targets."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from jwtsess import (
    AccessClaims,
    AccessTokenSigner,
    AuthError,
    KeyRing,
    TokenSettings,
    Verifier,
    init_keys,
    rotate_keys,
)
from jwtsess.access import RESERVED_CLAIMS
from jwtsess.jwk import SigningKey, to_low_s
from jwtsess.keyfiles import read_manifest
from jwtsess.refresh_token import (
    RefreshTokenRef,
    encode_refresh_token,
    new_session_id,
)
from jwtsess.web import WebConfig, error_response
from tests.support.kit import AUDIENCE, ISSUER, T0, MutableClock

from .core import (
    B64_ALPHABET,
    HTTP_CODE_STATUS,
    NOW,
    VERIFIER_ERRORS,
    Chooser,
    PropertyFailure,
    _short,
    exception_summary,
    make_rng,
    origin,
    pick_or,
)
from .mutations import MutationContext, gen_mutations, mutate
from .values import CLAIM_KEYS, HEADER_KEYS, b64, gen_json, json_bytes, lenient_json_object

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
