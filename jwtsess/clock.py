"""The injectable clock.

Every component that reads the time takes a ``clock`` argument: a function
returning seconds since the epoch as a float. The default reads
``time.time()`` at call time (not at import time), so freezegun can freeze it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


def system_clock() -> float:
    """Wall-clock seconds since the epoch."""
    return time.time()
