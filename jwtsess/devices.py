"""Readable device labels for session listings: "Chrome 131 on Linux", "Safari on iPhone".

A label is made from the session's User-Agent by ua-parser (the optional
``jwtsess[devices]`` extra), which tracks uap-core, the regex collection that
most analytics and security tools share, and ships its rules as a separate
monthly package (``ua-parser-builtins``). The ``regex`` variant of the extra adds
``ua-parser-rs``, a native matcher: about 10 us for a user agent it has not seen,
where the pure-Python matcher takes milliseconds. Without the extra every label
is ``None`` and the raw User-Agent, which listings always carry, is what there is.

The parser compiles its rules on first use (0.3-1 s, once per process). Call
:func:`preload` from a thread at start-up (``await asyncio.to_thread(preload)``
in the lifespan) to keep that off the request path. Labels are cached by
User-Agent string.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ua_parser import Parser

__all__ = ["available", "device_label", "preload"]

#: Longest label returned; a label is shown to people, not parsed.
MAX_LABEL_LENGTH = 64

# ua-parser's family names, shortened to what a person calls the browser.
_BROWSERS = {
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "Safari",
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Android WebView",
    "HeadlessChrome": "Headless Chrome",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Edge Mobile": "Edge",
}
_SYSTEMS = {"Mac OS X": "macOS", "Chrome OS": "ChromeOS"}
# Device families that name no device a person would recognise: fall back to the OS.
_VAGUE_DEVICES = {"Other", "Mac", "K", "Spider", "Generic Smartphone", "Generic Tablet"}
_PRODUCT = re.compile(r"([A-Za-z][A-Za-z0-9._-]{0,31})(?:/(\d{1,6}(?:\.\d{1,6})?))?")


def available() -> bool:
    """Whether the ``devices`` extra (ua-parser) is installed."""
    return _parser() is not None


def preload() -> None:
    """Load and compile the parser's rules now (blocking; run it in a thread)."""
    _parser()


@functools.cache
def _parser() -> Parser | None:
    try:
        import ua_parser  # the optional extra
    except ImportError:
        return None
    return ua_parser.parser  # built (thread-safely) on first access


@functools.lru_cache(maxsize=4096)
def device_label(user_agent: str | None) -> str | None:
    """A short, readable name for the browser and device behind ``user_agent``.

    ``"Chrome 131 on Linux"`` on a desktop, ``"Safari on iPhone"`` where the
    device has a name (its browser's version then adds nothing a person looks
    for), ``"python-httpx 0.28"`` for a program that names itself. ``None`` when
    nothing useful can be said, or without the ``devices`` extra.
    """
    parser = _parser()
    if parser is None or not user_agent:
        return None
    result = parser.parse(user_agent)
    browser = result.user_agent
    if browser is None:
        return _product(user_agent)
    name = _BROWSERS.get(browser.family, browser.family)
    device = result.device
    if device is not None and device.family not in _VAGUE_DEVICES:
        brand = device.brand or ""
        if not brand.startswith("Generic"):
            return _bounded(f"{name} on {device.family}")
    version = f" {browser.major}" if browser.major else ""
    system = result.os
    if system is None or system.family == "Other":
        return _bounded(f"{name}{version}")
    return _bounded(f"{name}{version} on {_SYSTEMS.get(system.family, system.family)}")


def _product(user_agent: str) -> str | None:
    """The first product token (``name/1.2.3`` -> ``name 1.2``) of an agent ua-parser
    does not know; ``None`` if it does not start with one."""
    match = _PRODUCT.match(user_agent)
    if match is None or (match.group(2) is None and len(user_agent) > len(match.group(1))):
        return None
    name, version = match.groups()
    return _bounded(f"{name} {version}" if version else name)


def _bounded(label: str) -> str:
    printable = "".join(c for c in label if c.isprintable())
    return printable[:MAX_LABEL_LENGTH]
