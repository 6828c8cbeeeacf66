"""``make bench``: every benchmark in one run, tables to stdout and docs/benchmarks.md, a chart.

``python -m bench`` runs the full set (about 3 minutes on 2 cores);
``python -m bench --quick`` runs a few iterations of each part and writes
nothing (the smoke test in ``make test`` keeps the harness working).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from tests.support.redis_server import running_redis

from .asgi_cost import per_request, verify_only
from .dpop_cost import dpop_request
from .http_load import http_throughput
from .propagation import propagation
from .refresh_cost import refresh_vs_floor
from .token_endpoint import token_vs_refresh

ROOT = Path(__file__).resolve().parent.parent

READING = """## Reading these numbers (what is met, what is missed, and why)

- **Noise floor.** This is a 2-core VM. Variants run interleaved in one process and each
  figure is the median of rounds, yet a bare Starlette request (~10 us) still moves by
  +/-2 us between runs. The jwtsess hot path is the same code for every algorithm (a cache
  hit: nothing algorithm-specific runs), so the spread of its ratio across the four
  algorithms in one report is the measurement noise. A 20 % budget on a 10 us request is
  a 2 us budget, about the size of that noise.
- **Middleware, same token again (budget <= 1.2x bare).** Measured apart (taskset to one
  core, 9 x 3000 requests): the middleware adds 2.1-3.3 us to a ~12 us bare request
  (1.16x-1.28x), and 3.1 us with the `require_auth` guard on the route. Per request,
  that is: the verifier's cache hit ~0.6 us (keyring change check 0.09, mirror check 0.17,
  expiry check, dict lookup); header scan and Bearer parsing ~0.6 us; JWTUser and scope
  ~0.3 us; one more ASGI layer ~0.3 us. Full runs have measured 0.93x-1.43x, and the
  latest, consistent across the four algorithms, 1.27x-1.39x: **missed** (by ~1 us on
  ~10 us). What is left on that path is mostly what was asked for (the expiry check and
  the revocation lookups run on every request by design); the next candidates are one
  clock read instead of two (keyring and mirror each read the monotonic clock) and
  reusing the JWTUser per cached token.
- **HTTP throughput (budget >= 0.9x).** Under uvicorn (httptools, uvloop) with wrk, the
  authenticated route costs 8-15 us more per request than the same route without auth
  (about 40 us), that is 0.74x-0.87x across runs, while the same two apps driven in-process
  differ by only 3-4 us. Run-to-run variation of one app under wrk is itself ~15 % here.
  The part of the gap that appears only under the real server is not explained yet (the
  cProfile of the server under load puts jwtsess at ~10 % of its time); it needs a
  cycle-level profile (perf) on a quieter machine. Missed, honestly.
- **Refresh (budget <= 1.2x floor).** The floor is one EVALSHA of `return 1` plus the
  RS256 signature and the refresh MAC. Without I/O (MemoryStore), Issuer.refresh costs 5 %
  over sign + MAC. The rest is Redis: the ROTATE script runs ~24 us on the server and its
  reply (13 fields, flat) costs redis-py ~35 us more to parse than a single integer.
  Measured 1.09x-1.22x in a pinned run, 1.39x-1.49x in full runs next to other load.
- **Cold verify, propagation, zero round trips: met** with a wide margin (cold verify is
  0.5x-0.9x PyJWT.decode; propagation p99 under 1 ms).
