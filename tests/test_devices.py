"""Device labels (jwtsess/devices.py): what a person sees in the session listing."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from jwtsess import devices
from jwtsess.devices import MAX_LABEL_LENGTH, device_label
from jwtsess.sessions import SessionInfo

CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)

LABELS = {
    CHROME_LINUX: "Chrome 131 on Linux",
    SAFARI_IPHONE: "Safari on iPhone",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15": "Safari 17 on macOS",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 "
    "Firefox/133.0": "Firefox 133 on Windows",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0": "Edge 131 on Windows",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.81 Mobile Safari/537.36": "Chrome on Pixel 8",
    # Chrome's reduced user agent names no model ("K"): say the system instead.
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36": "Chrome 131 on Android",
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1": "Chrome on iPad",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/131.0.6778.33 Safari/537.36": "Headless Chrome 131 on Linux",
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36": "Chrome 131 on ChromeOS",
    # Programs that name themselves: their first product token.
    "python-httpx/0.28.1": "python-httpx 0.28",
    "jwtsess-tests/1.0": "jwtsess-tests 1.0",
    "curl/8.5.0": "curl 8",
}


@pytest.fixture
def without_extra(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if ``jwtsess[devices]`` were not installed (ua_parser cannot be imported)."""
    monkeypatch.setitem(sys.modules, "ua_parser", None)
    devices._parser.cache_clear()
    device_label.cache_clear()
    yield
    devices._parser.cache_clear()
    device_label.cache_clear()


@pytest.mark.parametrize(("user_agent", "label"), list(LABELS.items()), ids=list(LABELS.values()))
def test_label(user_agent: str, label: str) -> None:
    assert device_label(user_agent) == label


@pytest.mark.parametrize(
    "user_agent",
    [None, "", "   ", "garbage \x00\n<script>", "(", "\u202eevil/1.0", "<b>x</b>"],
    ids=["none", "empty", "blank", "control-chars", "paren", "bidi", "markup"],
)
def test_nothing_useful_to_say_is_none(user_agent: str | None) -> None:
    assert device_label(user_agent) is None


def test_labels_are_short_and_printable() -> None:
    long = "a" * 30 + "/1.0 " + "x" * 300
    hostile = "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 " + "\u202e\x1b[31m" * 40
    for user_agent in (long, hostile, *LABELS):
        label = device_label(user_agent)
        assert label is None or (len(label) <= MAX_LABEL_LENGTH and label.isprintable())


def test_without_the_extra_every_label_is_none(without_extra: None) -> None:
    assert not devices.available()
    assert device_label(CHROME_LINUX) is None
    devices.preload()  # a no-op, not an error


def test_the_extra_is_installed_for_the_tests() -> None:
    assert devices.available()


def session(user_agent: str | None) -> SessionInfo:
    return SessionInfo(
        sid="s1",
        user_id="alice",
        role="user",
        extra_claims={},
        generation=0,
        created_at=1.0,
        last_used_at=2.0,
        expires_at=3.0,
        absolute_expires_at=4.0,
        user_agent=user_agent,
        ip="198.51.100.1",
    )


def test_the_listing_carries_the_label_and_the_raw_user_agent() -> None:
    listed = session(SAFARI_IPHONE).public()
    assert listed["device"] == "Safari on iPhone"
    assert listed["user_agent"] == SAFARI_IPHONE
    assert session(None).public()["device"] is None


def test_the_listing_without_the_extra_keeps_the_raw_user_agent(without_extra: None) -> None:
    listed = session(CHROME_LINUX).public()
    assert listed["device"] is None
    assert listed["user_agent"] == CHROME_LINUX
