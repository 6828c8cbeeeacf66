"""Prometheus metrics: verification results, refresh latency and reuse, mirror health."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from jwtsess import JWKSKeySource, RefreshReused, TokenExpired, TokenRevoked, Verifier
from jwtsess.issuer import Issuer
from jwtsess.metrics import PrometheusMetrics
from jwtsess.mirror import RevocationMirror
from jwtsess.store.memory import MemoryStore
from tests.support.kit import TokenKit


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    sample = registry.get_sample_value(name, labels)
    return 0.0 if sample is None else sample


async def test_counts_verifications_refreshes_and_mirror(make_kit: Callable[..., TokenKit]) -> None:
    kit = make_kit("HS256")
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    store = MemoryStore()
    ticks = [100.0]
    mirror = RevocationMirror(store, clock=kit.clock, monotonic=lambda: ticks[0])
    await mirror.load()
    metrics.watch_mirror(mirror)
    issuer = Issuer(
        kit.keyring, kit.settings, store, clock=kit.clock, mirror=mirror, metrics=metrics
    )
    verifier = Verifier(
        kit.keyring, kit.settings, clock=kit.clock, revocation=mirror, metrics=metrics
    )

    pair = await issuer.login("alice", "user")
    verifier.verify(pair.access_token)
    verifier.verify(pair.access_token)
    refreshed = await issuer.refresh(pair.refresh_token)
    await issuer.refresh(pair.refresh_token)  # racing tab: grace
    kit.clock.advance(11)
    with pytest.raises(RefreshReused):
        await issuer.refresh(pair.refresh_token)
    with pytest.raises(TokenRevoked):
        verifier.verify(refreshed.access_token)
    kit.clock.advance(2000)
    with pytest.raises(TokenExpired):
        verifier.verify(pair.access_token)

    assert value(registry, "jwtsess_verifications_total", result="ok") == 2
    assert value(registry, "jwtsess_verifications_total", result="token_revoked") == 1
    assert value(registry, "jwtsess_verifications_total", result="token_expired") == 1
    assert value(registry, "jwtsess_refresh_seconds_count", outcome="rotated") == 1
    assert value(registry, "jwtsess_refresh_seconds_count", outcome="grace") == 1
    assert value(registry, "jwtsess_refresh_seconds_count", outcome="refresh_reused") == 1
    assert value(registry, "jwtsess_reuse_detected_total") == 1
    assert value(registry, "jwtsess_mirror_entries") == 1
    assert value(registry, "jwtsess_mirror_stale") == 0
    ticks[0] += 60  # nothing heard for a minute
    assert value(registry, "jwtsess_mirror_lag_seconds") == pytest.approx(60)
    assert value(registry, "jwtsess_mirror_stale") == 1


def test_importing_jwtsess_does_not_need_prometheus() -> None:
    import subprocess
    import sys

    code = "import sys, jwtsess, jwtsess.web; assert 'prometheus_client' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_jwks_key_source_is_watched(make_kit: Callable[..., TokenKit], tmp_path: Path) -> None:
    kit = make_kit("ES256")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(kit.keyring.jwks()))
    ticks = [100.0]
    keys = JWKSKeySource.from_file(path, monotonic=lambda: ticks[0])
    registry = CollectorRegistry()
    PrometheusMetrics(registry=registry).watch_key_source(keys)
    assert value(registry, "jwtsess_jwks_keys") == 1
    assert value(registry, "jwtsess_jwks_fetch_failures") == 0
    ticks[0] += 42
    assert value(registry, "jwtsess_jwks_age_seconds") == pytest.approx(42)
