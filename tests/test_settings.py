"""TokenSettings refuses unsafe values with real checks (not asserts)."""

from __future__ import annotations

import pytest

from jwtsess import TokenSettings


@pytest.mark.parametrize(
    "overrides",
    [
        {"issuer": ""},
        {"audience": ""},
        {"access_ttl": 0},
        {"access_ttl": 86401},
        {"leeway": -1},
        {"leeway": 1},
        {"leeway": 301},
        {"max_token_bytes": 100},
        {"verified_cache_size": -1},
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, object]) -> None:
    values: dict[str, object] = {"issuer": "https://i", "audience": "a", **overrides}
    with pytest.raises(ValueError, match="must"):
        TokenSettings(**values)  # type: ignore[arg-type]


def test_defaults() -> None:
    settings = TokenSettings(issuer="https://i", audience="a")
    assert (settings.access_ttl, settings.leeway, settings.max_token_bytes) == (900, 10, 4096)
