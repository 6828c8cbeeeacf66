"""One way to serve an app for a test, a benchmark or a soak: ``running_uvicorn()``.

uvicorn runs as a child process on a free loopback port, its output drained on
a thread (so it never blocks on a full pipe) and kept for the failure message.
The context manager returns once the server listens and every worker has
finished its startup, and stops the server (and only its own workers, by pid)
on the way out.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
#: The demo of ``make run`` as a uvicorn factory (configured by environment variables).
DEMO_FACTORY = "examples.app:app_from_env"
_MAX_LINES = 5000
_STARTED = re.compile(r"Started server process \[(\d+)\]")


@dataclass
class Server:
    """A running uvicorn: its port, process, workers' pids and output so far."""

    port: int
    process: subprocess.Popen[bytes]
    workers: list[int] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    problems: int = 0  # lines starting a traceback or logged at ERROR
    _reader: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self, last: int = 200) -> str:
        return "".join(self.lines[-last:])

    def stop(self) -> str:
        """Stop gracefully (uvicorn finishes the requests it started) and return the
        whole output. ``running_uvicorn`` calls it on the way out; again is harmless."""
        _stop(self.process, self.workers)
        if self._reader is not None:
            self._reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return "".join(self.lines)


@contextlib.contextmanager
def running_uvicorn(
    app: str = DEMO_FACTORY,
    *,
    env: Mapping[str, str | None] | None = None,
    workers: int = 1,
    module: str | None = None,
    options: Sequence[str] = (),
    startup_timeout: float = 45.0,
) -> Iterator[Server]:
    """``uvicorn --factory APP`` on 127.0.0.1 and a free port, until the block ends.

    :param app: the factory, ``module:function``.
    :param env: added to this process's environment; a None value removes a variable.
        ``HOST`` and ``PORT`` are always set (the demo reads them).
    :param workers: uvicorn's ``--workers``; with more than one, the workers' pids
        are in ``Server.workers``, each checked to be a child of the master.
    :param options: more uvicorn options (``["--ws", "wsproto"]``).
    :param module: run ``python -m MODULE`` instead (an app that starts uvicorn
        itself with ``HOST`` and ``PORT`` from the environment, like ``make run``).
    :raises RuntimeError: the server exited or did not start within ``startup_timeout``.
    """
    port = free_port()
    environment = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "PYTHONUNBUFFERED": "1"}
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    if module is not None:
        args: Sequence[str] = [sys.executable, "-m", module]
    else:
        args = [
            sys.executable, "-m", "uvicorn", "--factory", app, "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(workers), "--no-access-log", *options,
        ]  # fmt: skip
    process = subprocess.Popen(
        args,
        cwd=ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    stream = process.stdout
    assert stream is not None
    server = Server(port, process)
    changed = threading.Condition()
    state = {"listening": False, "started": 0, "ended": False}

    def drain() -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace")
            with changed:
                if len(server.lines) < _MAX_LINES:
                    server.lines.append(line)
                if line.startswith(("Traceback", "ERROR")):
                    server.problems += 1
                started = _STARTED.search(line)
                if started:
                    server.workers.append(int(started.group(1)))
                state["started"] += "Application startup complete" in line
                state["listening"] = state["listening"] or "Uvicorn running on" in line
                changed.notify_all()
        with changed:
            state["ended"] = True
            changed.notify_all()

    server._reader = threading.Thread(target=drain, name=f"uvicorn-{port}", daemon=True)
    server._reader.start()
    try:
        with changed:
            ready = changed.wait_for(
                lambda: state["ended"] or (state["listening"] and state["started"] >= workers),
                timeout=startup_timeout,
            )
        if not ready or state["ended"] or process.poll() is not None:
            raise RuntimeError(f"uvicorn ({' '.join(args[1:])}) did not start:\n{server.log()}")
        if workers > 1:
            assert len(set(server.workers)) == workers, server.log()
            assert all(_parent_of(pid) == process.pid for pid in server.workers), server.log()
        yield server
    finally:
        server.stop()


def _stop(process: subprocess.Popen[bytes], workers: list[int]) -> None:
    """Terminate the master (it stops its workers); kill what is left after a timeout."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=20)  # already ended: returns at once
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    for pid in workers:  # only our own workers, by pid, if the master left any behind
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if pid != process.pid and _parent_of(pid) == process.pid:
                os.kill(pid, 9)


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[1])
