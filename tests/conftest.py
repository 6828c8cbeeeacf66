"""Shared fixtures: factories for keyrings, signers and verifiers on a controllable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from jwtsess import AccessTokenSigner, KeyRing, TokenSettings, Verifier, init_keys
from jwtsess.issuer import Issuer
from jwtsess.sessions import SessionPolicy
from jwtsess.store.base import SessionStore
from jwtsess.store.memory import MemoryStore
from jwtsess.store.redis import RedisStore
from tests.redis_server import RedisClusterServers, RedisServer, running_cluster, running_redis

if TYPE_CHECKING:  # tests/web_app.py imports this module, so only for types here
    from tests.web_app import MakeWeb, WebApp

ISSUER = "https://auth.example.test"
AUDIENCE = "api.example.test"
T0 = 1_800_000_000.0  # a fixed "now" for tests (2027-01-15)


class MutableClock:
    """An injected wall clock that only moves when a test moves it."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class TokenKit:
    """A keyring with a signer and a verifier sharing one clock."""

    directory: Path
    clock: MutableClock
    keyring: KeyRing
    settings: TokenSettings
    signer: AccessTokenSigner
    verifier: Verifier

    def token(self, sub: str = "user-1", role: str = "user", sid: str = "sid-1") -> str:
        return self.signer.issue(sub, role, sid)[0]


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


ALGORITHMS = ("HS256", "RS256", "ES256", "EdDSA")


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


@pytest.fixture(params=["memory", "redis", "cluster"])
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


@dataclass
class IssuerKit:
    kit: TokenKit
    store: SessionStore
    issuer: Issuer

    @property
    def clock(self) -> MutableClock:
        return self.kit.clock


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
    """``await make_web(alg="HS256", **options)``: tests/web_app.py's app, closed after."""
    from tests.web_app import start_web

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
