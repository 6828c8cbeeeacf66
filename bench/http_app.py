"""The two apps the HTTP benchmark serves: the same route with and without jwtsess.

Run by uvicorn as factories (``bench.http_app:plain_app`` / ``auth_app``).
``auth_app`` reads its key directory from ``JWTSESS_BENCH_KEYS``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from jwtsess import KeyRing, MemoryStore, RevocationMirror, TokenSettings, Verifier
from jwtsess.web import JWTAuthMiddleware, require_auth

ISSUER = "https://auth.bench.test"
AUDIENCE = "api.bench.test"


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def plain_app() -> Starlette:
    return Starlette(routes=[Route("/", hello)])


def auth_app() -> Starlette:
    keyring = KeyRing(os.environ["JWTSESS_BENCH_KEYS"])
    settings = TokenSettings(issuer=ISSUER, audience=AUDIENCE, access_ttl=900)
    mirror = RevocationMirror(MemoryStore())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await mirror.start()
        yield
        await mirror.stop()

    return Starlette(
        routes=[Route("/", require_auth()(hello))],
        middleware=[
            Middleware(JWTAuthMiddleware, verifier=Verifier(keyring, settings, revocation=mirror))
        ],
        lifespan=lifespan,
    )
