"""Smoke run of scripts/soak.py: a few seconds of mixed traffic, no errors, a report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system  # starts redis-server and uvicorn

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 8
TIMEOUT = 120  # the whole run: start-up, traffic, shutdown


def test_soak_smoke() -> None:
    args = [
        sys.executable, "-m", "scripts.soak",
        "--seconds", str(SECONDS), "--users", "8",
        "--refresh-every", "1", "--logout-every", "2", "--logout-all-every", "2",
    ]  # fmt: skip
    # Its own process group, so a hung run can be stopped with its redis-server and uvicorn.
    process = subprocess.Popen(
        args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=30)
        raise AssertionError(f"the soak did not finish in {TIMEOUT}s:\n{output}") from None
    assert process.returncode == 0, output

    results = [line for line in output.splitlines() if line.startswith("SOAK-RESULT ")]
    assert len(results) == 1, output
    result = json.loads(results[0].removeprefix("SOAK-RESULT "))
    assert result["errors"] == 0, output
    assert result["requests"] > 0
    assert result["requests_per_second"] > 0
    kinds = result["per_kind"]
    assert kinds["login"] == {"200": kinds["login"]["200"]}  # every login succeeded
    assert kinds["me"]["200"] > 0
    assert kinds["refresh"]["200"] > 0
    assert kinds["logout"]["200"] > 0
    assert set(kinds["me (logged out)"]) == {"401 token_revoked"}
    assert result["samples"] >= SECONDS  # one RSS sample a second
    assert 0 < result["rss_kb"]["first"] <= result["rss_kb"]["max"]
    # The human-readable report.
    for heading in ("requests:", "errors: 0", "RSS (uvicorn pid", "Redis used_memory:", "CPU:"):
        assert heading in output, output
