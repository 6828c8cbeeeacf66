#!/usr/bin/env python3
"""Soak: a bounded loopback load test of the demo under uvicorn and Redis.

Usage (from the repository root)::

    .venv/bin/python -m scripts.soak [--seconds 60] [--users 16] [--access-ttl 10]

Starts a private redis-server (tests/support/redis_server.py: a free port, a temp
directory; never the machine's Redis) and the demo (``uvicorn --factory
examples.app:app_from_env``, one worker, ``REDIS_URL`` pointing at it, a short
access-token lifetime so refreshes and expiry happen: 10 s by default, refused
20 s after issue with the demo's 10 s leeway), then drives mixed
traffic for ``--seconds`` from ``--users`` concurrent virtual users, each an
httpx.AsyncClient with its own loopback source address (127.0.0.10, .11, ...:
the refresh rate limit counts per client address, and real users do not share
one). Each virtual user:

- logs in (alice or bob, alternately), then mostly calls ``GET /me`` (verify);
- refreshes every ``--refresh-every`` seconds (half of the users), or only when
  ``/me`` answers ``token_expired`` (the other half, which keep their sessions
  until then: no single logouts);
- now and then logs out, checks that its access token is refused at once, and
  logs in again (every ``--logout-every`` seconds on average; periodic
  refreshers only);
- users 0 and 1 (one per account) also log out everywhere, at least 2 s apart
  (every ``--logout-all-every`` seconds on average), which ends the sessions of
  every other virtual user of that account.

An answer is an error unless the client can explain it: ``401 token_revoked``
is expected only if a logout-all of that account may have been processed
after the token was issued; ``401 session_not_found`` on refresh only if one
may have been processed after the session was created; ``401 token_expired``
only once the token is at least ``access_ttl + leeway - 1`` seconds old. Any
other status (429, 5xx, ...), a connection error, a token still accepted after
its own logout, or a traceback in the server's log is an error.

Every second it samples the uvicorn process's RSS (``VmRSS`` in
``/proc/<pid>/status``) and Redis's ``used_memory``. The report gives the
throughput, the answers per kind with latencies, the errors, the CPU used by
the server and by this load generator, and the RSS timeline: first,
max, last, and the least-squares slope over the second half (the first half
is warm-up: caches and the revocation mirror fill until entries start to
expire); "flat" if the growth it implies over the second half is below
``--flat-kb``. The last line is ``SOAK-RESULT <json>`` for scripts. The exit
status is 1 if there was any error.

Two logout-alls of one account may fall in the same wall-clock second: a
token issued between them is revoked by the second one (the user's not-before
is strictly increasing; tests/test_multiworker.py asserts it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from jwtsess import TokenSettings, init_keys
from tests.support.redis_server import running_redis
from tests.support.servers import running_uvicorn
from tests.support.stats import percentile

PASSWORDS = {"alice": "alice-demo-password", "bob": "bob-demo-password"}
ACCOUNTS = ("alice", "bob")
LEEWAY = TokenSettings(issuer="-", audience="-").leeway  # the demo's (the default)
STARTUP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Options:
    seconds: float
    users: int
    access_ttl: int
    refresh_every: float
    logout_every: float
    logout_all_every: float
    flat_kb: float
    seed: int


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="traffic duration (60)")
    parser.add_argument("--users", type=int, default=16, help="virtual users (16, max 200)")
    parser.add_argument("--access-ttl", type=int, default=10, help="access-token lifetime (10 s)")
    parser.add_argument(
        "--refresh-every",
        type=float,
        default=3.0,
        help="periodic refresh interval (3 s; keep it >= 2.5 s on runs over 30 s: the demo "
        "allows 30 refreshes a minute per session and per client address)",
    )
    parser.add_argument(
        "--logout-every", type=float, default=10.0, help="mean time between logouts (10 s)"
    )
    parser.add_argument(
        "--logout-all-every",
        type=float,
        default=20.0,
        help="mean time between logout-alls of users 0 and 1 (20 s)",
    )
    parser.add_argument(
        "--flat-kb",
        type=float,
        default=2048.0,
        help="RSS growth over the second half below which the RSS is flat (2048 KB)",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 3600 or not 1 <= args.users <= 200:
        parser.error("--seconds must be in (0, 3600] and --users in [1, 200]")
    return Options(
        seconds=args.seconds,
        users=args.users,
        access_ttl=args.access_ttl,
        refresh_every=args.refresh_every,
        logout_every=args.logout_every,
        logout_all_every=args.logout_all_every,
        flat_kb=args.flat_kb,
        seed=args.seed,
    )


# -- bookkeeping ---------------------------------------------------------------------------


@dataclass
class Stats:
    start: float
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, answer)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    per_second: Counter[int] = field(default_factory=Counter)
    requests: int = 0

    def answered(self, kind: str, answer: str, started: float, ended: float) -> None:
        self.requests += 1
        self.outcomes[(kind, answer)] += 1
        self.latencies.setdefault(kind, []).append(ended - started)
        self.per_second[int(ended - self.start)] += 1

    def error(self, kind: str, what: str) -> None:
        self.errors[f"{kind}: {what}"] += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(f"{time.monotonic() - self.start:7.2f}s {kind}: {what}")

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class Ledger:
    """When each account's logout-alls were in flight: [sent, answered] (inf while in flight)."""

    def __init__(self) -> None:
        self.windows: dict[str, list[list[float]]] = {a: [] for a in ACCOUNTS}

    def open(self, account: str, sent: float) -> list[float]:
        window = [sent, math.inf]
        self.windows[account].append(window)
        return window

    def may_have_ended(
        self, account: str, since: float, received: float, ignore: list[float] | None = None
    ) -> bool:
        """Could a logout-all have been processed after ``since`` and before ``received``?"""
        return any(
            sent <= received and done > since
            for window in self.windows[account]
            if window is not ignore
            for sent, done in (window,)
        )


