"""Run ``python -m <module>`` (an example service under uvicorn) as a child process.

The output is collected line by line; start-up waits (bounded) for uvicorn's
"running" line, and ``stop`` returns the whole log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


class Service:
    """One example service on a free loopback port."""

    def __init__(
        self, module: str, env: Mapping[str, str], *, cwd: Path = ROOT, drop: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        full = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port), **env}
        for name in drop:
            full.pop(name, None)
        # The package and examples/ are imported from the repository, whatever the cwd.
        full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=cwd,
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout=60) or self.process.poll() is not None:
            log = self.stop()
            raise RuntimeError(f"{module} did not start:\n{log}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _drain(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        for raw in stream:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            if "Uvicorn running on" in line:  # listening, after the lifespan started
                self._ready.set()
        self._ready.set()

    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> str:
        """Stop gracefully and return the whole log."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.log()
