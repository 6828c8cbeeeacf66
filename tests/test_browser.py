"""End to end in a real browser: the demo page (examples/) in headless Chromium.

The demo runs as a subprocess under uvicorn on a free loopback port with a
3-second access TTL, and Debian's chromium (``/usr/bin/chromium``) is driven by
Playwright's Python package. The test signs in, checks that scripts cannot read
the access or refresh token, lets the first access token expire while the page
keeps working through silent refresh, and signs out everywhere from a second
browser context. Screenshots of the key states land in the test's tmp_path.

There are no sleeps: the test waits on page conditions with Playwright timeouts
(so it takes a few real seconds: the server uses the real clock). When no
browser can be had, the test reports a skip with the reason.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import running_uvicorn

pytestmark = pytest.mark.system  # starts the demo and a browser

try:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
    from playwright.sync_api import Error as PlaywrightError
except ImportError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"the playwright package is not installed: {exc}", allow_module_level=True)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium phones home, and this machine's network refuses it.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[1]
ACCESS_TTL = 3  # seconds; short so that expiry happens during the test
TIMEOUT_MS = 10_000  # for Playwright actions and expectations
# Debian's chromium in headless mode, as jwtsess.devices labels it (needs jwtsess[devices]).
DEVICE_LABEL = re.compile(r"^(Headless )?Chrome \d+ on Linux \(this device\)$")
# The page's signed-out messages: after a failed check, or after a failed timed refresh.
SIGNED_OUT = re.compile(r"^(You are signed out\.|Your session ended\.)$")

# Cookie names with JWTSESS_SECURE_COOKIES=0 (no __Host- / __Secure- prefixes).
ACCESS_COOKIE = "jwtsess-access"
REFRESH_COOKIE = "jwtsess-refresh"
CSRF_COOKIE = "jwtsess-csrf"


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's chromium under Playwright, or a skip that says why not."""
    if not CHROMIUM.exists() or not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing (run scripts/ensure_browser.sh)")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
        except PlaywrightError as exc:
            reason = " ".join(exc.message.split())[:400]
            pytest.skip(f"Playwright cannot launch {CHROMIUM}: {reason}")
        try:
            yield launched
        finally:
            launched.close()


@contextlib.contextmanager
def running_demo(keys_dir: Path, access_ttl: int) -> Iterator[str]:
    """The demo app (examples/app.py) under uvicorn on a free loopback port; yields its URL."""
    env = {
        "JWTSESS_KEYS_DIR": str(keys_dir),
        "JWTSESS_ACCESS_TTL": str(access_ttl),
        "JWTSESS_SECURE_COOKIES": "0",
        "REDIS_URL": None,
    }
    with running_uvicorn(module="examples.app", env=env) as server:
        yield server.base_url


@pytest.fixture
def demo_url(tmp_path: Path) -> Iterator[str]:
    """The demo with a short access TTL, so that tokens expire during the test."""
    with running_demo(tmp_path / "keys", ACCESS_TTL) as url:
        yield url


@pytest.fixture
def demo_url_default_ttl(tmp_path: Path) -> Iterator[str]:
    """The demo with its default access TTL (900 s), as ``make run`` serves it."""
    with running_demo(tmp_path / "keys", 900) as url:
        yield url


def jwt_exp(token: str) -> float:
    """The ``exp`` claim of a JWT, read without verification (test-side only)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return float(claims["exp"])


def cookie_values(context: BrowserContext) -> dict[str, tuple[str, bool]]:
    """name -> (value, httpOnly) of the context's cookies."""
    return {
        c.get("name", ""): (c.get("value", ""), c.get("httpOnly", False)) for c in context.cookies()
    }


def assert_tokens_hidden(page: Page, context: BrowserContext) -> str:
    """The access and refresh cookies are HttpOnly and absent from document.cookie;
    returns the current access token."""
    cookies = cookie_values(context)
    assert ACCESS_COOKIE in cookies, sorted(cookies)
    assert REFRESH_COOKIE in cookies, sorted(cookies)
    access, access_http_only = cookies[ACCESS_COOKIE]
    refresh, refresh_http_only = cookies[REFRESH_COOKIE]
    assert access.count(".") == 2  # a JWT
    assert refresh
    assert access_http_only
    assert refresh_http_only
    visible: str = page.evaluate("document.cookie")
    assert access not in visible
    assert refresh not in visible
    assert ACCESS_COOKIE not in visible
    assert REFRESH_COOKIE not in visible
    # Scripts do see the CSRF token: the page repeats it in the X-CSRF-Token header.
    csrf, csrf_http_only = cookies[CSRF_COOKIE]
    assert not csrf_http_only
    assert f"{CSRF_COOKIE}={csrf}" in visible
    return access


