"""Acceptance: a revocation reaches every process.

- propagation to a second OS process (tests/support/propagation_peer.py) through a
  private redis-server, with the latency measured on CLOCK_MONOTONIC;
- the verification path makes no network call (commandstats; Redis stopped);
- staleness: fail_closed answers 503 revocation_state_stale, fail_open accepts
  and counts;
- partitions through a loopback TCP proxy (tests/support/redis_proxy.py): a cut-off
  mirror does not see revocations, goes stale, and catches up after the
  network comes back, by resuming or, when the feed was trimmed meanwhile, by
  reloading the live window;
- the feed and the mirror shrink as revocations expire (frozen time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO

import pytest
import redis
import redis.asyncio as aioredis

from jwtsess import RevocationStateStale, TokenRevoked, Verifier
from jwtsess.issuer import Issuer
from jwtsess.mirror import RevocationMirror
from jwtsess.sessions import TokenPair
from jwtsess.store.redis import RedisStore
from tests.support.kit import AUDIENCE, ISSUER, MutableClock, TokenKit
from tests.support.redis_proxy import RedisFaultProxy
from tests.support.redis_server import RedisClusterServers, RedisServer
from tests.support.stats import percentile

pytestmark = pytest.mark.system  # starts redis-servers and peer processes

ROOT = Path(__file__).resolve().parent.parent
READ_TIMEOUT = 10.0  # bound on every wait for the peer or the mirror
TRIALS = 200


@pytest.fixture
def fresh_redis(redis_server: RedisServer) -> RedisServer:
    """The shared private server, emptied (ours, so flushing it is allowed)."""
    with redis_server.client() as admin:
        admin.flushall()
    return redis_server


def assert_stale(verifier: Verifier, token: str) -> None:
    with pytest.raises(RevocationStateStale) as info:
        verifier.verify(token)
    assert info.value.code == "revocation_state_stale"
    assert info.value.status == 503


async def run_bounded(*steps: Callable[[], Awaitable[object]]) -> None:
    """Run every step (stops, closes), each bounded, even if an earlier one hung."""
    stuck: list[str] = []
    for step in steps:
        try:
            await asyncio.wait_for(step(), READ_TIMEOUT)
        except TimeoutError:
            stuck.append(getattr(step, "__qualname__", repr(step)))
    assert not stuck, f"did not finish within {READ_TIMEOUT}s: {stuck}"


async def until_revoked(mirror: RevocationMirror, verifier: Verifier, token: str) -> None:
    """Wait on the mirror's progress (never on the wall clock) until ``token`` is refused."""
    for _ in range(20):
        try:
            verifier.verify(token)
        except TokenRevoked:
            return
        except RevocationStateStale:
            pass  # not heard from the feed yet
        assert await mirror.wait_for_progress(READ_TIMEOUT), "the mirror made no progress"
    raise AssertionError("the revocation never reached the mirror")


# -- a second OS process ---------------------------------------------------------------------


