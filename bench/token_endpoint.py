"""A refresh over HTTP through ``POST /auth/token`` beside one through ``POST /auth/refresh``.

Both go through the same app (the middleware, the auth router with the OAuth
endpoints, RedisStore) and the same refresh function; the difference is only
the wire format (a form body parsed with urllib and a §5.1 answer, against a
JSON body and answer). Requests are plain in-process ASGI calls, measured in
interleaved rounds; each figure is the median of its rounds' medians.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.types import ASGIApp, Message

from jwtsess import Issuer, KeyRing, RedisStore, SessionPolicy, TokenSettings, Verifier, init_keys
from jwtsess.web import JWTAuthMiddleware, OAuthEndpoints, WebConfig, auth_routes

from .harness import http_scope

ISSUER = "https://auth.bench.test"
AUDIENCE = "api.bench.test"


@dataclass
class EndpointResult:
    name: str
    median_us: float


async def _post(app: ASGIApp, path: str, content_type: str, body: bytes) -> dict[str, Any]:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = http_scope(path, headers, method="POST")
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    status, chunks = 0, []

    async def receive() -> Message:
        return pending.pop() if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    if status != 200:
        raise RuntimeError(f"{path} answered {status}: {b''.join(chunks)[:200]!r}")
    answer: dict[str, Any] = json.loads(b"".join(chunks))
    return answer


async def token_vs_refresh(
    alg: str, redis_url: str, *, ops: int, rounds: int
) -> list[EndpointResult]:
    directory = tempfile.mkdtemp(prefix="jwtsess-bench-token-")
    init_keys(directory, alg)
    keyring = KeyRing(directory)
    settings = TokenSettings(issuer=ISSUER, audience=AUDIENCE)
    store = RedisStore.from_url(redis_url, prefix=f"benchtok{time.monotonic_ns()}")
    # Measure the refresh, not the limiters' refusals.
    policy = SessionPolicy(refresh_limit=10**9, address_refresh_limit=None)
    issuer = Issuer(keyring, settings, store, policy=policy)
    verifier = Verifier(keyring, settings)
    web = WebConfig()
    oauth = OAuthEndpoints(issuer, verifier, config=web)
    app = Starlette(
        routes=[Mount("/auth", app=auth_routes(issuer, config=web, oauth=oauth))],
        middleware=[Middleware(JWTAuthMiddleware, verifier=verifier, config=web)],
    )
    try:
        chains = {
            "json": (await issuer.login("bench-json", "user")).refresh_token,
            "form": (await issuer.login("bench-form", "user")).refresh_token,
        }

        # Bodies are built the same cheap way for both (a refresh token needs no
        # escaping in either format), so the client's encoder is not what is measured.
        async def via_refresh() -> None:
            body = f'{{"refresh_token": "{chains["json"]}"}}'.encode()
            answer = await _post(app, "/auth/refresh", "application/json", body)
            chains["json"] = answer["refresh_token"]

        async def via_token() -> None:
            body = f"grant_type=refresh_token&refresh_token={chains['form']}&client_id=bench"
            answer = await _post(
                app, "/auth/token", "application/x-www-form-urlencoded", body.encode()
            )
            chains["form"] = answer["refresh_token"]

        variants: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("POST /auth/refresh (JSON)", via_refresh),
            ("POST /auth/token (RFC 6749 form)", via_token),
        ]
        for _, op in variants:  # warm up: scripts loaded, caches filled
            for _ in range(30):
                await op()
        medians: dict[str, list[float]] = {name: [] for name, _ in variants}
        for round_index in range(rounds):
            order = variants if round_index % 2 == 0 else variants[::-1]
            for name, op in order:
                samples = []
                for _ in range(ops):
                    start = time.perf_counter_ns()
                    await op()
                    samples.append((time.perf_counter_ns() - start) / 1000)
                medians[name].append(statistics.median(samples))
    finally:
        await store.close()
    return [EndpointResult(name, statistics.median(medians[name])) for name, _ in variants]