"""
ALGORITHMS = ("HS256", "RS256", "ES256", "EdDSA")


@dataclass
class Budget:
    path: str
    budget: str
    measured: str
    met: bool


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()[2:3]
    packages = ", ".join(
        f"{name} {version(name)}"
        for name in ("pyjwt", "cryptography", "starlette", "redis", "uvicorn")
    )
    import os

    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}; Redis {''.join(redis_version).removeprefix('v=')}; "
        f"{packages}"
    )


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


async def run_all(quick: bool) -> tuple[str, list[Budget], dict[str, list[tuple[str, float]]]]:
    ops, rounds = (20, 2) if quick else (2000, 7)
    sections: list[str] = []
    budgets: list[Budget] = []
    chart: dict[str, list[tuple[str, float]]] = {}
    with running_redis(Path(tempfile.mkdtemp(prefix="jwtsess-bench-redis-"))) as redis:
        # 1. per-request cost
        rows = []
        for alg in ALGORITHMS:
            variants = await per_request(alg, ops=ops, rounds=rounds, redis_url=redis.url)
            bare = variants[0].median_us
            chart[alg] = [(v.name, v.median_us) for v in variants]
            for v in variants:
                rows.append([alg, v.name, f"{v.median_us:.1f}", f"{v.median_us / bare:.2f}x"])
            hot = next(v for v in variants if "hot" in v.name)
            ratio = hot.median_us / bare
            budgets.append(
                Budget(
                    f"middleware, same token again ({alg})",
                    "<= 1.20x bare",
                    f"{ratio:.2f}x",
                    ratio <= 1.2,
                )
            )
        sections.append(
            "## Per-request cost (in-process ASGI calls, no sockets)\n\n"
            + table(["alg", "variant", "us/request", "vs bare"], rows)
        )
        # 2. verification alone
        rows = []
        for alg in ALGORITHMS:
            variants = await verify_only(alg, ops=ops, rounds=rounds)
            base = variants[0].median_us
            for v in variants:
                rows.append([alg, v.name, f"{v.median_us:.2f}", f"{v.median_us / base:.2f}x"])
            cold = variants[2].median_us / base
            budgets.append(
                Budget(
                    f"first sight of a token, cold verify ({alg})",
                    "<= 1.00x PyJWT.decode",
                    f"{cold:.2f}x",
                    cold <= 1.0,
                )
            )
            if len(variants) == 5:  # JWKS key source beside the local KeyRing
                jwks_hot = variants[3].median_us / variants[1].median_us
                jwks_cold = variants[4].median_us / variants[2].median_us
                budgets.append(
                    Budget(
                        f"verify-only service, JWKS keys vs local KeyRing ({alg})",
                        "same hot and cold (<= 1.10x)",
                        f"hot {jwks_hot:.2f}x, cold {jwks_cold:.2f}x",
                        jwks_hot <= 1.1 and jwks_cold <= 1.1,
                    )
                )
        sections.append(
            "## Verification alone\n\n" + table(["alg", "variant", "us/verify", "vs PyJWT"], rows)
        )
        budgets.append(
            Budget(
                "revocation check per request",
                "0 network round trips",
                "0 (tests/test_propagation.py proves it)",
                True,
            )
        )
        # 3. refresh
        results = await refresh_vs_floor("RS256", redis.url, ops=100 if quick else 2000)
        floor, refresh = results
        sections.append(
            "## Refresh, server side (RS256, RedisStore, one Redis on loopback)\n\n"
            + table(
                ["path", "p50 us", "p99 us", "throughput/s (32 in flight)"],
                [
                    [r.name, f"{r.p50_us:.0f}", f"{r.p99_us:.0f}", f"{r.throughput:.0f}"]
                    for r in results
                ],
            )
        )
        ratio = refresh.p50_us / floor.p50_us
        budgets.append(
            Budget("refresh, server side (p50)", "<= 1.20x floor", f"{ratio:.2f}x", ratio <= 1.2)
        )
        # 3b. refresh through the standard token endpoint beside the JSON route
        endpoints = await token_vs_refresh(
            "RS256", redis.url, ops=10 if quick else 300, rounds=2 if quick else 7
        )
        json_route, token_route = endpoints
        sections.append(
            "## Refresh over HTTP: `POST /auth/token` beside `POST /auth/refresh`\n\n"
            "Same app, same refresh function, RS256 and RedisStore; in-process ASGI calls, "
            "interleaved rounds, median of round medians.\n\n"
            + table(
                ["endpoint", "us/refresh", "vs /auth/refresh"],
                [
                    [e.name, f"{e.median_us:.0f}", f"{e.median_us / json_route.median_us:.2f}x"]
                    for e in endpoints
                ],
            )
        )
        ratio = token_route.median_us / json_route.median_us
        budgets.append(
            Budget(
                "refresh through /auth/token",
                "<= 1.10x /auth/refresh (same within noise)",
                f"{ratio:.2f}x",
                ratio <= 1.1,
            )
        )
        # 4. propagation
        p50, p99, _ = await propagation(redis.url, trials=20 if quick else 300)
        sections.append(
            "## Revocation propagation between two processes\n\n"
            + table(
                ["trials", "p50 ms", "p99 ms"],
                [[str(20 if quick else 300), f"{p50:.2f}", f"{p99:.2f}"]],
            )
        )
        budgets.append(
            Budget(
                "revocation reaching another process",
                "p99 <= 50 ms",
                f"p99 {p99:.2f} ms",
                p99 <= 50,
            )
        )
    # 5. DPoP beside bearer
    rows = []
    for proof_alg in ("ES256", "EdDSA"):
        variants = await dpop_request(proof_alg, ops=ops, rounds=rounds)
        bare, bearer, dpop, signature = (v.median_us for v in variants)
        for v in variants:
            rows.append([proof_alg, v.name, f"{v.median_us:.1f}", f"{v.median_us / bare:.2f}x"])
        allowed = (bearer + signature) * 1.2
        budgets.append(
            Budget(
                f"DPoP request, {proof_alg} proof (ES256 token)",
                f"<= (bearer + 1 verify) x 1.2 = {allowed:.0f} us",
                f"{dpop:.0f} us (bearer {bearer:.0f} + {dpop - bearer:.0f}; "
                f"one verify {signature:.0f})",
                dpop <= allowed,
            )
        )
    sections.append(
        "## DPoP beside bearer (in-process ASGI; fresh proof per request, signed beforehand)\n\n"
        + table(["proof alg", "variant", "us/request", "vs bare"], rows)
    )
    # 6. HTTP
    if shutil.which("wrk") is not None:
        plain, auth = http_throughput(seconds=2 if quick else 15)
        sections.append(
            "## HTTP throughput\n\nuvicorn, 1 worker, httptools + uvloop; wrk, 1 thread, "
            "32 connections; both apps get the same Authorization header.\n\n"
            + table(
                ["app", "requests/s", "errors"],
                [[r.name, f"{r.requests_per_second:.0f}", str(r.errors)] for r in (plain, auth)],
            )
        )
        ratio = auth.requests_per_second / plain.requests_per_second
        budgets.append(
            Budget(
                "HTTP throughput with auth",
                ">= 0.90x without",
                f"{ratio:.2f}x",
                ratio >= 0.9 and auth.errors == 0,
            )
        )
    else:
        sections.append("## HTTP throughput\n\nSkipped: wrk is not installed.")
    return "\n\n".join(sections), budgets, chart


def write_chart(chart: dict[str, list[tuple[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name, _ in next(iter(chart.values()))]
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [dict(chart[alg])[name] for alg in chart]
        positions = [a + i * width for a in range(len(chart))]
        ax.bar(positions, values, width, label=name)
    ax.set_xticks([a + width * (len(names) - 1) / 2 for a in range(len(chart))], list(chart))
    ax.set_ylabel("microseconds per request (lower is better)")
    ax.set_yscale("log")
    ax.set_title("Per-request cost of authentication, in-process ASGI (median of rounds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="a few iterations; write nothing")
    args = parser.parse_args()
    body, budgets, chart = asyncio.run(run_all(args.quick))
    budget_table = table(
        ["path", "budget", "measured", "verdict"],
        [[b.path, b.budget, b.measured, "met" if b.met else "MISSED"] for b in budgets],
    )
    report = (
        "# Benchmarks\n\n"
        "Generated by `make bench` (`python -m bench`); every figure in one run, side by side.\n"
        f"Machine: {machine()}.\n\n"
        "## Budgets\n\n" + budget_table + "\n\n" + READING + "\n" + body + "\n"
    )
    print(report)
    if not args.quick:
        (ROOT / "docs" / "benchmarks.md").write_text(
            report + "\n![per-request cost](benchmarks.png)\n", encoding="utf-8"
        )
        write_chart(chart, ROOT / "docs" / "benchmarks.png")
        print("wrote docs/benchmarks.md and docs/benchmarks.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