class PeerProcess:
    """The peer subprocess: send it command lines, read its answers with a timeout."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log
        self.leftover: list[str] = []  # what it printed after the last read, at exit

    def _log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def send(self, line: str) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(line.encode("utf-8") + b"\n")
        await stdin.drain()

    async def read(self) -> str:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            raw = await asyncio.wait_for(stdout.readline(), READ_TIMEOUT)
        except TimeoutError:
            raise AssertionError(
                f"the peer said nothing for {READ_TIMEOUT}s; its stderr:\n{self._log_text()}"
            ) from None
        if not raw:
            await asyncio.wait_for(self.process.wait(), READ_TIMEOUT)
            raise AssertionError(
                f"the peer exited ({self.process.returncode}); its stderr:\n{self._log_text()}"
            )
        return raw.decode("utf-8").strip()

    async def finish(self) -> None:
        """Ask the peer to quit, kill it if it does not, and keep what it still printed."""
        process = self.process
        if process.stdin is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                process.stdin.write(b"quit\n")
            process.stdin.close()
        try:
            out, _ = await asyncio.wait_for(process.communicate(), READ_TIMEOUT)
        except TimeoutError:
            out = b""
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await asyncio.wait_for(process.communicate(), READ_TIMEOUT)
        self.leftover = out.decode("utf-8", "replace").splitlines()


def _open_log(path: Path) -> IO[bytes]:
    return path.open("wb")


@contextlib.asynccontextmanager
async def peer_process(
    kit: TokenKit, url: str, tmp_path: Path, *, cluster: bool = False
) -> AsyncIterator[PeerProcess]:
    log_path = tmp_path / "peer-stderr.log"
    with _open_log(log_path) as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.support.propagation_peer",
            "--keys", str(kit.directory),
            "--redis", url,
            "--issuer", ISSUER,
            "--audience", AUDIENCE,
            "--block", "0.25",
            *(["--cluster"] if cluster else []),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            cwd=ROOT,
        )  # fmt: skip
        peer = PeerProcess(process, log_path)
        try:
            yield peer
        finally:
            await peer.finish()


@pytest.fixture(params=["redis", "cluster"])
def feed_server(request: pytest.FixtureRequest) -> tuple[str, bool]:
    """(url, is_cluster): one private Redis, or a private 3-master cluster, emptied."""
    if request.param == "cluster":
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        cluster.flush()
        return cluster.url, True
    server: RedisServer = request.getfixturevalue("fresh_redis")
    return server.url, False


async def test_logout_all_reaches_another_process(
    feed_server: tuple[str, bool],
    make_kit: Callable[..., TokenKit],
    clock: MutableClock,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The peer verifies on the real clock, so this process signs on (a copy of) it too;
    # set before make_kit so the key is active from now.
    clock.now = time.time()
    kit = make_kit("HS256")
    url, cluster = feed_server
    store = RedisStore.from_url(url, cluster=cluster)
    issuer = Issuer(kit.keyring, kit.settings, store, clock=kit.clock)
    latencies: list[float] = []
    try:
        async with peer_process(kit, url, tmp_path, cluster=cluster) as peer:
            assert await peer.read() == "ready"
            for i in range(TRIALS):
                user = f"user-{i}"
                clock.now = time.time()
                pair = await issuer.login(user, "user")
                await peer.send(f"token {user} {pair.access_token}")
                assert await peer.read() == f"ok {user}"
                t0 = time.monotonic()
                await issuer.logout_all(user)
                word, who, at = (await peer.read()).split()
                assert (word, who) == ("revoked", user)
                latencies.append(float(at) - t0)
        assert peer.process.returncode == 0, peer.leftover
        assert peer.leftover == [], peer.leftover  # no error lines, nothing unexpected
    finally:
        await run_bounded(store.close)

    assert len(latencies) == TRIALS  # every trial enforced in the other process
    assert all(latency > 0 for latency in latencies)
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    with capsys.disabled():
        print(
            f"\npropagation ({'cluster' if cluster else 'one Redis'}): "
            f"p50={p50 * 1000:.2f} ms p99={p99 * 1000:.2f} ms "
            f"max={max(latencies) * 1000:.2f} ms over {TRIALS} logout_all "
            "(issuer process -> Redis stream -> peer process refuses the token; target 50 ms)"
        )
    assert p99 < 1.0  # a sanity bound only; the 50 ms target is reported above


# -- the verification path -------------------------------------------------------------------


def verify_many(verifier: Verifier, tokens: Sequence[str], count: int) -> int:
    """``count`` verifications cycling through ``tokens``; returns how many passed."""
    passed = 0
    for i in range(count):
        verifier.verify(tokens[i % len(tokens)])
        passed += 1
    return passed


def commandstats(admin: redis.Redis) -> dict[str, int]:
    """Calls per command, leaving out the INFO calls this makes itself."""
    stats = admin.info("commandstats")
    return {name: int(v["calls"]) for name, v in stats.items() if name != "cmdstat_info"}


async def wait_for_single_client(admin: redis.Redis) -> None:
    """Until ``admin``'s connection is the server's only client (others are torn down)."""
    deadline = time.monotonic() + READ_TIMEOUT
    while int(admin.info("clients")["connected_clients"]) > 1:
        assert time.monotonic() < deadline, admin.client_list()
        await asyncio.sleep(0)  # let closing transports finish


async def test_verification_path_makes_no_network_calls(
    make_kit: Callable[..., TokenKit], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kit = make_kit("HS256")
    server = RedisServer(tmp_path / "redis-own")  # this test stops it
    server.start()
    store = RedisStore.from_url(server.url, socket_timeout=1.0)
    monotonic = MutableClock(1000.0)
    closed = RevocationMirror(
        store, clock=kit.clock, monotonic=monotonic, stale_after=5.0, block=0.2
    )
    opened = RevocationMirror(
        store, clock=kit.clock, monotonic=monotonic, stale_after=5.0, block=0.2, policy="fail_open"
    )
    try:
        issuer = Issuer(kit.keyring, kit.settings, store, clock=kit.clock)
        pairs = [await issuer.login(f"user-{i}", "user") for i in range(50)]
        revoked = pairs.pop()
        assert await issuer.logout(revoked.session_id)
        tokens = [p.access_token for p in pairs]
        closed_verifier = Verifier(kit.keyring, kit.settings, clock=kit.clock, revocation=closed)
        open_verifier = Verifier(kit.keyring, kit.settings, clock=kit.clock, revocation=opened)

        # 1. Following a live Redis, then the follower task stopped (its blocking XREADs
        #    are its own, not the verifier's): 10,000 verifications, zero commands.
        for mirror in (closed, opened):
            await mirror.start()
            assert await mirror.wait_for_progress(READ_TIMEOUT)
        await run_bounded(closed.stop, opened.stop)
        assert isinstance(store.client, aioredis.Redis)
        await store.client.connection_pool.disconnect()
        with server.client() as admin:  # one connection, opened before the first count
            await wait_for_single_client(admin)
            before = commandstats(admin)
            assert verify_many(closed_verifier, tokens, 10_000) == 10_000
            with pytest.raises(TokenRevoked):
                closed_verifier.verify(revoked.access_token)
            assert commandstats(admin) == before

        # 2. Redis gone altogether, the followers retrying in the background: every
        #    verification still answers from memory while within stale_after.
        for mirror in (closed, opened):
            await mirror.start()
        server.stop()
        passed = 0
        for _ in range(10):
            passed += verify_many(closed_verifier, tokens, 1_000)
            await asyncio.sleep(0)  # let the followers fail and retry meanwhile
        assert passed == 10_000
        assert verify_many(open_verifier, tokens, 100) == 100
        with pytest.raises(TokenRevoked):
            closed_verifier.verify(revoked.access_token)
        assert closed.healthy
        assert opened.healthy

        # 3. Past stale_after without hearing from the feed: the policies apply.
        monotonic.advance(5.01)
        assert not closed.healthy
        assert_stale(closed_verifier, tokens[0])
        assert_stale(closed_verifier, revoked.access_token)
        with caplog.at_level(logging.WARNING, logger="jwtsess.mirror"):
            assert verify_many(open_verifier, tokens, 20) == 20
            with pytest.raises(TokenRevoked):  # fail_open never un-revokes what it knows
                open_verifier.verify(revoked.access_token)
        assert opened.stale_accepts == 21
        assert closed.stale_accepts == 0
        warnings = [r for r in caplog.records if "accepting tokens (fail_open)" in r.getMessage()]
        assert len(warnings) == 1  # rate-limited: one warning, not one per request
        assert warnings[0].levelno == logging.WARNING
    finally:
        try:
            await run_bounded(closed.stop, opened.stop, store.close)
        finally:
            server.stop()


# -- partitions --------------------------------------------------------------------------------


async def test_cut_off_mirror_resumes_and_enforces_what_it_missed(
    fresh_redis: RedisServer, make_kit: Callable[..., TokenKit]
) -> None:
    kit = make_kit("HS256")
    store_a = RedisStore.from_url(fresh_redis.url)
    issuer = Issuer(kit.keyring, kit.settings, store_a, clock=kit.clock)
    proxy = RedisFaultProxy(fresh_redis.port)
    await proxy.start()
    store_b = RedisStore.from_url(proxy.url, socket_timeout=0.5)
    monotonic = MutableClock(1000.0)
    mirror = RevocationMirror(
        store_b, clock=kit.clock, monotonic=monotonic, stale_after=5.0, block=0.2
    )
    verifier = Verifier(kit.keyring, kit.settings, clock=kit.clock, revocation=mirror)
    try:
        alice_1 = await issuer.login("alice", "user")
        alice_2 = await issuer.login("alice", "admin")
        bob = await issuer.login("bob", "user")
        carol = await issuer.login("carol", "user")
        await mirror.start()
        assert await mirror.wait_for_progress(READ_TIMEOUT)  # following through the proxy
        everyone = (alice_1, alice_2, bob, carol)
        for pair in everyone:
            verifier.verify(pair.access_token)
        cursor, resyncs = mirror.cursor, mirror.resyncs
        assert resyncs == 1  # the initial load

        proxy.cut()
        assert await proxy.wait_for_refusal(READ_TIMEOUT)  # B tried to reconnect and failed
        assert sorted(await issuer.logout_all("alice")) == sorted(
            [alice_1.session_id, alice_2.session_id]
        )
        assert await issuer.logout(bob.session_id)
        with fresh_redis.client() as admin:
            # committed: alice's user entry and her two sessions, and bob's session
            assert admin.xlen("js:feed") == 4

        # B really is cut off: within stale_after it still accepts what A revoked.
        for pair in everyone:
            verifier.verify(pair.access_token)
        assert mirror.cursor == cursor
        # Past the bound, fail_closed refuses everything rather than guess.
        monotonic.advance(5.5)
        assert not mirror.healthy
        for pair in everyone:
            assert_stale(verifier, pair.access_token)

        proxy.restore()
        await until_revoked(mirror, verifier, alice_1.access_token)
        for pair in (alice_2, bob):
            with pytest.raises(TokenRevoked):
                verifier.verify(pair.access_token)
        verifier.verify(carol.access_token)
        assert mirror.healthy
        assert mirror.cursor != cursor
        assert mirror.resyncs == resyncs  # resumed from its cursor, no reload needed
        assert proxy.accepted >= 2
    finally:
        await run_bounded(mirror.stop, store_b.close, proxy.stop, store_a.close)


async def test_cut_off_mirror_reloads_when_the_feed_was_trimmed_meanwhile(
    fresh_redis: RedisServer, make_kit: Callable[..., TokenKit]
) -> None:
    kit = make_kit("HS256", access_ttl=60, leeway=2)  # revocations live 63 s
    clock = kit.clock
    store_a = RedisStore.from_url(fresh_redis.url)
    issuer = Issuer(kit.keyring, kit.settings, store_a, clock=clock)
    assert issuer.revocation_ttl == 63
    proxy = RedisFaultProxy(fresh_redis.port)
    await proxy.start()
    store_b = RedisStore.from_url(proxy.url, socket_timeout=0.5)
    monotonic = MutableClock(1000.0)
    mirror = RevocationMirror(store_b, clock=clock, monotonic=monotonic, stale_after=5.0, block=0.2)
    verifier = Verifier(kit.keyring, kit.settings, clock=clock, revocation=mirror)
    try:
        dave = await issuer.login("dave", "user")
        await mirror.start()
        assert await mirror.wait_for_progress(READ_TIMEOUT)
        resyncs = mirror.resyncs

        proxy.cut()
        assert await proxy.wait_for_refusal(READ_TIMEOUT)
        assert await issuer.logout(dave.session_id)  # entry lives until now + 63
        clock.advance(30)
        erin = await issuer.login("erin", "user")
        await issuer.logout_all("erin")  # user ~now + 64, her session now + 63
        clock.advance(35)  # dave's entry is dead, erin's two are live
        assert await store_a.trim_feed(now=clock()) == 2  # B never saw dave's entry
        with fresh_redis.client() as admin:
            assert admin.xlen("js:feed") == 2

        verifier.verify(erin.access_token)  # cut off: not enforced yet
        monotonic.advance(5.5)
        assert_stale(verifier, erin.access_token)

        proxy.restore()
        await until_revoked(mirror, verifier, erin.access_token)
        assert mirror.resyncs == resyncs + 1  # fell behind a trim: reloaded the live window
        assert mirror.healthy
        assert mirror.revokes("user", "erin")
        assert not mirror.revokes("sid", dave.session_id)  # expired, never needed
    finally:
        await run_bounded(mirror.stop, store_b.close, proxy.stop, store_a.close)


# -- trimming ----------------------------------------------------------------------------------


async def test_feed_and_mirror_shrink_as_revocations_expire(
    fresh_redis: RedisServer, make_kit: Callable[..., TokenKit]
) -> None:
    kit = make_kit("HS256", access_ttl=60, leeway=2)  # revocations live 63 s (64 for users)
    clock = kit.clock
    t0 = clock()
    store = RedisStore.from_url(fresh_redis.url)
    monotonic = MutableClock(1000.0)
    mirror = RevocationMirror(
        store, clock=clock, monotonic=monotonic, stale_after=5.0, block=0.1, sweep_interval=1.0
    )
    issuer = Issuer(kit.keyring, kit.settings, store, clock=clock, mirror=mirror)
    pairs: list[TokenPair] = []

    def xlen() -> int:
        with fresh_redis.client() as admin:
            return int(admin.xlen("js:feed"))

    try:
        await mirror.load()
        for i in range(6):  # one revocation every 10 s, alternately a session and a user
            pair = await issuer.login(f"user-{i}", "user")
            pairs.append(pair)
            if i % 2:
                await issuer.logout_all(f"user-{i}")
            else:
                await issuer.logout(pair.session_id)
            clock.advance(10)
        # A session entry for each i; logout_all adds a user entry for odd i.
        # until: t0+63 | t0+73, t0+74 | t0+83 | t0+93, t0+94 | t0+103 | t0+113, t0+114
        assert xlen() == len(mirror) == 9

        # By hand: sweep the mirror and trim the feed at each step.
        for now, left in ((t0 + 63, 8), (t0 + 75, 6)):
            clock.now = now
            mirror.sweep()
            assert await store.trim_feed(now=clock()) == left
            assert xlen() == len(mirror) == left

        # The follower sweeps its memory by itself on its sweep interval; a reader
        # never writes, so the feed shrinks only when the next writer appends.
        await mirror.start()
        for now, left in ((t0 + 85, 5), (t0 + 95, 3), (t0 + 105, 2), (t0 + 115, 0)):
            clock.now = now
            for _ in range(2):  # the read before the sweep, then one after it
                assert await mirror.wait_for_progress(READ_TIMEOUT)
            assert len(mirror) == left
            assert xlen() == 6
        await issuer.logout_all("someone")  # the script trims as it appends
        assert xlen() == 1
        assert mirror.healthy
    finally:
        await run_bounded(mirror.stop, store.close)
