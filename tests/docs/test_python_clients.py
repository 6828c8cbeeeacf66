"""docs/python-clients.md: the client kept the rotated refresh token where the page said."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.support.docs import run_page


def test_python_clients_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace = run_page("python-clients", tmp_path)  # its blocks assert the refresh and the end
    saved = tmp_path / "tokens.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    refresh_token = json.loads(saved.read_text())["refresh_token"]
    assert refresh_token.startswith("rt")  # the last rotated one, kept by on_refresh
    assert namespace["auth"].tokens is None  # type: ignore[attr-defined]  # dropped at the end
