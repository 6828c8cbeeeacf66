"""Private redis-server processes for tests: free loopback ports, temp dirs, always stopped.

Tests never touch the machine's shared Redis on 6379; anything that flushes,
kills, pauses or restarts a server does it to one of these.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server child process on 127.0.0.1:<port>."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        persist: bool = False,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.persist = persist
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self._drain: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: run `make test`, which installs it")
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--appendfsync", "always",
            "--daemonize", "no",
            "--logfile", "",
            *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        ready = threading.Event()
        log: list[str] = []
        stream = self.process.stdout
        assert stream is not None

        def drain() -> None:
            # Keep reading so the server never blocks on a full pipe.
            for raw in stream:
                line = raw.decode("utf-8", "replace")
                if len(log) < 200:
                    log.append(line)
                if "Ready to accept connections" in line:
                    ready.set()
            ready.set()  # EOF: the process ended

        self._drain = threading.Thread(target=drain, daemon=True)
        self._drain.start()
        if not ready.wait(timeout=15) or self.process.poll() is not None:
            self.stop()
            raise RuntimeError(f"redis-server on {self.port} did not start:\n{''.join(log)}")

    def _reap(self) -> None:
        if self.process is not None:
            self.process.wait(timeout=10)
            if self._drain is not None:
                self._drain.join(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()
        self.process = None
        self._drain = None

    def kill(self) -> None:
        """SIGKILL: no shutdown save, like a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        self._reap()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._reap()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)


@contextlib.contextmanager
def running_redis(directory: Path, *, persist: bool = False) -> Iterator[RedisServer]:
    server = RedisServer(directory, persist=persist)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class RedisClusterServers:
    """A private Redis Cluster: three masters on free loopback ports, no replicas."""

    def __init__(self, directory: Path, masters: int = 3) -> None:
        # An explicit bus port: the default (port + 10000) may be taken or above 65535.
        self.nodes = [
            RedisServer(
                directory / f"node{i}",
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    str(free_port()),
                ),
            )
            for i in range(masters)
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli not found: it comes with redis-server (make test)")
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        # The nodes agree on the slots within moments of `create` returning. This
        # polls external servers for readiness (bounded); no test logic waits on time.
        converged = threading.Event()
        deadline = 200  # x 50 ms = 10 s
        for _ in range(deadline):
            if all(self._ok(node) for node in self.nodes):
                converged.set()
                break
            converged.wait(0.05)
        if not converged.is_set():
            raise RuntimeError("the private Redis Cluster did not reach cluster_state:ok")

    @staticmethod
    def _ok(node: RedisServer) -> bool:
        with node.client() as client:
            return "cluster_state:ok" in str(client.execute_command("CLUSTER", "INFO"))

    def flush(self) -> None:
        for node in self.nodes:
            with node.client() as client:
                client.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextlib.contextmanager
def running_cluster(directory: Path) -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers(directory)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