@dataclass
class Tokens:
    access: str
    refresh: str
    session_started: float  # when the login request was sent
    token_started: float  # when the request that issued ``access`` was sent
    refreshed_at: float


@dataclass
class Answer:
    status: int  # 0: no answer (connection error)
    code: str | None
    body: dict[str, Any]
    started: float
    received: float

    @property
    def label(self) -> str:
        if self.status == 0:
            return "connection error"
        return f"{self.status} {self.code}" if self.code else str(self.status)


# -- a virtual user --------------------------------------------------------------------------


class VirtualUser:
    def __init__(
        self, index: int, base_url: str, options: Options, stats: Stats, ledger: Ledger
    ) -> None:
        self.index = index
        self.account = ACCOUNTS[index % 2]
        self.periodic = (index // 2) % 2 == 0  # else refreshes only on token_expired
        self.admin = index < 2  # one per account does the logout-alls
        self.options = options
        self.stats = stats
        self.ledger = ledger
        self.rng = random.Random(options.seed * 1000 + index)  # noqa: S311 - traffic jitter
        self.client = httpx.AsyncClient(
            base_url=base_url,
            timeout=10.0,
            transport=httpx.AsyncHTTPTransport(local_address=f"127.0.0.{10 + index}"),
        )
        self.tokens: Tokens | None = None

    async def call(
        self, kind: str, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> Answer:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        started = time.monotonic()
        try:
            response = await self.client.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            received = time.monotonic()
            answer = Answer(0, None, {}, started, received)
            self.stats.answered(kind, answer.label, started, received)
            self.stats.error(kind, f"connection error {exc!r}")
            return answer
        received = time.monotonic()
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        code = body.get("error") if response.status_code != 200 else None
        answer = Answer(response.status_code, code, body, started, received)
        self.stats.answered(kind, answer.label, started, received)
        return answer

    def unexpected(self, kind: str, answer: Answer) -> None:
        if answer.status != 0:  # connection errors are counted where they happen
            self.stats.error(kind, f"{answer.label} {json.dumps(answer.body)[:120]}")

    async def login(self) -> None:
        while True:
            answer = await self.call(
                "login",
                "POST",
                "/auth/login",
                json={"username": self.account, "password": PASSWORDS[self.account]},
            )
            if answer.status == 200:
                self.tokens = Tokens(
                    access=answer.body["access_token"],
                    refresh=answer.body["refresh_token"],
                    session_started=answer.started,
                    token_started=answer.started,
                    refreshed_at=answer.received,
                )
                return
            self.unexpected("login", answer)
            await asyncio.sleep(0.1)  # do not spin on a broken server

    def _revoked_ok(self, answer: Answer, since: float, ignore: list[float] | None = None) -> bool:
        return self.ledger.may_have_ended(self.account, since, answer.received, ignore)

    async def me(self) -> None:
        tokens = self.tokens
        assert tokens is not None
        answer = await self.call("me", "GET", "/me", token=tokens.access)
        if answer.status == 200:
            if answer.body.get("sub") != self.account:
                self.unexpected("me", answer)
        elif answer.code == "token_revoked" and answer.status == 401:
            if not self._revoked_ok(answer, tokens.token_started):
                self.unexpected("me", answer)
            await self.login()  # the session is gone: a logout-all, or an error counted
        elif answer.code == "token_expired" and answer.status == 401:
            if answer.received - tokens.token_started < self.options.access_ttl + LEEWAY - 1:
                self.unexpected("me", answer)
            await self.refresh()
        else:
            self.unexpected("me", answer)

    async def refresh(self) -> None:
        tokens = self.tokens
        assert tokens is not None
        answer = await self.call(
            "refresh", "POST", "/auth/refresh", json={"refresh_token": tokens.refresh}
        )
        if answer.status == 200:
            self.tokens = Tokens(
                access=answer.body["access_token"],
                refresh=answer.body["refresh_token"],
                session_started=tokens.session_started,
                token_started=answer.started,
                refreshed_at=answer.received,
            )
            return
        if not (
            answer.status == 401
            and answer.code == "session_not_found"
            and self._revoked_ok(answer, tokens.session_started)
        ):
            self.unexpected("refresh", answer)
        await self.login()

    async def check_refused(self, token: str) -> None:
        """Right after its own logout, a token must be refused (one process: no delay)."""
        answer = await self.call("me (logged out)", "GET", "/me", token=token)
        if answer.status != 0 and (answer.status, answer.code) != (401, "token_revoked"):
            self.stats.error("me (logged out)", f"{answer.label}: the token was not revoked")

    async def logout(self) -> None:
        tokens = self.tokens
        assert tokens is not None
        answer = await self.call("logout", "POST", "/auth/logout", token=tokens.access)
        if answer.status == 200:
            if answer.body != {"logged_out": True}:
                self.unexpected("logout", answer)
            await self.check_refused(tokens.access)
        elif not (
            (answer.status, answer.code) == (401, "token_revoked")
            and self._revoked_ok(answer, tokens.token_started)
        ):
            self.unexpected("logout", answer)
        await self.login()

    async def logout_all(self) -> None:
        tokens = self.tokens
        assert tokens is not None
        window = self.ledger.open(self.account, time.monotonic())
        answer = await self.call("logout-all", "POST", "/auth/logout-all", token=tokens.access)
        window[1] = answer.received
        if answer.status == 200:
            ended = answer.body.get("ended")
            if not isinstance(ended, int) or ended < 1:  # at least this user's own session
                self.unexpected("logout-all", answer)
            await self.check_refused(tokens.access)
        elif not (
            (answer.status, answer.code) == (401, "token_revoked")
            and self._revoked_ok(answer, tokens.token_started, ignore=window)
        ):
            self.unexpected("logout-all", answer)
        await self.login()

    def _after(self, mean: float) -> float:
        return time.monotonic() + self.rng.expovariate(1 / mean)

    async def run(self, deadline: float) -> None:
        try:
            await self.login()
            next_logout = self._after(self.options.logout_every)
            next_logout_all = self._after(self.options.logout_all_every)
            refresh_every = self.options.refresh_every * self.rng.uniform(0.8, 1.2)
            while (now := time.monotonic()) < deadline:
                tokens = self.tokens
                assert tokens is not None
                if self.admin and now >= next_logout_all:
                    await self.logout_all()
                    next_logout_all = self._after(self.options.logout_all_every)
                elif self.periodic and now >= next_logout:
                    await self.logout()
                    next_logout = self._after(self.options.logout_every)
                elif self.periodic and now - tokens.refreshed_at >= refresh_every:
                    await self.refresh()
                else:
                    await self.me()
        finally:
            await self.client.aclose()


# -- the servers ---------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)"
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    if match is None:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return int(match.group(1))


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the traffic started
    rss_kb: int
    redis_used: int
    redis_keys: int
    requests: int
    server_cpu: float  # seconds of CPU the uvicorn process has used
    client_cpu: float  # ...and this process


async def sample(
    pid: int, redis_url: str, stats: Stats, deadline: float, samples: list[Sample]
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        tick = stats.start
        while True:
            info = await client.info("memory")
            samples.append(
                Sample(
                    at=time.monotonic() - stats.start,
                    rss_kb=rss_kb(pid),
                    redis_used=int(info["used_memory"]),
                    redis_keys=int(await client.dbsize()),
                    requests=stats.requests,
                    server_cpu=cpu_seconds(pid),
                    client_cpu=time.process_time(),
                )
            )
            if time.monotonic() >= deadline:
                return
            tick += 1.0
            await asyncio.sleep(max(0.0, min(tick, deadline) - time.monotonic()))
    finally:
        await client.aclose()


# -- the report ----------------------------------------------------------------------------


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return 0.0
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def report(
    options: Options,
    stats: Stats,
    samples: list[Sample],
    elapsed: float,
    server_problems: int,
    server_log: str,
) -> dict[str, Any]:
    if server_problems:
        stats.errors["server log: tracebacks or ERROR lines"] += server_problems
    rate = stats.requests / elapsed if elapsed > 0 else 0.0
    print(f"requests: {stats.requests} in {elapsed:.1f} s = {rate:.0f} req/s")
    whole = int(elapsed // 10)  # whole 10 s windows (the tail is left out)
    windows = [sum(stats.per_second[10 * w + i] for i in range(10)) / 10 for w in range(whole)]
    if windows:
        print("req/s per 10 s: " + ", ".join(f"{r:.0f}" for r in windows))
    kinds = sorted({kind for kind, _ in stats.outcomes})
    per_kind: dict[str, dict[str, int]] = {}
    for kind in kinds:
        answers = {a: n for (k, a), n in sorted(stats.outcomes.items()) if k == kind}
        per_kind[kind] = answers
        latencies = stats.latencies[kind]
        p50, p99 = 1000 * statistics.median(latencies), 1000 * percentile(latencies, 0.99)
        print(
            f"  {kind:<17} {sum(answers.values()):>8}  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  "
            + ", ".join(f"{a}: {n}" for a, n in answers.items())
        )
    first, last = samples[0], samples[-1]
    span = max(1e-9, last.at - first.at)
    server_cpu = (last.server_cpu - first.server_cpu) / span
    client_cpu = (last.client_cpu - first.client_cpu) / span
    print(
        f"CPU: uvicorn {100 * server_cpu:.0f}% of a core, this load generator "
        f"{100 * client_cpu:.0f}% ({os.cpu_count()} CPUs)"
    )
    errors = stats.error_count
    print(f"errors: {errors}")
    for what, count in stats.errors.most_common(10):
        print(f"  {count:>6} x {what}")
    for line in stats.error_samples[:10]:
        print(f"    {line}")
    if server_problems:
        print("server log (last lines):\n" + server_log)

    half = elapsed / 2
    second_half = [(s.at, float(s.rss_kb)) for s in samples if s.at >= half]
    slope = slope_per_minute(second_half)
    growth = slope * (elapsed - half) / 60
    flat = growth < options.flat_kb
    peak = max(s.rss_kb for s in samples)
    print(
        f"RSS (uvicorn pid, VmRSS, {len(samples)} samples): first {first.rss_kb / 1024:.1f} MB, "
        f"max {peak / 1024:.1f} MB, last {last.rss_kb / 1024:.1f} MB; second-half slope "
        f"{slope:+.0f} KB/min ({growth:+.0f} KB over {elapsed - half:.0f} s): "
        + ("flat" if flat else f"GROWING (threshold {options.flat_kb:.0f} KB)")
    )
    timeline: list[Sample] = []  # the sample nearest to 0 s, 10 s, 20 s, ...
    for mark in range(0, int(elapsed) + 1, 10):
        nearest = min(samples, key=lambda s: abs(s.at - mark))
        if nearest not in timeline:
            timeline.append(nearest)
    print(
        "RSS timeline (MB): "
        + ", ".join(f"{s.at:.0f}s {s.rss_kb / 1024:.1f}" for s in timeline)
        + f", end {last.rss_kb / 1024:.1f}"
    )
    redis_slope = slope_per_minute([(s.at, s.redis_used / 1024) for s in samples if s.at >= half])
    print(
        f"Redis used_memory: first {first.redis_used / 1024 / 1024:.2f} MB, max "
        f"{max(s.redis_used for s in samples) / 1024 / 1024:.2f} MB, last "
        f"{last.redis_used / 1024 / 1024:.2f} MB (second half {redis_slope:+.0f} KB/min); "
        f"keys first {first.redis_keys}, max {max(s.redis_keys for s in samples)}, "
        f"last {last.redis_keys}"
    )
    return {
        "seconds": round(elapsed, 2),
        "users": options.users,
        "requests": stats.requests,
        "requests_per_second": round(rate, 1),
        "per_kind": per_kind,
        "errors": errors,
        "error_kinds": dict(stats.errors),
        "rss_kb": {
            "first": first.rss_kb,
            "max": peak,
            "last": last.rss_kb,
            "second_half_slope_kb_per_min": round(slope, 1),
            "second_half_growth_kb": round(growth, 1),
        },
        "rss_verdict": "flat" if flat else "growing",
        "redis_used_memory": {
            "first": first.redis_used,
            "max": max(s.redis_used for s in samples),
            "last": last.redis_used,
        },
        "samples": len(samples),
        "cpu_cores": {"server": round(server_cpu, 2), "load_generator": round(client_cpu, 2)},
    }


# -- main ----------------------------------------------------------------------------------


async def drive(options: Options, base_url: str, pid: int, redis_url: str) -> tuple[
    Stats, list[Sample], float
]:  # fmt: skip
    start = time.monotonic()
    deadline = start + options.seconds
    stats = Stats(start=start)
    ledger = Ledger()
    samples: list[Sample] = []
    users = [VirtualUser(i, base_url, options, stats, ledger) for i in range(options.users)]
    sampler = asyncio.create_task(sample(pid, redis_url, stats, deadline, samples))
    await asyncio.gather(*(user.run(deadline) for user in users))
    elapsed = time.monotonic() - start
    await sampler
    return stats, samples, elapsed


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="jwtsess-soak-") as temp:
        directory = Path(temp)
        init_keys(directory / "keys", "RS256")
        with running_redis(directory / "redis") as redis_server:
            env = {
                "JWTSESS_KEYS_DIR": str(directory / "keys"),
                "JWTSESS_ACCESS_TTL": str(options.access_ttl),
                "REDIS_URL": redis_server.url,
            }
            with running_uvicorn(env=env, startup_timeout=STARTUP_TIMEOUT) as server:
                print(
                    f"soak: {options.seconds:g} s, {options.users} virtual users, demo under "
                    f"uvicorn (1 process, pid {server.process.pid}) on port {server.port}, "
                    f"private redis-server on port {redis_server.port}, access tokens live "
                    f"{options.access_ttl} s (+{LEEWAY} s leeway)",
                    flush=True,
                )
                stats, samples, elapsed = asyncio.run(
                    drive(options, server.base_url, server.process.pid, redis_server.url)
                )
                if server.process.poll() is not None:
                    stats.errors["server exited during the run"] += 1
                log = server.stop()
            result = report(options, stats, samples, elapsed, server.problems, log)
    print("SOAK-RESULT " + json.dumps(result, sort_keys=True), flush=True)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
