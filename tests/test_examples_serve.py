"""examples/serve.py: the multi-worker listener gives every connection TCP_NODELAY.

Without it a response (headers, then body: two writes) waits for the client's
delayed ACK, ~40 ms per keep-alive request; see the module's docstring.
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn

from examples.serve import tcp_listener


async def test_accepted_connections_have_tcp_nodelay() -> None:
    config = uvicorn.Config("examples.app:app_from_env", factory=True, host="127.0.0.1", port=0)
    listener = tcp_listener(config)
    assert (listener.proto, listener.get_inheritable()) == (socket.IPPROTO_TCP, True)
    nodelay: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            nodelay.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
    try:
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(nodelay, 10) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
