"""Run the Python examples of a docs page, so the guides stay true as the API grows.

Convention (docs/*.md): every fenced block tagged ``python`` is code a reader
can paste. The blocks of one page, in order, form one module; it runs in a
fresh working directory holding a ``keys/`` directory made by
``init_keys("keys", "RS256")``. Top-level ``await`` is allowed, as in
``python -m asyncio``: such a page runs on a fresh event loop. Blocks in any other language (``sh``,
``toml``, ``text``, ``javascript``) are not run, and neither are fragments
tagged ``py`` (shown with the same highlighting; for reference pages that
show a piece of an app, not a whole one). A page whose examples need
more than "it runs" (serve the app, make requests) has a companion test,
``tests/docs/test_<page>.py``, that calls :func:`run_page` and checks what
the code built.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from pathlib import Path

from jwtsess import init_keys

DOCS = Path(__file__).resolve().parents[2] / "docs"
_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)


def pages() -> list[str]:
    """Every docs page (path relative to docs/, without ``.md``) with Python blocks."""
    return sorted(
        str(path.relative_to(DOCS).with_suffix(""))
        for path in DOCS.rglob("*.md")
        if _BLOCK.search(path.read_text(encoding="utf-8"))
    )


def python_blocks(page: str) -> list[str]:
    return _BLOCK.findall((DOCS / f"{page}.md").read_text(encoding="utf-8"))


def run_page(page: str, workdir: Path) -> dict[str, object]:
    """Exec the page's Python blocks in ``workdir`` (which gets a ``keys/``); the namespace.

    The caller changes into ``workdir`` (``monkeypatch.chdir``) so relative
    paths in the examples resolve there.
    """
    if not (workdir / "keys").exists():
        init_keys(workdir / "keys", "RS256")
    source = "\n".join(python_blocks(page))
    namespace: dict[str, object] = {"__name__": f"docs_{page.replace('/', '_')}"}
    code = compile(source, str(DOCS / f"{page}.md"), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)  # noqa: S307  (our own docs, on purpose)
    if inspect.iscoroutine(result):
        asyncio.run(result)
    return namespace


def has_companion_test(page: str) -> bool:
    stem = page.replace("/", "_").replace("-", "_")
    return (Path(__file__).resolve().parents[1] / "docs" / f"test_{stem}.py").exists()
