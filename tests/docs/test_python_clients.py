"""docs/python-clients.md: the client kept the rotated refresh token where the page said."""

from __future__ import annotations

import ast
import json
import re
import stat
from pathlib import Path

import pytest

from tests.support.docs import DOCS, run_page
from tests.support.servers import running_uvicorn


def test_python_clients_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace = run_page("python-clients", tmp_path)  # its blocks assert the refresh and the end
    saved = tmp_path / "tokens.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    refresh_token = json.loads(saved.read_text())["refresh_token"]
    assert refresh_token.startswith("rt")  # the last rotated one, kept by on_refresh
    assert namespace["auth"].tokens is None  # type: ignore[attr-defined]  # dropped at the end


@pytest.mark.system  # starts the demo under uvicorn
def test_the_synchronous_example_against_the_demo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = (DOCS / "python-clients.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```py\n(.*?)^```", page, re.S | re.M)
    (block,) = [b for b in blocks if "JWTSessAuth.from_token_response" in b]
    env = {"JWTSESS_KEYS_DIR": str(tmp_path / "keys"), "REDIS_URL": None}
    with running_uvicorn(module="examples.app", env=env) as server:
        code = block.replace("http://127.0.0.1:8000", server.base_url)
        exec(compile(code, "docs/python-clients.md", "exec"), {"__name__": "docs_sync"})  # noqa: S102
    first, second = capsys.readouterr().out.splitlines()
    assert ast.literal_eval(first)["sub"] == "bob"
    assert second == "insufficient_role"