def sign_in(page: Page, url: str, username: str, password: str) -> None:
    page.goto(url)
    expect(page.locator("#login")).to_be_visible()
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#sign-in")
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#who")).to_have_text(username)


def shot(page: Page, directory: Path, name: str, taken: list[Path]) -> None:
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    taken.append(path)
    print(f"screenshot: {path}")


def test_demo_page_in_chromium(browser: Browser, demo_url: str, tmp_path: Path) -> None:
    expect.set_options(timeout=TIMEOUT_MS)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    taken: list[Path] = []
    page_errors: list[str] = []

    context_a = browser.new_context()
    context_b = browser.new_context()
    try:
        for context in (context_a, context_b):
            context.set_default_timeout(TIMEOUT_MS)
        page_a = context_a.new_page()
        page_a.on("pageerror", lambda error: page_errors.append(f"A: {error}"))

        # 1. Sign in: the page shows the user and the role.
        sign_in(page_a, demo_url, "alice", "alice-demo-password")
        expect(page_a.locator("#role")).to_have_text("admin")
        expect(page_a.locator("#sessions tr")).to_have_count(1)
        # The session reads as a device a person recognises; the raw User-Agent is on hover.
        device = page_a.locator("#sessions tr td.device")
        expect(device).to_have_text(DEVICE_LABEL)
        assert device.get_attribute("title") == page_a.evaluate("navigator.userAgent")
        shot(page_a, shots, "1-signed-in", taken)

        # 2. Scripts cannot read the tokens: only the CSRF cookie is visible.
        first_access = assert_tokens_hidden(page_a, context_a)

        # 3. Past the first access token's expiry, after at least one silent refresh.
        page_a.wait_for_function(
            """([exp]) => Date.now() / 1000 > exp + 0.5
                && Number(document.getElementById("refreshes").textContent) >= 1""",
            arg=[jwt_exp(first_access)],
            timeout=(ACCESS_TTL + 5) * 1000,
        )
        expect(page_a.locator("#app")).to_be_visible()
        expect(page_a.locator("#who")).to_have_text("alice")
        # The page's own API helper still gets through to a protected route.
        status, me = page_a.evaluate(
            "async () => { const r = await api('/me'); return [r.status, await r.json()]; }"
        )
        assert status == 200, me
        assert me["sub"] == "alice"
        assert me["role"] == "admin"
        assert assert_tokens_hidden(page_a, context_a) != first_access  # rotated, still hidden
        shot(page_a, shots, "2-after-refresh", taken)
        # A reload starts from the cookies alone and still shows the user.
        page_a.reload()
        expect(page_a.locator("#app")).to_be_visible()
        expect(page_a.locator("#who")).to_have_text("alice")
        expect(page_a.locator("#role")).to_have_text("admin")

        # 4. A second browser signs in as alice too and signs out everywhere.
        page_b = context_b.new_page()
        page_b.on("pageerror", lambda error: page_errors.append(f"B: {error}"))
        sign_in(page_b, demo_url, "alice", "alice-demo-password")
        expect(page_b.locator("#sessions tr")).to_have_count(2)
        expect(page_b.locator("#sessions tr:not(.current) td.device")).to_have_text(
            re.compile(r"^(Headless )?Chrome \d+ on Linux$")  # the other browser, not "this device"
        )
        page_b.click("#logout-all")
        expect(page_b.locator("#login")).to_be_visible()
        expect(page_b.locator("#status")).to_have_text("Signed out everywhere.")
        shot(page_b, shots, "3-b-signed-out-everywhere", taken)

        # 5. The first browser is signed out on its next request: the page's own
        # check (what it runs on load and after each refresh) gets a 401 and the
        # page falls back to the sign-in form. (A reload is the other test below.)
        page_a.evaluate("() => show()")
        expect(page_a.locator("#login")).to_be_visible()
        expect(page_a.locator("#app")).to_be_hidden()
        # Whichever request comes first, ours or the page's own refresh timer.
        expect(page_a.locator("#status")).to_have_text(SIGNED_OUT)
        shot(page_a, shots, "4-a-signed-out", taken)
    finally:
        context_b.close()
        context_a.close()

    assert not page_errors, page_errors
    assert all(path.stat().st_size > 0 for path in taken)


