"""A DPoP-authenticated request beside a bearer one (RFC 9449), in-process ASGI calls.

Variants, same app and route, same process, interleaved:

1. bare Starlette;
2. jwtsess, bearer, the same token on every request (the hot path);
3. jwtsess, DPoP: the same bound token, a fresh proof on every request (as
   a client sends them: new ``jti``, same key), proofs signed beforehand;
4. one signature verification of the proof's algorithm, alone (the
   ``cryptography`` call the proof check makes, through PyJWT's algorithm object).

Budget (docs/benchmarks.md): DPoP <= (bearer + one proof verification) x 1.2.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator

from starlette.middleware import Middleware

from jwtsess import DPoPKey, DPoPVerifier
from jwtsess.dpop_jwk import proof_key
from jwtsess.web import JWTAuthMiddleware

from .asgi_cost import _app_variant, _bearer, bare_app, make_setup
from .harness import Variant, measure

HTU = "http://bench/"


def _in_chunks(run: Callable[[int], Awaitable[None]]) -> Callable[[int], Awaitable[None]]:
    """Yield to the loop every 200 operations, so the mirror's follower keeps
    hearing from the feed even when a slow (loaded) machine stretches a round."""

    async def chunked(n: int) -> None:
        while n > 0:
            step = min(n, 200)
            await run(step)
            n -= step
            await asyncio.sleep(0)

    return chunked


async def dpop_request(
    proof_alg: str,
    *,
    token_alg: str = "ES256",  # noqa: S107 - an algorithm name
    ops: int,
    rounds: int,
) -> list[Variant]:
    """The four variants above, measured; the proof key signs with ``proof_alg``."""
    setup = await make_setup(token_alg)
    key = DPoPKey.generate(proof_alg)
    bearer_token = setup.tokens(1)[0]
    bound_token = setup.signer.issue("user-b", "user", "sid-b", jkt=key.jkt)[0]
    total = ops * (rounds + 1) + ops
    proofs = iter(
        [key.proof("GET", HTU, access_token=bound_token) for _ in range(total)]
    )  # signed up front: the client's cost is not the server's
    one = key.proof("GET", HTU, access_token=bound_token)
    signing_input, signature = one.rsplit(".", 1)
    checked = proof_key(proof_alg, key.public_jwk)
    raw_signature = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    signed_at = time.time()
    await setup.start()
    # The proofs' clock stands still at their signing time: a slow run (a loaded
    # machine) must not age them out of their 60 s window half-way.
    proofs_checker = DPoPVerifier(clock=lambda: signed_at)
    app = bare_app([Middleware(JWTAuthMiddleware, verifier=setup.verifier(), dpop=proofs_checker)])

    def dpop_headers() -> Iterator[list[tuple[bytes, bytes]]]:
        for proof in proofs:
            yield [
                (b"host", b"bench"),
                (b"authorization", f"DPoP {bound_token}".encode()),
                (b"dpop", proof.encode()),
            ]

    async def verify_signature(n: int) -> None:
        data = signing_input.encode("ascii")
        for _ in range(n):
            if not checked.verify(data, raw_signature):
                raise RuntimeError("the proof's signature did not verify")

    variants = [
        _app_variant("bare Starlette", bare_app(), itertools.repeat([(b"host", b"bench")])),
        _app_variant("jwtsess bearer (hot)", app, itertools.repeat(_bearer(bearer_token))),
        _app_variant(f"jwtsess DPoP, {proof_alg} proof", app, dpop_headers()),
        Variant(f"one {proof_alg} signature verification", verify_signature, []),
    ]
    for variant in variants:
        variant.run = _in_chunks(variant.run)
    try:
        await measure(variants, ops=ops, rounds=rounds)
    finally:
        await setup.close()
    return variants
