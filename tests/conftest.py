"""Shared fixtures: factories for keyrings, signers, issuers, stores and the web app.

The types and helpers they build on live in tests/support/.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from jwtsess import AccessTokenSigner, KeyRing, TokenSettings, Verifier, init_keys
from jwtsess.issuer import Issuer
from jwtsess.sessions import SessionPolicy
from jwtsess.store.base import SessionStore
from jwtsess.store.memory import MemoryStore
from jwtsess.store.redis import RedisStore
from tests.support.kit import AUDIENCE, ISSUER, IssuerKit, MutableClock, TokenKit
from tests.support.redis_proxy import RedisFaultProxy
from tests.support.redis_server import (
    RedisClusterServers,
    RedisServer,
    running_cluster,
    running_redis,
)
from tests.support.web_app import MakeWeb, WebApp, start_web


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
def settings() -> TokenSettings:
    return TokenSettings(issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture
def make_kit(
    tmp_path: Path, clock: MutableClock, settings: TokenSettings
) -> Callable[..., TokenKit]:
    """``make_kit(alg)``: a fresh key directory initialised with one active ``alg`` key."""
    counter = iter(range(1_000_000))

    def make(alg: str = "RS256", **settings_overrides: object) -> TokenKit:
        directory = tmp_path / f"keys-{alg}-{next(counter)}"
        init_keys(directory, alg, clock=clock)
        keyring = KeyRing(directory, clock=clock, monotonic=clock)
        kit_settings = (
            TokenSettings(**{"issuer": ISSUER, "audience": AUDIENCE, **settings_overrides})  # type: ignore[arg-type]
            if settings_overrides
            else settings
        )
        return TokenKit(
            directory=directory,
            clock=clock,
            keyring=keyring,
            settings=kit_settings,
            signer=AccessTokenSigner(keyring, kit_settings, clock=clock),
            verifier=Verifier(keyring, kit_settings, clock=clock),
        )

    return make


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private redis-server for the whole run (flushed before each test that uses it)."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A private 3-master Redis Cluster for the whole run (flushed before each use)."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


#: Fixtures that start servers: a test using one must be marked ``system``.
SERVER_FIXTURES = frozenset({"redis_server", "redis_cluster"})


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.system),
        pytest.param("cluster", marks=pytest.mark.system),
    ]
)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    """Every SessionStore backend, so one suite checks the same contract on each."""
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "cluster":
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        cluster.flush()  # our own private servers
        redis_store = RedisStore.from_url(cluster.url, cluster=True)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        with server.client() as admin:
            admin.flushall()  # our own private server, never the machine's
        redis_store = RedisStore.from_url(server.url)
    try:
        yield redis_store
    finally:
        await redis_store.close()


@pytest.fixture
def make_issuer(make_kit: Callable[..., TokenKit], store: SessionStore) -> Callable[..., IssuerKit]:
    """``make_issuer(alg="HS256", policy=None, **issuer_kwargs)`` on the parametrized store."""

    def make(
        alg: str = "HS256", policy: SessionPolicy | None = None, **kwargs: object
    ) -> IssuerKit:
        kit = make_kit(alg)
        issuer = Issuer(
            kit.keyring,
            kit.settings,
            store,
            policy=policy,
            clock=kit.clock,
            **kwargs,  # type: ignore[arg-type]
        )
        return IssuerKit(kit=kit, store=store, issuer=issuer)

    return make


@pytest.fixture
async def make_web(
    make_kit: Callable[..., TokenKit], store: SessionStore
) -> AsyncIterator[MakeWeb]:
    """``await make_web(alg="HS256", **options)``: tests/support/web_app.py's app, closed after."""

    built: list[WebApp] = []

    async def make(alg: str = "HS256", **options: object) -> WebApp:
        web = await start_web(make_kit(alg), store, **options)
        built.append(web)
        return web

    yield make
    for web in built:
        await web.aclose()


@pytest.fixture
async def web(make_web: MakeWeb) -> WebApp:
    return await make_web()


@pytest.fixture
async def faulty_web(
    make_kit: Callable[..., TokenKit], redis_server: RedisServer
) -> AsyncIterator[WebApp]:
    """The test app on the private Redis behind a ``RedisFaultProxy``: ``web.fault.cut()``
    takes the store away (every store call fails at once), ``restore()`` brings it back."""
    with redis_server.client() as admin:
        admin.flushall()  # our own private server
    async with RedisFaultProxy(redis_server.port) as proxy:
        store = RedisStore.from_url(proxy.url, socket_timeout=2)
        web = await start_web(make_kit("HS256"), store)
        web.fault = proxy
        try:
            yield web
        finally:
            await web.aclose()
            await store.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _drop_hmac_jwks_cases(config, items)
    _require_system_marker(items)


def _drop_hmac_jwks_cases(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A JWKS holds no HMAC key: attack cases on an HS256 ring run against the keyring only.

    (Tokens whose header claims HS256 still run against both: key confusion.)
    """
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        ring_alg = params.get("ring_alg", params.get("alg"))
        if params.get("key_source") == "jwks" and ring_alg == "HS256":
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _require_system_marker(items: list[pytest.Item]) -> None:
    """Refuse to run a test that starts a server without the ``system`` marker, so
    ``pytest -m "not system"`` stays a fast inner loop with no server in it."""
    unmarked = [
        item.nodeid
        for item in items
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("system") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "tests using a server fixture need @pytest.mark.system: " + ", ".join(unmarked)
        )
