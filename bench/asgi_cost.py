"""Per-request cost of authentication, in-process ASGI calls, against what users would write.

Variants, same app and route, same process, interleaved:

1. bare Starlette;
2. Starlette's AuthenticationMiddleware with a backend calling PyJWT.decode;
3. the same plus one Redis GET per request against a denylist;
4. jwtsess, the same token on every request (hot);
5. jwtsess, a fresh token on every request (cold);
6. jwtsess with a JWKS key source (a service that only verifies), hot; RS256,
   ES256 and EdDSA (a JWKS holds no HMAC key).

And verification alone: PyJWT.decode beside the jwtsess verifier, hot and cold,
with the local KeyRing and with a JWKS key source side by side.
"""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    SimpleUser,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from jwtsess import (
    AccessTokenSigner,
    JWKSKeySource,
    KeyRing,
    MemoryStore,
    RevocationMirror,
    TokenSettings,
    Verifier,
    init_keys,
)
from jwtsess.web import JWTAuthMiddleware

from .harness import Variant, call, http_scope, measure

ISSUER = "https://auth.bench.test"
AUDIENCE = "api.bench.test"


async def endpoint(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def bare_app(middleware: list[Middleware] | None = None) -> Starlette:
    return Starlette(routes=[Route("/", endpoint)], middleware=middleware or [])


class PyJWTBackend(AuthenticationBackend):
    """What a user writes by hand: PyJWT.decode with a key loaded once."""

    def __init__(self, key: Any, alg: str, denylist: aioredis.Redis | None = None) -> None:
        self.key, self.alg, self.denylist = key, alg, denylist

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        header = conn.headers.get("authorization")
        if not header:
            return None
        _, _, token = header.partition(" ")
        try:
            claims = jwt.decode(
                token, self.key, algorithms=[self.alg], audience=AUDIENCE, issuer=ISSUER
            )
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError("invalid token") from exc
        if self.denylist is not None and await self.denylist.exists(f"deny:{claims['jti']}"):
            raise AuthenticationError("revoked")
        return AuthCredentials(["authenticated", claims["role"]]), SimpleUser(claims["sub"])


@dataclass
class Setup:
    alg: str
    keyring: KeyRing
    settings: TokenSettings
    signer: AccessTokenSigner
    mirror: RevocationMirror

    async def start(self) -> None:
        """Load the mirror and follow the feed (its task wakes once a second).

        Call it after minting the tokens: minting thousands of RS256 tokens
        blocks the loop for seconds, and a mirror not heard from for 5 s rightly
        answers 503.
        """
        await self.mirror.start()

    async def close(self) -> None:
        await self.mirror.stop()

    def verifier(self) -> Verifier:
        return Verifier(self.keyring, self.settings, revocation=self.mirror)

    def jwks_verifier(self) -> Verifier:
        """A verify-only service's verifier: the ring's published JWKS, public keys only."""
        path = self.keyring.directory.parent / f"{self.keyring.directory.name}-jwks.json"
        path.write_text(json.dumps(self.keyring.jwks()))
        return Verifier(JWKSKeySource.from_file(path), self.settings, revocation=self.mirror)

    def tokens(self, count: int) -> list[str]:
        return [self.signer.issue(f"user-{i}", "user", f"sid-{i}")[0] for i in range(count)]

    @property
    def pyjwt_key(self) -> Any:
        return self.keyring.signing_key().verify_key


async def make_setup(alg: str) -> Setup:
    directory = tempfile.mkdtemp(prefix=f"jwtsess-bench-{alg}-")
    init_keys(directory, alg)
    keyring = KeyRing(directory)
    settings = TokenSettings(issuer=ISSUER, audience=AUDIENCE, verified_cache_size=10_000)
    store = MemoryStore()
    # A cold run of 2000 ES256 verifications holds the loop for seconds on a busy
    # machine; the follower cannot read meanwhile, so allow more than the default 5 s
    # of silence (the check costs the same).
    mirror = RevocationMirror(store, stale_after=30.0, block=1.0)
    # Some live revocations, as in production.
    now = time.time()
    for i in range(100):
        await store.revoke_token(f"revoked-{i}", now=now, until=now + 900)
    return Setup(alg, keyring, settings, AccessTokenSigner(keyring, settings), mirror)


def _bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())]


def _app_variant(
    name: str,
    app: ASGIApp,
    headers: Iterator[list[tuple[bytes, bytes]]],
    detail: Callable[[], str] = lambda: "",
) -> Variant:
    async def run(n: int) -> None:
        for _ in range(n):
            status = await call(app, http_scope("/", next(headers)))
            if status != 200:
                raise RuntimeError(f"{name}: status {status} ({detail()})")

    return Variant(name, run, [])


