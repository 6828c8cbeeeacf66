"""Revocation propagation between two OS processes over one Redis.

This process logs a user in and calls ``logout_all``; a second process
(``tests/support/propagation_peer.py``: a Verifier on a RevocationMirror following the
feed) reports the CLOCK_MONOTONIC instant at which its verifier first refuses
the user's token. CLOCK_MONOTONIC is system-wide on Linux, so the two instants
compare directly.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from jwtsess import Issuer, KeyRing, RedisStore, TokenSettings, init_keys
from tests.support.stats import percentile

ROOT = Path(__file__).resolve().parent.parent
ISSUER = "https://auth.bench.test"
AUDIENCE = "api.bench.test"


async def _line(stream: asyncio.StreamReader, limit: float = 10.0) -> str:
    raw = await asyncio.wait_for(stream.readline(), limit)
    if not raw:
        raise RuntimeError("the peer process exited")
    return raw.decode().strip()


async def propagation(redis_url: str, *, trials: int) -> tuple[float, float, list[float]]:
    """p50 and p99 in milliseconds, and every sample."""
    directory = tempfile.mkdtemp(prefix="jwtsess-bench-prop-")
    init_keys(directory, "HS256")
    keyring = KeyRing(directory)
    settings = TokenSettings(issuer=ISSUER, audience=AUDIENCE)
    store = RedisStore.from_url(redis_url)
    issuer = Issuer(keyring, settings, store)
    peer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.propagation_peer",
        "--keys",
        directory,
        "--redis",
        redis_url,
        "--issuer",
        ISSUER,
        "--audience",
        AUDIENCE,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    if peer.stdin is None or peer.stdout is None:
        raise RuntimeError("no pipes to the peer")
    samples: list[float] = []
    try:
        if await _line(peer.stdout, 30) != "ready":
            raise RuntimeError("the peer did not start")
        for i in range(trials):
            user = f"prop-{i}"
            pair = await issuer.login(user, "user")
            peer.stdin.write(f"token {user} {pair.access_token}\n".encode())
            await peer.stdin.drain()
            if await _line(peer.stdout) != f"ok {user}":
                raise RuntimeError("the peer did not accept a fresh token")
            start = time.monotonic()
            await issuer.logout_all(user)
            kind, who, when = (await _line(peer.stdout)).split()
            if (kind, who) != ("revoked", user):
                raise RuntimeError(f"unexpected peer answer {kind} {who}")
            samples.append((float(when) - start) * 1000)
    finally:
        if peer.returncode is None:
            peer.stdin.write(b"quit\n")
            await peer.stdin.drain()
            peer.stdin.close()
            try:
                await asyncio.wait_for(peer.wait(), 10)
            except TimeoutError:
                peer.kill()
                await peer.wait()
        await store.close()
    return percentile(samples, 0.5), percentile(samples, 0.99), samples
