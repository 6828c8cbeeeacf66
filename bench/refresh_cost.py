"""Server-side refresh with RedisStore beside its floor, measured in the same run.

The floor is what any rotation must cost: one EVALSHA round trip (a trivial
script) plus the two signatures a refresh produces (the access token's and the
refresh token's MAC).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import tempfile
import time
from dataclasses import dataclass

from jwtsess import (
    AccessTokenSigner,
    Issuer,
    KeyRing,
    RedisStore,
    SessionPolicy,
    TokenSettings,
    init_keys,
)
from tests.support.stats import percentile

ISSUER = "https://auth.bench.test"
AUDIENCE = "api.bench.test"


@dataclass
class LatencyResult:
    name: str
    p50_us: float
    p99_us: float
    throughput: float  # operations per second with `concurrency` in flight


async def _latencies(op_count: int, op: object) -> list[float]:
    samples = []
    for _ in range(op_count):
        start = time.perf_counter_ns()
        await op()  # type: ignore[operator]
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


async def refresh_vs_floor(
    alg: str, redis_url: str, *, ops: int, concurrency: int = 32
) -> list[LatencyResult]:
    directory = tempfile.mkdtemp(prefix="jwtsess-bench-refresh-")
    init_keys(directory, alg)
    keyring = KeyRing(directory)
    settings = TokenSettings(issuer=ISSUER, audience=AUDIENCE)
    store = RedisStore.from_url(redis_url, prefix=f"bench{time.monotonic_ns()}")
    # Measure the refresh, not the per-session limit's refusals (one chain, many refreshes).
    policy = SessionPolicy(refresh_limit=10**9, address_refresh_limit=None)
    issuer = Issuer(keyring, settings, store, policy=policy)
    signer = AccessTokenSigner(keyring, settings)
    trivial = store.client.register_script("return 1")
    secret = keyring.refresh_secret.secret
    try:
        # Sequential latency: one chain of refreshes.
        pair = await issuer.login("bench-user", "user")
        token = pair.refresh_token

        async def one_refresh() -> None:
            nonlocal token
            token = (await issuer.refresh(token)).refresh_token

        async def one_floor() -> None:
            await trivial(keys=["bench:floor"], args=[])
            signer.issue("bench-user", "user", "sid")
            hmac.new(secret, b"rt1.sid.1", hashlib.sha256).digest()

        await _latencies(50, one_refresh)  # warm up both, scripts loaded
        await _latencies(50, one_floor)
        floor_samples, refresh_samples = [], []
        for _ in range(5):  # interleave in rounds
            floor_samples += await _latencies(ops // 5, one_floor)
            refresh_samples += await _latencies(ops // 5, one_refresh)

        # Throughput: `concurrency` independent chains in flight.
        chains = [
            (await issuer.login(f"bench-{i}", "user")).refresh_token for i in range(concurrency)
        ]

        async def refresh_chain(index: int, count: int) -> None:
            for _ in range(count):
                chains[index] = (await issuer.refresh(chains[index])).refresh_token

        async def floor_chain(count: int) -> None:
            for _ in range(count):
                await one_floor()

        per_chain = max(1, ops // concurrency)
        start = time.perf_counter()
        await asyncio.gather(*(floor_chain(per_chain) for _ in range(concurrency)))
        floor_tps = per_chain * concurrency / (time.perf_counter() - start)
        start = time.perf_counter()
        await asyncio.gather(*(refresh_chain(i, per_chain) for i in range(concurrency)))
        refresh_tps = per_chain * concurrency / (time.perf_counter() - start)
    finally:
        await store.close()
    return [
        LatencyResult(
            "floor: EVALSHA + 2 signatures",
            percentile(floor_samples, 0.5),
            percentile(floor_samples, 0.99),
            floor_tps,
        ),
        LatencyResult(
            "Issuer.refresh (RedisStore)",
            percentile(refresh_samples, 0.5),
            percentile(refresh_samples, 0.99),
            refresh_tps,
        ),
    ]
