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

    def __init__(self, directory: Path, *, port: int | None = None, persist: bool = False) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.persist = persist
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
