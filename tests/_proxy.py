"""A fault-injecting TCP proxy on loopback, for testing how patterns survive a bad network.

::

    async with FaultProxy("127.0.0.1", 6379) as proxy:
        client = redis.asyncio.Redis(port=proxy.port)
        proxy.latency = 0.5      # every chunk from the server arrives 0.5 s late
        proxy.stall()            # nothing moves, either way, until resume()
        proxy.resume()
        await proxy.drop_all()   # every connection reset (RST) at once
        proxy.cut_replies(after=0)  # the next replies: `after` pass, then the connection is
                                    # reset (the commands ran; their replies are lost)
        proxy.cut_request()      # the next request reaches the server, then the connection
                                 # is reset before any reply (it may or may not have run)
        proxy.refuse = True      # new connections are accepted, then reset
        proxy.connections        # connections open now
        proxy.accepted           # connection attempts so far (refused ones included)

Every control takes effect at once, on open connections too. Leaving the
``async with`` block closes the listener and every connection and waits for
the proxy's tasks: nothing outlives it.

Bytes are forwarded in order, one chunk at a time per direction; ``latency``
delays each server-to-client chunk (read it before every chunk, so a change
applies to the next one). ``cut_replies`` counts whole RESP replies (any
nesting), so it can cut a pipeline's replies after the k-th.
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


def _reply_end(buf: bytes, pos: int) -> int | None:
    """Where the RESP reply starting at ``buf[pos]`` ends, or None if it is not all there."""
    line_end = buf.find(b"\r\n", pos)
    if line_end < 0:
        return None
    kind = buf[pos : pos + 1]
    if kind in (b"$", b"=", b"!"):  # bulk: length, then the bytes
        size = int(buf[pos + 1 : line_end])
        end = line_end + 2 + (size + 2 if size >= 0 else 0)
        return end if len(buf) >= end else None
    if kind in (b"*", b"~", b">", b"%"):  # aggregate: count, then the elements
        count = int(buf[pos + 1 : line_end])
        at: int | None = line_end + 2
        for _ in range(max(count, 0) * (2 if kind == b"%" else 1)):
            assert at is not None
            at = _reply_end(buf, at)
            if at is None:
                return None
        return at
    return line_end + 2  # a simple string, error, integer...


class _Link:
    """One proxied connection: the client side, and the server side once connected."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        #: Replies held back while counting them for ``cut_replies``.
        self.held = b""

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
        #: ``cut_replies``: replies still to pass before the cut, or None (not armed).
        self._replies_left: int | None = None
        #: ``cut_request``: armed.
        self._cut_request = False
        #: Connections cut by ``cut_replies`` / ``cut_request`` so far.
        self.cuts = 0

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

    def cut_replies(self, after: int | None = 0) -> None:
        """On the next connection that gets replies from the server: pass ``after`` whole
        replies, then reset that connection (both sides) and drop the rest. The commands
        ran on the server; the client never sees their replies. Once per call;
        ``after=None`` disarms it (and ``cut_request``)."""
        self._replies_left = after
        if after is None:
            self._cut_request = False

    def cut_request(self) -> None:
        """The next bytes a client sends go to the server, then that connection is reset
        (both sides) at once: the server may or may not run the command, and no reply
        comes back. Once per call."""
        self._cut_request = True

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
            upstream = asyncio.create_task(self._pump(link, client_reader, link.server, False))
            downstream = asyncio.create_task(self._pump(link, server_reader, link.client, True))
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
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        delayed: bool,
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(_CHUNK):
                await self._flowing.wait()
                if delayed and self.latency > 0:
                    await asyncio.sleep(self.latency)
                    await self._flowing.wait()  # a stall during the delay holds it too
                if delayed and (self._replies_left is not None or link.held):
                    passed = self._count_replies(link, data)
                    if passed is None:
                        continue  # not a whole reply yet
                    data = passed
                    if link.held == b"cut":
                        writer.write(data)
                        self._cut(link)
                        return
                writer.write(data)
                await writer.drain()
                if not delayed and self._cut_request:
                    self._cut_request = False
                    self._cut(link)
                    return

    def _count_replies(self, link: _Link, data: bytes) -> bytes | None:
        """What of ``data`` to pass while ``cut_replies`` counts: the whole replies still
        allowed (``link.held`` becomes ``b"cut"`` when the cut is due), or None."""
        buf = link.held + data
        left = self._replies_left
        assert left is not None
        at = 0
        while left > 0:
            end = _reply_end(buf, at)
            if end is None:
                link.held = buf[at:]
                self._replies_left = left
                return buf[:at] if at else None
            at, left = end, left - 1
        self._replies_left = None
        link.held = b"cut"
        return buf[:at]

    def _cut(self, link: _Link) -> None:
        self.cuts += 1
        link.held = b""
        for side in link.writers():
            _reset(side)
