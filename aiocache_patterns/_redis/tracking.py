"""Redis client tracking: a stream of "this key changed" messages, per master.

Redis (6+) can tell a client when keys change (``CLIENT TRACKING``). This
module keeps one connection per master (one on a standalone server, one per
primary of a cluster) in *broadcast* mode for one key prefix::

    CLIENT ID                                  -> id
    CLIENT TRACKING ON REDIRECT <id> BCAST PREFIX <prefix>
    SUBSCRIBE __redis__:invalidate

so that every change of a key under the prefix (a write by anybody, a
``DEL``, an ``EXPIRE``, an expiry or an eviction) arrives on that connection
as a RESP2 pub/sub message carrying the key names, and a ``FLUSHDB`` or
``FLUSHALL`` as a message without keys ("everything").

Why broadcast, not the default mode: the default mode tracks the keys *each
connection read*, so every connection that reads (the executor's lane, every
pooled connection, every cluster node's connections, redis-py's own) would
need tracking turned on and redirected to the invalidation connection, and
turned on again after every reconnect of either side. In broadcast mode the
server keeps no per-key table and it does not matter which connection read a
key: one connection per master hears every change under the prefix. The price
is that a process hears of changes to keys it does not hold (a dict lookup
each; measured in docs/near-cache.md).

The listener tells its owner two things, synchronously, from its task:

* ``on_keys(keys)``: these keys changed (``None``: all of them);
* ``on_state(up)``: ``True`` once every master's connection is tracking and
  subscribed; ``False`` as soon as any of them is lost (a connection error, a
  missed heartbeat, a change of the set of masters). While it is down the
  owner must not trust anything it kept: changes may go unheard. The listener
  reconnects on its own (with backoff) and says ``True`` again.

A connection that goes silent without an error is found by a heartbeat: a
``PING`` every ``heartbeat`` seconds, and the stream is declared lost when
nothing (neither a message nor a pong) arrived for three of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import select
import time
from collections.abc import Callable
from typing import Any, Final

from .clients import RESPONSE_ERRORS, is_cluster_client

__all__ = ["CHANNEL", "InvalidationListener", "TrackingUnsupported", "tracking_supported"]

logger = logging.getLogger("aiocache_patterns.tracking")

CHANNEL: Final = b"__redis__:invalidate"

#: Seconds between heartbeats; the stream is lost after three without any traffic.
DEFAULT_HEARTBEAT: Final = 1.0
#: Backoff between reconnection attempts: doubles from the first to the last.
_BACKOFF_FIRST: Final = 0.05
_BACKOFF_MAX: Final = 2.0
_CONNECT_TIMEOUT: Final = 2.0


class TrackingUnsupported(Exception):
    """The server refuses client tracking (Redis before 6, an ACL, a proxy)."""


def tracking_supported(client: Any) -> bool:
    """Whether ``client`` is a client whose server connections this module can open:
    redis-py's or valkey-py's asyncio client or cluster client, with that library's
    own connection classes (``fakeredis`` has no sockets and no tracking)."""
    if is_cluster_client(client):
        return True
    pool = getattr(client, "connection_pool", None)
    cls = getattr(pool, "connection_class", None)
    return isinstance(cls, type) and cls.__module__.startswith(("redis.", "valkey."))


class InvalidationListener:
    """One client's invalidation stream for one key prefix. See the module docs."""

    def __init__(
        self,
        client: Any,
        prefix: bytes,
        *,
        on_keys: Callable[[list[bytes] | None], None],
        on_state: Callable[[bool], None],
        heartbeat: float = DEFAULT_HEARTBEAT,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._on_keys = on_keys
        self._on_state = on_state
        self._heartbeat = heartbeat
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._up = False
        self._closed = False
        #: Set when the server refused tracking: the listener gave up for good.
        self.refused: BaseException | None = None
        #: Times the stream was (re-)established, for tests and diagnostics.
        self.established = 0
        #: While listening: what ``unheard()`` looks at (the connections' sockets,
        #: and the buffers their bytes land in before the listener parses them).
        self._poll: Any = None
        self._buffers: list[Any] = []

    @property
    def up(self) -> bool:
        return self._up

    def ensure_started(self) -> None:
        """Start listening in the running loop (again, if the loop changed)."""
        loop = asyncio.get_running_loop()
        if self._closed or self.refused is not None:
            return
        if self._task is not None and self._loop is loop and not self._task.done():
            return
        self._set_state(False)
        self._loop = loop
        self._task = loop.create_task(self._run(), name="aiocache_patterns-tracking")

    async def aclose(self) -> None:
        """Stop listening and close the connections."""
        self._closed = True
        task, self._task = self._task, None
        self._set_state(False)
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    # -- internals -----------------------------------------------------------------

    def _set_state(self, up: bool) -> None:
        if up != self._up:
            self._up = up
            self._on_state(up)

    async def _run(self) -> None:
        backoff = _BACKOFF_FIRST
        while not self._closed:
            conns: list[Any] = []
            try:
                nodes = await self._masters()
                for host_kwargs in nodes:
                    conn = self._new_connection(host_kwargs)
                    conns.append(conn)
                    await asyncio.wait_for(self._subscribe(conn), _CONNECT_TIMEOUT)
                self._set_state(True)
                self.established += 1
                backoff = _BACKOFF_FIRST
                await self._listen(conns, [n.get("name") for n in nodes])
            except asyncio.CancelledError:
                self._set_state(False)
                raise
            except TrackingUnsupported as exc:
                self._set_state(False)
                self.refused = exc
                logger.warning("Redis refuses client tracking (%s); near cache bypassed", exc)
                return
            except Exception as exc:
                logger.debug("invalidation stream lost: %r", exc)
            finally:
                self._set_state(False)
                for conn in conns:
                    with contextlib.suppress(Exception):
                        await conn.disconnect(nowait=True)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def _masters(self) -> list[dict[str, Any]]:
        """Connection arguments of every master (one on a standalone server)."""
        client = self._client
        if is_cluster_client(client):
            await client.initialize()
            return [
                {**node.connection_kwargs, "name": node.name, "_cls": node.connection_class}
                for node in client.get_primaries()
            ]
        pool = client.connection_pool
        return [{**pool.connection_kwargs, "name": None, "_cls": pool.connection_class}]

    def _new_connection(self, kwargs: dict[str, Any]) -> Any:
        """A connection of its own (not from a pool), speaking RESP2."""
        kwargs = dict(kwargs)
        cls = kwargs.pop("_cls")
        kwargs.pop("name", None)
        kwargs["protocol"] = 2
        kwargs.pop("retry", None)
        return cls(**kwargs)

    async def _subscribe(self, conn: Any) -> None:
        await conn.connect()
        conn_id = await self._ask(conn, "CLIENT", "ID")
        try:
            await self._ask(
                conn,
                "CLIENT", "TRACKING", "ON", "REDIRECT", conn_id, "BCAST", "PREFIX", self._prefix,
            )  # fmt: skip
        except RESPONSE_ERRORS as exc:
            raise TrackingUnsupported(str(exc)) from exc
        reply = await self._ask(conn, "SUBSCRIBE", CHANNEL)
        if not (isinstance(reply, list) and reply and reply[0] == b"subscribe"):
            raise ConnectionError(f"unexpected reply to SUBSCRIBE: {reply!r}")

    @staticmethod
    async def _ask(conn: Any, *args: Any) -> Any:
        await conn.send_command(*args, check_health=False)
        reply = await conn.read_response(disable_decoding=True, timeout=math.inf)
        if isinstance(reply, RESPONSE_ERRORS):
            raise reply
        return reply

    def unheard(self) -> bool:
        """Whether a message may wait unread: bytes in a socket, or read into its
        buffer and not yet parsed (the listener's task has not run since).

        One ``poll()`` system call and a look at each buffer. A reader that was not
        scheduled for a while (a busy or stalled process) runs before the listener
        when both wake together; asking this first keeps it from serving a copy
        whose invalidation already arrived."""
        for buffer in self._buffers:
            if buffer:
                return True
        poller = self._poll
        return poller is not None and bool(poller.poll(0))

    def _watch(self, conns: list[Any]) -> None:
        poller = select.poll()
        buffers = []
        for conn in conns:
            writer, reader = getattr(conn, "_writer", None), getattr(conn, "_reader", None)
            sock = writer.get_extra_info("socket") if writer is not None else None
            buffer = getattr(reader, "_buffer", None)
            if sock is None or buffer is None:  # not a socket we can look at: never trust
                self._poll, self._buffers = None, [b"?"]
                return
            poller.register(sock.fileno(), select.POLLIN)
            buffers.append(buffer)
        self._poll, self._buffers = poller, buffers

    async def _listen(self, conns: list[Any], names: list[Any]) -> None:
        """Read every connection until one fails, goes quiet, or the masters change."""
        self._watch(conns)
        heard = [time.monotonic()] * len(conns)
        readers = [
            asyncio.ensure_future(self._read(conn, heard, i)) for i, conn in enumerate(conns)
        ]
        try:
            while True:
                done, _ = await asyncio.wait(
                    readers, timeout=self._heartbeat, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    task.result()  # raises what ended it
                    raise ConnectionError("invalidation connection closed")
                now = time.monotonic()
                if any(now - t > 3 * self._heartbeat for t in heard):
                    raise ConnectionError("invalidation connection went silent")
                if await self._masters_changed(names):
                    raise ConnectionError("the cluster's masters changed")
                for conn in conns:
                    await conn.send_command("PING", check_health=False)
        finally:
            self._poll, self._buffers = None, []
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    async def _masters_changed(self, names: list[Any]) -> bool:
        client = self._client
        if not is_cluster_client(client):
            return False
        return sorted(n.name for n in client.get_primaries()) != sorted(names)

    async def _read(self, conn: Any, heard: list[float], index: int) -> None:
        on_keys = self._on_keys
        while True:
            message = await conn.read_response(disable_decoding=True, timeout=math.inf)
            heard[index] = time.monotonic()
            if isinstance(message, list) and len(message) == 3 and message[0] == b"message":
                keys = message[2]
                on_keys(keys if isinstance(keys, list) else None)
