"""The README's example runs as written, so it stays true as the API grows.

(The app-mounting example moved to docs/starlette.md; tests/docs/test_starlette.py
serves it. The curl walkthrough is run by tests/test_demo.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jwtsess import init_keys

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(language: str) -> list[str]:
    pattern = rf"```{language}\n(.*?)```"
    return re.findall(pattern, README.read_text(encoding="utf-8"), re.S)


def _run(block: str) -> dict[str, object]:
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    return namespace


async def test_library_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    init_keys("keys", "RS256")
    demo = _run(_blocks("python")[0])["demo"]
    assert callable(demo)
    await demo()
