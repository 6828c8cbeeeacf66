"""docs/testing.md: its user test suite (at most ~40 lines) passes under pytest with the plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.docs import python_blocks, run_page

ROOT = Path(__file__).resolve().parents[2]


def suite() -> str:
    (block,) = [b for b in python_blocks("testing") if b.startswith("# test_app.py")]
    return block


def test_the_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace = run_page("testing", tmp_path)
    assert callable(namespace["test_websocket"])


@pytest.mark.parametrize("activation", ["entry point", "-p jwtsess.testing"])
def test_the_user_suite_passes_and_is_short(tmp_path: Path, activation: str) -> None:
    code = suite()
    assert len(code.strip().splitlines()) <= 40
    (tmp_path / "test_app.py").write_text(code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_app.py"]
    if activation != "entry point":
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        args[3:3] = ["-p", "jwtsess.testing"]
    result = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout, result.stdout
