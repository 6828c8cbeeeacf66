"""RedisStore behind Redis Sentinel: a master, a replica and a sentinel started from the binary.

Sessions and revocations written through the sentinel-resolved master survive a
failover to the replica, and the store follows the new master.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from jwtsess import Issuer, RedisStore, RevocationMirror, TokenRevoked, Verifier
from tests.support.kit import TokenKit
from tests.support.redis_server import RedisServer, free_port

pytestmark = pytest.mark.system  # starts redis-servers and sentinels

SERVICE = "jwtsess-test"


class SentinelProcess:
    """``redis-server <conf> --sentinel`` watching one master."""

    def __init__(self, directory: Path, master_port: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = directory / "sentinel.conf"
        self.config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
        )
        binary = shutil.which("redis-server")
        assert binary is not None
        self.process = subprocess.Popen(
            [binary, str(self.config), "--sentinel"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._ready = threading.Event()
        self._master_switched = threading.Event()
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()
        if not self._ready.wait(timeout=15):
            self.stop()
            raise RuntimeError("redis sentinel did not start")

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace")
            if "+monitor master" in line:
                self._ready.set()
            if "+switch-master" in line:
                self._master_switched.set()
        self._ready.set()

    def wait_for_switch(self, timeout: float) -> bool:
        return self._master_switched.wait(timeout)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, SentinelProcess]]:
    master = RedisServer(tmp_path / "master")
    master.start()
    replica = RedisServer(
        tmp_path / "replica", extra_args=("--replicaof", "127.0.0.1", str(master.port))
    )
    replica.start()
    sentinel: SentinelProcess | None = None
    try:
        sentinel = SentinelProcess(tmp_path / "sentinel", master.port)
        yield master, replica, sentinel
    finally:
        if sentinel is not None:
            sentinel.stop()
        replica.stop()
        master.stop()


async def test_sessions_survive_a_sentinel_failover(
    sentinel_setup: tuple[RedisServer, RedisServer, SentinelProcess],
    make_kit: Callable[..., TokenKit],
) -> None:
    master, replica, sentinel = sentinel_setup
    kit = make_kit("HS256")
    store = RedisStore.from_sentinel([("127.0.0.1", sentinel.port)], SERVICE, socket_timeout=2)
    mirror = RevocationMirror(store, clock=kit.clock)
    issuer = Issuer(kit.keyring, kit.settings, store, clock=kit.clock, mirror=mirror)
    try:
        await mirror.load()
        pair = await issuer.refresh((await issuer.login("alice", "user")).refresh_token)
        doomed = await issuer.login("bob", "user")
        await issuer.logout(doomed.session_id)
        with master.client() as admin:
            assert admin.execute_command("WAIT", 1, 5000) == 1  # the replica has it all

        with sentinel.client() as control:
            control.execute_command("SENTINEL", "FAILOVER", SERVICE)
        assert sentinel.wait_for_switch(timeout=30), "sentinel never switched masters"
        with sentinel.client() as control:
            _, port = control.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        assert int(port) == replica.port

        # The store follows the new master: the session is there, rotation goes on.
        again = await issuer.refresh(pair.refresh_token)
        assert again.session_id == pair.session_id
        assert [s.sid for s in await issuer.sessions("alice")] == [pair.session_id]
        # The revocation written before the failover is in the new master's feed.
        newcomer = RevocationMirror(store, clock=kit.clock)  # a process started after it
        await newcomer.load()
        assert newcomer.revokes("sid", doomed.session_id)
        verifier = Verifier(kit.keyring, kit.settings, clock=kit.clock, revocation=newcomer)
        with pytest.raises(TokenRevoked):
            verifier.verify(doomed.access_token)
    finally:
        await store.close()
