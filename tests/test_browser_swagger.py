"""Swagger UI of examples/fastapi_app.py in headless Chromium: Authorize, then a protected call.

The FastAPI demo runs under uvicorn (``python -m examples.fastapi_app``) on a
free loopback port; a token comes from its own ``POST /auth/login``; in
Swagger UI at ``/docs`` the test clicks Authorize, pastes the token under the
``jwtsessBearer`` scheme, and runs ``GET /me`` with "Try it out": the answer is
200 with alice's claims. Without authorizing, the same call is 401.
Browser set-up and skips as in tests/test_browser.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import running_uvicorn

try:
    from playwright.sync_api import Browser, Page, expect
except ImportError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"the playwright package is not installed: {exc}", allow_module_level=True)

from tests.test_browser import browser as browser  # the fixture

TIMEOUT_MS = 15_000


@pytest.fixture
def fastapi_demo(tmp_path: Path) -> Iterator[str]:
    env = {"JWTSESS_KEYS_DIR": str(tmp_path / "keys"), "REDIS_URL": None}
    with running_uvicorn(module="examples.fastapi_app", env=env) as server:
        yield server.base_url
        log = server.stop()
    assert "Traceback" not in log, log


def try_me(page: Page) -> tuple[str, str]:
    """Run GET /me with Swagger's "Try it out"; its status and response body."""
    operation = page.locator("#operations-default-me_me_get")
    if not operation.locator(".try-out__btn").is_visible():
        operation.locator(".opblock-summary").click()
    try_out = operation.locator("button.try-out__btn")
    if try_out.inner_text().strip() == "Try it out":
        try_out.click()
    with page.expect_response(lambda response: response.url.endswith("/me")) as answered:
        operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status")
    expect(status).to_contain_text(str(answered.value.status), timeout=TIMEOUT_MS)
    body = operation.locator(".live-responses-table .response-col_description pre").first
    return status.inner_text().split()[0], body.inner_text()


def test_swagger_authorize_makes_a_protected_call_succeed(
    browser: Browser, fastapi_demo: str
) -> None:
    expect.set_options(timeout=TIMEOUT_MS)
    login = httpx.post(
        f"{fastapi_demo}/auth/login",
        json={"username": "alice", "password": "alice-demo-password"},
        timeout=10,
    )
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]

    context = browser.new_context()
    try:
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{fastapi_demo}/docs")
        expect(page.locator("button.authorize").first).to_be_visible()

        status, body = try_me(page)  # not authorized yet
        assert status == "401", body
        assert "token_missing" in body

        page.locator("button.authorize").first.click()
        bearer = page.locator(".auth-container").filter(has_text="jwtsessBearer")
        bearer.locator("input").fill(token)
        bearer.locator("button.authorize").click()
        expect(bearer.locator("h6")).to_have_text("Authorized")
        page.locator("button.btn-done").first.click()

        status, body = try_me(page)
        assert status == "200", body
        assert '"sub": "alice"' in body
        assert '"role": "admin"' in body
        assert not errors, errors
    finally:
        context.close()
