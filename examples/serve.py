"""Several uvicorn worker processes on one port, each connection with ``TCP_NODELAY``.

``uvicorn --workers N`` (0.54 and earlier) binds the shared listening socket
without saying it is TCP (``proto`` 0). Accepted sockets inherit that, and
asyncio turns Nagle's algorithm off only for sockets that say ``IPPROTO_TCP``
(uvicorn issue #3149). A response is written as headers, then body: with
Nagle on, the body waits for the client's delayed ACK of the headers, about
40 ms on Linux. Measured on the project machine, keep-alive round trips to
the demo under ``--workers 4``: p50 44 ms; with this runner (or one worker):
p50 0.4 ms. It was the ~48 ms step in tests/test_multiworker.py's figures.

``run_workers`` binds the socket as uvicorn does, declares it TCP, and hands
it to uvicorn's own supervisor (which restarts dead workers). The demo uses
it when ``WORKERS`` is above 1: ``WORKERS=4 REDIS_URL=redis://... make run``.
"""

from __future__ import annotations

import socket

import uvicorn
from uvicorn.supervisors import Multiprocess


def tcp_listener(config: uvicorn.Config) -> socket.socket:
    """``config.bind_socket()`` (address, logging, inheritable), declared ``IPPROTO_TCP``
    so asyncio sets ``TCP_NODELAY`` on every connection it accepts."""
    sock = config.bind_socket()
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.proto != 0:
        return sock  # a unix socket, or a uvicorn that already gets it right
    tcp = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    tcp.set_inheritable(True)
    return tcp


def run_workers(app: str, *, host: str, port: int, workers: int) -> None:
    """Serve the factory ``app`` ("module:function") with ``workers`` processes until stopped.

    :raises ValueError: fewer than two workers (run one with ``uvicorn.run``).
    """
    if workers < 2:
        raise ValueError("run_workers is for two workers or more")
    config = uvicorn.Config(
        app, factory=True, host=host, port=port, workers=workers, log_level="info"
    )
    Multiprocess(config, sockets=[tcp_listener(config)]).run()
