"""The pytest11 entry point of jwtsess: the fixtures of ``jwtsess.testing``.

pytest loads this module in every run of any project whose environment has
jwtsess installed, so it imports nothing but pytest: jwtsess itself is
imported only when a test asks for one of these fixtures. No hooks, no side
effects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from jwtsess import TokenSettings
    from jwtsess.testing import JWTSessKit, SteppableClock
    from jwtsess.web import WebConfig


@pytest.fixture
def jwtsess_clock() -> SteppableClock:
    """The wall clock of the ``jwtsess`` kit: moves only with ``advance`` / ``set``."""
    from jwtsess.testing import SteppableClock

    return SteppableClock()


@pytest.fixture
def jwtsess_alg() -> str:
    """The algorithm of the kit's key (override in a conftest to match your app)."""
    return "ES256"


@pytest.fixture
def jwtsess_settings() -> TokenSettings | None:
    """The kit's TokenSettings (None: issuer https://jwtsess.test, audience jwtsess-test)."""
    return None


@pytest.fixture
def jwtsess_config() -> WebConfig | None:
    """The kit's WebConfig (None: ``WebConfig(secure=False)`` for http://testserver)."""
    return None


@pytest.fixture
def jwtsess(
    tmp_path_factory: pytest.TempPathFactory,
    jwtsess_clock: SteppableClock,
    jwtsess_alg: str,
    jwtsess_settings: TokenSettings | None,
    jwtsess_config: WebConfig | None,
) -> JWTSessKit:
    """An in-memory issuer, verifier and revocation mirror (``jwtsess.testing.JWTSessKit``)."""
    from jwtsess.testing import JWTSessKit

    return JWTSessKit(
        tmp_path_factory.mktemp("jwtsess-keys"),
        alg=jwtsess_alg,
        settings=jwtsess_settings,
        config=jwtsess_config,
        clock=jwtsess_clock,
    )