async def per_request(alg: str, *, ops: int, rounds: int, redis_url: str | None) -> list[Variant]:
    setup = await make_setup(alg)
    hot = setup.tokens(1)[0]
    cold = iter(setup.tokens(ops * (rounds + 1) + ops))
    await setup.start()
    denylist = aioredis.Redis.from_url(redis_url) if redis_url else None
    variants = [
        _app_variant("bare Starlette", bare_app(), itertools.repeat([(b"host", b"bench")])),
        _app_variant(
            "AuthenticationMiddleware + PyJWT.decode",
            bare_app(
                [Middleware(AuthenticationMiddleware, backend=PyJWTBackend(setup.pyjwt_key, alg))]
            ),
            itertools.repeat(_bearer(hot)),
        ),
    ]
    if denylist is not None:
        variants.append(
            _app_variant(
                "... + Redis GET denylist",
                bare_app(
                    [
                        Middleware(
                            AuthenticationMiddleware,
                            backend=PyJWTBackend(setup.pyjwt_key, alg, denylist),
                        )
                    ]
                ),
                itertools.repeat(_bearer(hot)),
            )
        )
    jwtsess_app = bare_app([Middleware(JWTAuthMiddleware, verifier=setup.verifier())])

    def mirror_state() -> str:
        m = setup.mirror
        return f"alg {alg}, mirror healthy={m.healthy}, lag={m.lag():.2f}s"

    variants.append(
        _app_variant(
            "jwtsess (hot: same token)", jwtsess_app, itertools.repeat(_bearer(hot)), mirror_state
        )
    )
    cold_app = bare_app([Middleware(JWTAuthMiddleware, verifier=setup.verifier())])
    variants.append(
        _app_variant("jwtsess (cold: fresh token)", cold_app, (_bearer(t) for t in cold))
    )
    if alg != "HS256":  # a verify-only service: the same middleware on the published JWKS
        jwks_app = bare_app([Middleware(JWTAuthMiddleware, verifier=setup.jwks_verifier())])
        variants.append(
            _app_variant(
                "jwtsess, JWKS keys (hot)", jwks_app, itertools.repeat(_bearer(hot)), mirror_state
            )
        )
    try:
        await measure(variants, ops=ops, rounds=rounds)
    finally:
        await setup.close()
        if denylist is not None:
            await denylist.aclose()
    return variants


async def verify_only(alg: str, *, ops: int, rounds: int) -> list[Variant]:
    """PyJWT.decode, then jwtsess hot and cold with the local KeyRing and, for the
    asymmetric algorithms, the same with a JWKS key source (a service that only verifies).
    """
    published = alg != "HS256"
    setup = await make_setup(alg)
    hot = setup.tokens(1)[0]
    # One stream of fresh tokens shared by both cold variants: each verifier sees
    # every token it gets for the first time.
    cold_tokens = iter(setup.tokens((ops * (rounds + 1) + ops) * (2 if published else 1)))
    await setup.start()
    key = setup.pyjwt_key
    hot_verifier = setup.verifier()
    cold_verifier = setup.verifier()

    async def pyjwt_decode(n: int) -> None:
        for _ in range(n):
            jwt.decode(hot, key, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER)

    async def jwtsess_hot(n: int) -> None:
        for _ in range(n):
            hot_verifier.verify(hot)

    async def jwtsess_cold(n: int) -> None:
        for _ in range(n):
            cold_verifier.verify(next(cold_tokens))

    variants = [
        Variant("PyJWT.decode", pyjwt_decode, []),
        Variant("jwtsess verify (hot)", jwtsess_hot, []),
        Variant("jwtsess verify (cold)", jwtsess_cold, []),
    ]
    if published:
        jwks_hot_verifier = setup.jwks_verifier()
        jwks_cold_verifier = setup.jwks_verifier()

        async def jwks_hot(n: int) -> None:
            for _ in range(n):
                jwks_hot_verifier.verify(hot)

        async def jwks_cold(n: int) -> None:
            for _ in range(n):
                jwks_cold_verifier.verify(next(cold_tokens))

        variants += [
            Variant("jwtsess verify, JWKS keys (hot)", jwks_hot, []),
            Variant("jwtsess verify, JWKS keys (cold)", jwks_cold, []),
        ]
    try:
        await measure(variants, ops=ops, rounds=rounds)
    finally:
        await setup.close()
    return variants
