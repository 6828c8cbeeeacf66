"""One percentile for every latency figure the tests, benchmarks and soak print."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least a fraction ``q`` of them at or below it.

    :param q: in (0, 1]: 0.5 is the median (the lower one), 0.99 the p99.
    :raises ValueError: no values, or ``q`` outside (0, 1].
    """
    if not values:
        raise ValueError("no values")
    if not 0 < q <= 1:
        raise ValueError("q must be in (0, 1]")
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]
