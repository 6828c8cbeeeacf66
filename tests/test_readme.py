"""The README's example runs as written (so it stays true as the API grows)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jwtsess import init_keys

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


async def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    init_keys("keys", "RS256")
    namespace: dict[str, object] = {}
    exec(compile(_python_blocks()[0], "README.md", "exec"), namespace)  # noqa: S102
    demo = namespace["demo"]
    assert callable(demo)
    await demo()
