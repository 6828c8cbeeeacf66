"""`make bench`'s harness still runs: a few iterations of every part. Nothing about speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system  # starts redis-server, uvicorn and peers

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_run_produces_the_report() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for heading in (
        "## Budgets",
        "## Per-request cost",
        "## Verification alone",
        "## Refresh, server side",
        "## Revocation propagation",
        "## HTTP throughput",
    ):
        assert heading in out, heading
    for variant in ("bare Starlette", "PyJWT.decode", "Redis GET denylist", "jwtsess (hot"):
        assert variant in out, variant
    assert "wrote docs/benchmarks.md" not in out  # --quick writes nothing
