"""docs/browser-apps.md: the page's login sets the cookies its table describes."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from jwtsess import RevocationMirror
from tests.support.docs import DOCS, run_page

DEMO_PAGE = Path(__file__).resolve().parents[2] / "examples" / "index.html"


async def _set_cookie_headers(app: object, mirror: RevocationMirror) -> dict[str, str]:
    async with mirror:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            answer = await client.post(
                "/auth/login", json={"username": "bob", "password": "bob-password"}
            )
            assert answer.status_code == 200
            return {h.split("=", 1)[0]: h for h in answer.headers.get_list("set-cookie")}


def test_browser_apps_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace = run_page("browser-apps", tmp_path)  # its "Try it" block asserts the flow
    mirror = namespace["mirror"]
    assert isinstance(mirror, RevocationMirror)
    cookies = asyncio.run(_set_cookie_headers(namespace["app"], mirror))
    assert set(cookies) == {"jwtsess-access", "jwtsess-refresh", "jwtsess-csrf"}
    access, refresh, csrf = (
        cookies[f"jwtsess-{name}"].lower() for name in ("access", "refresh", "csrf")
    )
    assert "httponly" in access
    assert "path=/" in access
    assert "samesite=lax" in access
    assert "httponly" in refresh
    assert "path=/auth/refresh" in refresh
    assert "samesite=strict" in refresh
    assert "httponly" not in csrf
    assert "samesite=strict" in csrf


def test_the_pages_javascript_is_the_demos() -> None:
    """The silent-refresh functions the page shows are the ones the browser test runs."""
    page = (DOCS / "browser-apps.md").read_text(encoding="utf-8")
    (script,) = re.findall(r"^```javascript\n(.*?)^```", page, re.S | re.M)
    demo = DEMO_PAGE.read_text(encoding="utf-8")
    functions = [chunk for chunk in script.split("\n\n") if chunk.strip()]
    assert len(functions) == 4
    for function in functions:
        assert function.strip() in demo, function.splitlines()[0]
