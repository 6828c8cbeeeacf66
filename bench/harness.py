"""Timing helpers: a minimal in-process ASGI driver and interleaved, repeated measurement.

Variants are measured side by side in the same process, in interleaved rounds,
and each is reported as the median of its rounds, so machine noise hits every
variant alike and ratios stay meaningful.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message

Headers = list[tuple[bytes, bytes]]


def http_scope(
    path: str = "/", headers: Headers | None = None, method: str = "GET"
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers or [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class Recorder:
    """An ASGI ``send`` that keeps the status, to check every request succeeded."""

    def __init__(self) -> None:
        self.status = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


async def call(app: ASGIApp, scope: dict[str, Any]) -> int:
    recorder = Recorder()
    await app(scope, _receive, recorder)
    return recorder.status


@dataclass
class Variant:
    """One thing to time: ``run(n)`` performs n operations."""

    name: str
    run: Callable[[int], Awaitable[None]]
    samples: list[float]

    @property
    def median_us(self) -> float:
        return statistics.median(self.samples)


async def measure(variants: Sequence[Variant], *, ops: int, rounds: int, warmup: int = 1) -> None:
    """Fill each variant's ``samples`` with microseconds per operation, interleaved."""
    for _ in range(warmup):
        for variant in variants:
            await variant.run(max(1, ops // 5))
    for _ in range(rounds):
        for variant in variants:
            await asyncio.sleep(0)  # let background tasks (the mirror's follower) run
            start = time.perf_counter_ns()
            await variant.run(ops)
            variant.samples.append((time.perf_counter_ns() - start) / ops / 1000)


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]