def test_reload_after_sign_out_everywhere_shows_sign_in(  # regression: stale-cookie lockout
    browser: Browser, demo_url_default_ttl: str
) -> None:
    expect.set_options(timeout=TIMEOUT_MS)
    context_a = browser.new_context()
    context_b = browser.new_context()
    try:
        for context in (context_a, context_b):
            context.set_default_timeout(TIMEOUT_MS)
        page_a = context_a.new_page()
        sign_in(page_a, demo_url_default_ttl, "alice", "alice-demo-password")
        page_b = context_b.new_page()
        sign_in(page_b, demo_url_default_ttl, "alice", "alice-demo-password")
        page_b.click("#logout-all")
        expect(page_b.locator("#login")).to_be_visible()

        # The first browser reloads: the page should load and offer the sign-in
        # form (not a JSON error), and signing in again should work.
        page_a.reload()
        expect(page_a.locator("#login")).to_be_visible(timeout=2_000)
        page_a.fill("#password", "alice-demo-password")
        page_a.click("#sign-in")
        expect(page_a.locator("#who")).to_have_text("alice", timeout=2_000)
    finally:
        context_b.close()
        context_a.close()


def test_dpop_session_in_chromium(browser: Browser, demo_url_default_ttl: str) -> None:
    """DPoP mode: a WebCrypto key nobody can export; a copied token is refused without it."""
    import httpx

    from jwtsess import DPoPKey

    expect.set_options(timeout=TIMEOUT_MS)
    url = demo_url_default_ttl
    context = browser.new_context()
    page_errors: list[str] = []
    try:
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        page.goto(url)
        expect(page.locator("#login")).to_be_visible()
        page.fill("#username", "alice")
        page.fill("#password", "alice-demo-password")
        page.check("#dpop")
        page.click("#sign-in")
        expect(page.locator("#who")).to_have_text("alice")
        expect(page.locator("#token-type")).to_have_text("DPoP")

        # The page calls /me with its key; the token is bound to that key.
        call_me = "async () => { const r = await api('/me'); return [r.status, await r.json()]; }"
        status, me = page.evaluate(call_me)
        assert status == 200, me
        jkt = me["cnf"]["jkt"]
        # The private key cannot be read out of the browser.
        export = page.evaluate(
            """async () => { const k = await dpopKey(false);
                try { await crypto.subtle.exportKey("jwk", k.privateKey); return "exported"; }
                catch (e) { return e.name; } }"""
        )
        assert export == "InvalidAccessError"

        # Refresh with the key: new tokens, still bound to the same key.
        before = page.evaluate("() => dpopTokens().access")
        assert page.evaluate("() => refresh()") is True
        after = page.evaluate("() => dpopTokens().access")
        assert after != before
        status, me = page.evaluate(call_me)
        assert status == 200, me
        assert me["cnf"]["jkt"] == jkt

        # A thief copies both tokens out of the page: without the key they are refused.
        refresh_token = page.evaluate("() => dpopTokens().refresh")
        thief_key = DPoPKey.generate()
        with httpx.Client(base_url=url, timeout=10) as thief:
            as_bearer = thief.get("/me", headers={"Authorization": f"Bearer {after}"})
            assert (as_bearer.status_code, as_bearer.json()["error"]) == (401, "dpop_required")
            proof = thief_key.proof("GET", f"{url}/me", access_token=after)
            own_key = thief.get("/me", headers={"Authorization": f"DPoP {after}", "DPoP": proof})
            assert (own_key.status_code, own_key.json()["error"]) == (401, "invalid_dpop_proof")
            stolen = thief.post(
                "/auth/refresh",
                json={"refresh_token": refresh_token},
                headers={"DPoP": thief_key.proof("POST", f"{url}/auth/refresh")},
            )
            assert (stolen.status_code, stolen.json()["error"]) == (401, "invalid_dpop_proof")
        # The page's own session is untouched by the thief's attempts.
        status, _ = page.evaluate(call_me)
        assert status == 200
    finally:
        context.close()
    assert not page_errors, page_errors
