"""The Redis fault proxy: a loopback TCP proxy forwarding 127.0.0.1:<port> to a Redis.

``cut()`` drops every open connection at once (both sides, without waiting
for buffered data) and makes the proxy close each new connection as soon as it
is accepted, like a network partition that the client sees as resets.
``restore()`` forwards new connections again. The listening socket stays open
throughout, so the port never changes hands.
"""

from __future__ import annotations

import asyncio
import contextlib


class RedisFaultProxy:
    """``async with RedisFaultProxy(target_port) as proxy``, or ``start()`` / ``stop()``."""

    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.is_cut = False
        self.accepted = 0  # connections accepted while forwarding
        self.refused = 0  # connections closed at once because the proxy was cut
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._refusal = asyncio.Event()

    @property
    def url(self) -> str:
        """A Redis URL through the proxy (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        """Drop every open connection and close new ones until ``restore()``."""
        self.is_cut = True
        self._refusal.clear()
        self._drop_all()

    def restore(self) -> None:
        """Forward new connections again."""
        self.is_cut = False

    async def wait_for_refusal(self, within: float) -> bool:
        """Wait until the proxy, being cut, closes a new connection (a client tried)."""
        try:
            await asyncio.wait_for(self._refusal.wait(), within)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._drop_all()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> RedisFaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- plumbing ------------------------------------------------------------------

    def _refuse(self) -> None:
        self.refused += 1
        self._refusal.set()

    def _drop_all(self) -> None:
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            writer.transport.abort()
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            self._refuse()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            return
        if self.is_cut:  # cut while connecting upstream
            up_writer.transport.abort()
            self._refuse()
            return
        self.accepted += 1
        self._transports.update((writer.transport, up_writer.transport))
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            for transport in (writer.transport, up_writer.transport):
                transport.abort()
                self._transports.discard(transport)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF or error, then drop the other side too."""
    try:
        while data := await reader.read(65536):
            if writer.is_closing():
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.transport.abort()
