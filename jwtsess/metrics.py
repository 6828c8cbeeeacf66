"""Optional Prometheus metrics (``pip install jwtsess[metrics]``).

Wire one ``PrometheusMetrics`` into the pieces you want counted::

    metrics = PrometheusMetrics()          # default registry; or registry=CollectorRegistry()
    verifier = Verifier(keyring, settings, revocation=mirror, metrics=metrics)
    issuer = Issuer(keyring, settings, store, mirror=mirror, metrics=metrics)
    metrics.watch_mirror(mirror)
    metrics.watch_key_source(keys)         # a JWKSKeySource (services that only verify)

Series (namespace ``jwtsess``):

- ``jwtsess_verifications_total{result}``: ``ok`` or the error code;
- ``jwtsess_refresh_seconds{outcome}``: server-side refresh latency, outcome
  ``rotated``, ``grace`` or the error code;
- ``jwtsess_reuse_detected_total``: refresh-token reuse (theft) detections;
- ``jwtsess_mirror_lag_seconds``: seconds since the mirror last heard from the feed;
- ``jwtsess_mirror_stale``: 1 while that exceeds ``stale_after``;
- ``jwtsess_mirror_stale_accepts``: tokens accepted while stale under ``fail_open``;
- ``jwtsess_mirror_entries``: live revocations held in memory;
- ``jwtsess_jwks_fetch_failures``: failed JWKS fetches (the last good set stayed);
- ``jwtsess_jwks_age_seconds``: seconds since the last successful JWKS fetch;
- ``jwtsess_jwks_keys``: keys in the set in force.

The per-request cost is one pre-bound counter increment; the mirror series are
computed when scraped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .jwks_source import JWKSKeySource
    from .mirror import RevocationMirror


class MetricsSink(Protocol):
    """What the verifier and issuer call; ``PrometheusMetrics`` implements it."""

    def verified(self) -> None: ...

    def rejected(self, code: str) -> None: ...

    def refreshed(self, outcome: str, seconds: float) -> None: ...


class PrometheusMetrics:
    """Prometheus counters and histograms for jwtsess.

    :param registry: where to register (default: prometheus_client's global registry).
    :param namespace: metric name prefix.
    :raises ImportError: prometheus_client is not installed (``jwtsess[metrics]``).
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, namespace: str = "jwtsess"
    ) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        self.registry = registry if registry is not None else REGISTRY
        self._verifications = Counter(
            "verifications", "Access-token verifications by result.", ["result"],
            namespace=namespace, registry=self.registry,
        )  # fmt: skip
        self._ok = self._verifications.labels("ok")
        self._refresh = Histogram(
            "refresh_seconds", "Server-side refresh latency by outcome.", ["outcome"],
            namespace=namespace, registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
        )  # fmt: skip
        self._reuse = Counter(
            "reuse_detected", "Refresh-token reuse (theft) detections.",
            namespace=namespace, registry=self.registry,
        )  # fmt: skip
        self._gauge = Gauge
        self._namespace = namespace

    def verified(self) -> None:
        self._ok.inc()

    def rejected(self, code: str) -> None:
        self._verifications.labels(code).inc()

    def refreshed(self, outcome: str, seconds: float) -> None:
        self._refresh.labels(outcome).observe(seconds)
        if outcome == "refresh_reused":
            self._reuse.inc()

    def watch_mirror(self, mirror: RevocationMirror) -> None:
        """Export the mirror's lag, staleness, fail-open accepts and size (read at scrape)."""
        series = {
            "mirror_lag_seconds": ("Seconds since the mirror last heard from the feed.",
                                   mirror.lag),
            "mirror_stale": ("1 while the mirror is stale.",
                             lambda: 0.0 if mirror.healthy else 1.0),
            "mirror_stale_accepts": ("Tokens accepted while stale (fail_open).",
                                     lambda: float(mirror.stale_accepts)),
            "mirror_entries": ("Live revocations held in memory.", lambda: float(len(mirror))),
        }  # fmt: skip
        self._watch(series)

    def watch_key_source(self, keys: JWKSKeySource) -> None:
        """Export a JWKS key source's failed fetches, age and size (read at scrape)."""
        self._watch(
            {
                "jwks_fetch_failures": (
                    "Failed JWKS fetches (the last good key set stayed in force).",
                    lambda: float(keys.fetch_failures),
                ),
                "jwks_age_seconds": ("Seconds since the last successful JWKS fetch.", keys.age),
                "jwks_keys": ("Keys in the JWKS in force.", lambda: float(len(keys.kids))),
            }
        )

    def _watch(self, series: dict[str, tuple[str, Callable[[], float]]]) -> None:
        for name, (help_text, read) in series.items():
            gauge = self._gauge(name, help_text, namespace=self._namespace, registry=self.registry)
            gauge.set_function(read)
