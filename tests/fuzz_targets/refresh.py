"""The refresh-token targets: decode only what we issued."""

from __future__ import annotations

from jwtsess import (
    AuthError,
)
from jwtsess.refresh_token import (
    decode_refresh_token,
)

from .core import (
    B64_ALPHABET,
    REFRESH_ERRORS,
    Chooser,
    PropertyFailure,
    _short,
    exception_summary,
    origin,
)
from .mutations import gen_mutations, mutate
from .verifier import VerifierEnv, check_auth_error

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
