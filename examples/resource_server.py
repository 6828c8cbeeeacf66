"""A service that only verifies (``python -m examples.resource_server``).

It holds no secret: no private key, no refresh secret, no key directory (it
never reads one). It gets the issuer's public keys from its JWKS URL
(``JWKSKeySource``) and, when ``REDIS_URL`` is set, revocations from the feed
through a Redis user that can only read it (docs/verify-only.md has the ACL
line). It serves ``GET /me``: the verified claims as JSON, 401 otherwise.

Configuration comes from the environment:

- ``JWTSESS_JWKS_URL`` (required): the issuer's JWKS, e.g.
  ``http://127.0.0.1:8000/.well-known/jwks.json``;
- ``JWTSESS_ISSUER`` (required): the ``iss`` its tokens must carry;
- ``JWTSESS_AUDIENCE``: the ``aud`` they must name (default ``jwtsess-demo``);
- ``REDIS_URL``: the issuer's Redis, as the read-only user
  (``redis://jwtsess-reader:PASSWORD@host:6379/0``). Without it there is no
  revocation check: a logged-out token keeps working here until it expires,
  and the service says so at start-up;
- ``HOST`` / ``PORT``: where uvicorn listens (default 127.0.0.1:8001).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jwtsess import JWKSKeySource, RedisStore, RevocationMirror, TokenSettings, Verifier
from jwtsess.web import JWTAuthMiddleware, JWTUser, WebConfig, require_auth

logger = logging.getLogger("jwtsess.resource_server")

NO_REVOCATION_WARNING = (
    "no REDIS_URL: revocations are NOT checked here; a logged-out or revoked token "
    "keeps working on this service until it expires"
)


@dataclass(frozen=True)
class ResourceConfig:
    jwks_url: str
    issuer: str
    audience: str
    redis_url: str | None
    host: str
    port: int

    @classmethod
    def from_env(cls) -> ResourceConfig:
        missing = [
            name for name in ("JWTSESS_JWKS_URL", "JWTSESS_ISSUER") if not os.environ.get(name)
        ]
        if missing:
            raise SystemExit(f"resource server: set {' and '.join(missing)}")
        return cls(
            jwks_url=os.environ["JWTSESS_JWKS_URL"],
            issuer=os.environ["JWTSESS_ISSUER"],
            audience=os.environ.get("JWTSESS_AUDIENCE") or "jwtsess-demo",
            redis_url=os.environ.get("REDIS_URL") or None,
            host=os.environ.get("HOST", "127.0.0.1"),
            port=int(os.environ.get("PORT", "8001")),
        )


def create_app(config: ResourceConfig) -> Starlette:
    keys = JWKSKeySource.from_url(config.jwks_url)
    settings = TokenSettings(issuer=config.issuer, audience=config.audience)
    store = RedisStore.from_url(config.redis_url) if config.redis_url else None
    mirror = RevocationMirror(store) if store is not None else None
    verifier = Verifier(keys, settings, revocation=mirror)
    web = WebConfig(secure=False, cookies=False)  # a bearer-only API

    @require_auth()
    async def me(request: Request) -> Response:
        user: JWTUser = request.user
        return JSONResponse(user.claims.as_dict())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if mirror is None:
            logger.warning(NO_REVOCATION_WARNING)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(keys)
            if mirror is not None and store is not None:
                stack.push_async_callback(store.close)
                await stack.enter_async_context(mirror)
            yield

    return Starlette(
        routes=[Route("/me", me)],
        middleware=[Middleware(JWTAuthMiddleware, verifier=verifier, config=web)],
        lifespan=lifespan,
    )


def main() -> None:
    import uvicorn

    config = ResourceConfig.from_env()
    print(f"resource server: keys from {config.jwks_url} (no key directory, no secret)")
    print(f"resource server: iss {config.issuer!r}, aud {config.audience!r}")
    if config.redis_url:
        print("resource server: revocations from the Redis feed (read-only user)")
    else:
        print(f"resource server: WARNING: {NO_REVOCATION_WARNING}", file=sys.stderr)
    print(f"resource server: GET http://{config.host}:{config.port}/me", flush=True)
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="info")


if __name__ == "__main__":
    main()
