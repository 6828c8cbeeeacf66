"""The jwtsess demo service (``make run``).

Configuration comes from the environment:

- ``HOST`` / ``PORT``: where uvicorn listens (default 127.0.0.1:8000);
- ``JWTSESS_KEYS_DIR``: the key directory (default ``keys``; dev keys are
  generated there on first start);
- ``JWTSESS_ALG``: algorithm of generated dev keys (default RS256);
- ``JWTSESS_ACCESS_TTL``: access-token lifetime in seconds (default 900).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from jwtsess import KeyRing
from jwtsess.keytool import ensure_keys


@dataclass(frozen=True)
class DemoConfig:
    host: str
    port: int
    keys_dir: str
    alg: str
    access_ttl: int

    @classmethod
    def from_env(cls) -> DemoConfig:
        return cls(
            host=os.environ.get("HOST", "127.0.0.1"),
            port=int(os.environ.get("PORT", "8000")),
            keys_dir=os.environ.get("JWTSESS_KEYS_DIR", "keys"),
            alg=os.environ.get("JWTSESS_ALG", "RS256"),
            access_ttl=int(os.environ.get("JWTSESS_ACCESS_TTL", "900")),
        )


def create_app(config: DemoConfig) -> Starlette:
    keyring = KeyRing(config.keys_dir)

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse(keyring.jwks(), headers={"Cache-Control": "public, max-age=300"})

    return Starlette(routes=[Route("/.well-known/jwks.json", jwks)])


def main() -> None:
    import uvicorn

    config = DemoConfig.from_env()
    created = ensure_keys(config.keys_dir, config.alg)
    keyring = KeyRing(config.keys_dir)
    active = keyring.signing_key()
    print(
        f"jwtsess demo: keys in {config.keys_dir!r} ({'generated now' if created else 'existing'}),"
        f" signing with {active.alg} kid={active.kid}"
    )
    print("jwtsess demo: store = MemoryStore (embedded, this process only)")
    print(f"jwtsess demo: http://{config.host}:{config.port}/.well-known/jwks.json")
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="info")


if __name__ == "__main__":
    main()
