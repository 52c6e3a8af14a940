"""A fault-injecting TCP proxy on loopback, for testing how patterns survive a bad network.

::

    async with FaultProxy("127.0.0.1", 6379) as proxy:
        client = redis.asyncio.Redis(port=proxy.port)
        proxy.latency = 0.5      # every chunk from the server arrives 0.5 s late
        proxy.stall()            # nothing moves, either way, until resume()
        proxy.resume()
        await proxy.drop_all()   # every connection reset (RST) at once
        proxy.refuse = True      # new connections are accepted, then reset
        proxy.connections        # connections open now
        proxy.accepted           # connection attempts so far (refused ones included)

Every control takes effect at once, on open connections too. Leaving the
``async with`` block closes the listener and every connection and waits for
the proxy's tasks: nothing outlives it.

Bytes are forwarded in order, one chunk at a time per direction; ``latency``
delays each server-to-client chunk (read it before every chunk, so a change
applies to the next one).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from types import TracebackType

__all__ = ["FaultProxy"]

_CHUNK = 64 * 1024
_LINGER_ZERO = struct.pack("ii", 1, 0)  # close() sends RST instead of FIN


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close abruptly: the peer sees a connection reset, not a clean end of stream."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    writer.transport.abort()


class _Link:
    """One proxied connection: the client side, and the server side once connected."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    def writers(self) -> list[asyncio.StreamWriter]:
        return [self.client] if self.server is None else [self.client, self.server]


class FaultProxy:
    """Forwards 127.0.0.1:``port`` (a free port) to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        #: Seconds each chunk from the server is held before it is passed on.
        self.latency = 0.0
        #: Accept new connections, then reset them at once.
        self.refuse = False
        #: Connection attempts accepted so far, refused ones included.
        self.accepted = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._closing = False

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not running (use `async with FaultProxy(...)`)")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def connections(self) -> int:
        """Connections open through the proxy now."""
        return len(self._links)

    def stall(self) -> None:
        """Hold every byte, in both directions, until :meth:`resume`."""
        self._flowing.clear()

    def resume(self) -> None:
        """Let held bytes and new ones through again."""
        self._flowing.set()

    async def drop_all(self) -> None:
        """Reset every open connection (both sides) and wait until they are gone."""
        links = list(self._links)
        for link in links:
            for writer in link.writers():
                _reset(writer)
            if link.task is not None:
                link.task.cancel()  # its pumps may be held by a stall
        await self._join(links)

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        self.resume()
        assert self._server is not None
        self._server.close()
        links = list(self._links)
        for link in links:
            if link.task is not None:
                link.task.cancel()
        await self._join(links)
        await self._server.wait_closed()

    # -- internals -------------------------------------------------------------

    async def _join(self, links: list[_Link]) -> None:
        tasks = [link.task for link in links if link.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback, not a coroutine: the task is ours to track from the start.
        self.accepted += 1
        if self.refuse or self._closing:
            _reset(writer)
            return
        link = _Link(writer)
        self._links.add(link)
        link.task = asyncio.get_running_loop().create_task(self._serve(link, reader))

    async def _serve(self, link: _Link, client_reader: asyncio.StreamReader) -> None:
        try:
            server_reader, link.server = await asyncio.open_connection(
                self.target_host, self.target_port
            )
            upstream = asyncio.create_task(self._pump(client_reader, link.server, False))
            downstream = asyncio.create_task(self._pump(server_reader, link.client, True))
            try:
                # Either side ending (or failing) ends the connection.
                await asyncio.wait((upstream, downstream), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in (upstream, downstream):
                    pump.cancel()
                await asyncio.gather(upstream, downstream, return_exceptions=True)
        except OSError:
            pass  # target unreachable: the client sees its connection closed
        finally:
            self._links.discard(link)
            writers = link.writers()
            for writer in writers:
                writer.close()
            for writer in writers:
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delayed: bool
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(_CHUNK):
                await self._flowing.wait()
                if delayed and self.latency > 0:
                    await asyncio.sleep(self.latency)
                    await self._flowing.wait()  # a stall during the delay holds it too
                writer.write(data)
                await writer.drain()
