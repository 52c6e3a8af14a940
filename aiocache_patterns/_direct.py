"""redis-py's connections used directly, without its per-call layers.

Why: from Python, most of a Redis call's cost is the client's, and on redis-py
8 a good part of that is layers the executor does not need, because it already
bounds, times and retries every round trip itself:

* every call checks a connection out of the pool and back in (an
  ``asyncio.Lock`` each way, a probe of the socket for unread data,
  observability hooks): about 20 µs, a fifth of a loopback round trip on a
  small VM;
* every reply is read under its own ``socket_timeout`` (5 s by default), an
  ``asyncio.timeout`` that schedules and cancels a timer: about 4 µs per reply,
  50 times over for a pipeline of 50 scripts;
* a pipeline queues, annotates and parses every reply through three layers;
* with ``socket_timeout`` set (the default), every write is wrapped in
  ``asyncio.wait_for``, which spawns a task: two extra loop iterations per call;
* commands are packed in Python (about 4 µs for an EVALSHA), where hiredis,
  installed with redis-py's ``hiredis`` extra, packs them in C (under 1 µs).

So, for a standalone ``redis.asyncio.Redis``:

* **the lane**: a lone call (nobody to batch with) is sent on one connection
  kept checked out of the client's pool between calls;
* **pipelines** are packed, sent and read here, on a pooled connection: one
  write, then one plain read per reply.

Both send with redis-py's own connection methods (``pack_commands``,
``send_packed_command``, ``read_response``) and keep its safety:

* a reply is never left unread: ``send_packed_command`` and ``read_response``
  disconnect the connection on any error or cancellation while a command is
  outstanding (the CVE-2023-28858/28859 fix), and the next use reconnects;
* the client's own ``Retry`` policy applies, as in ``execute_command``;
* replies pass through the client's response callbacks as in redis-py (for a
  command sent with no options, which is how the executor sends every one);
* error replies come back in place (pipelines) or raised (the lane), as
  redis-py's ``ResponseError`` subclasses.

Writes and reads go without ``socket_timeout``: the executor's deadline covers
the whole round trip, and cancels it (closing the connection) when it runs out.
A write goes straight to the connection's stream writer, with the error
handling of redis-py's ``send_packed_command`` (which is still used to connect,
and whenever a health check is due). Commands are packed by
``hiredis.pack_command`` when hiredis is installed and the client encodes
strings as strict UTF-8 (redis-py's default), else by redis-py; both give the
same bytes, and anything hiredis refuses (a ``bool``, a ``memoryview``, a
command name with a space) is packed by redis-py, which raises its own error
for what it refuses too.

The lane: one caller at a time (a caller that finds it busy takes the
ordinary path); a connection the server closed while idle is noticed before
sending (the event loop has already seen its end of stream) and reconnected,
as the pool's checkout probe would; the connection counts against
``max_connections`` and is closed by ``client.aclose()`` like any other.
Pools smaller than :data:`MIN_POOL` get no lane.

Cluster clients (routing per node), ``single_connection_client`` clients and
fakeredis (no sockets) are left to redis-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, Final

from redis.asyncio import Redis
from redis.client import NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis comes with redis[hiredis]
    hiredis = None  # type: ignore[assignment]

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None = getattr(hiredis, "pack_command", None)

__all__ = ["MIN_POOL", "Direct"]

#: Pools smaller than this get no lane: one held connection is a large share of them.
MIN_POOL: Final = 8

_RAW: Final = {NEVER_DECODE: True}
#: ``read_response(timeout=...)``: wait for the reply without a timer of its own.
_NO_TIMEOUT: Final = math.inf
_UNSET: Final = object()


class Direct:
    """Direct use of one ``redis.asyncio.Redis`` client's connections. See the module docs."""

    __slots__ = (
        "_callbacks",
        "_client",
        "_conn",
        "_fast_pack",
        "_hold",
        "_pool",
        "_replies",
        "busy",
    )

    def __init__(self, client: Redis, *, hold: bool) -> None:
        self._client: Any = client
        self._pool: Any = client.connection_pool
        kwargs = self._pool.connection_kwargs
        self._fast_pack = (
            _hiredis_pack is not None
            and str(kwargs.get("encoding", "utf-8")).lower().replace("_", "-") in ("utf-8", "utf8")
            and kwargs.get("encoding_errors", "strict") == "strict"
        )
        self._callbacks: Any = client.response_callbacks
        #: command name -> its response callback (or None), looked up once
        self._replies: dict[Any, Callable[..., Any] | None] = {}
        self._hold = hold
        self._conn: Any = None
        #: A lone call is using the lane right now.
        self.busy = False

    @classmethod
    def for_client(cls, client: Any) -> Direct | None:
        """Direct use of ``client``, or None if it is not a client for it (see the module docs)."""
        if not isinstance(client, Redis) or getattr(client, "connection", None) is not None:
            return None
        pool = getattr(client, "connection_pool", None)
        connection_class = getattr(pool, "connection_class", None)
        if not (
            isinstance(connection_class, type) and connection_class.__module__.startswith("redis.")
        ):
            return None
        size = getattr(pool, "max_connections", None)
        return cls(client, hold=isinstance(size, int) and size >= MIN_POOL)

    @property
    def holds_connection(self) -> bool:
        """Whether the lane has a connection checked out of the pool."""
        return self._conn is not None

    @property
    def has_lane(self) -> bool:
        """Whether lone calls can go on the lane (the pool is big enough to hold one)."""
        return self._hold

    async def call(self, args: tuple[Any, ...]) -> Any:
        """Send ``args`` on the lane; the raw reply (bulk strings as bytes).

        An error reply raises (redis-py's ``ResponseError``)."""
        if self.busy:
            return await self._client.execute_command(*args, **_RAW)
        self.busy = True
        try:
            conn = self._conn
            if conn is None:
                conn = self._conn = await self._pool.get_connection()
            elif _dropped(conn):
                await conn.disconnect()  # the send below reconnects
            reply = await conn.retry.call_with_retry(
                lambda: self._exchange_one(conn, args), lambda _error: conn.disconnect()
            )
        finally:
            self.busy = False
        return await self._parsed(args[0], reply)

    async def pipeline(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write on a pooled connection; their replies in order,
        an error reply as its ``ResponseError`` in place (non-transactional, like
        ``pipeline(transaction=False).execute(raise_on_error=False)``)."""
        pool = self._pool
        conn = await pool.get_connection()
        try:
            return await conn.retry.call_with_retry(  # type: ignore[no-any-return]
                lambda: self._exchange(conn, commands), lambda _error: conn.disconnect()
            )
        finally:
            await pool.release(conn)

    def close_soon(self) -> asyncio.Task[None] | None:
        """Give the lane's connection back to the pool (in a task of the running loop):
        the executor moved to another event loop."""
        conn, self._conn = self._conn, None
        if conn is None:
            return None
        return asyncio.get_running_loop().create_task(_give_back(self._pool, conn))

    def _callback(self, command: Any) -> Callable[..., Any] | None:
        callback = self._replies.get(command, _UNSET)
        if callback is _UNSET:
            callback = self._replies[command] = self._callbacks.get(command)
        return callback  # type: ignore[return-value]

    def _pack(self, conn: Any, args: tuple[Any, ...]) -> list[bytes]:
        """``args`` as the chunks of bytes to write (one with hiredis, several with redis-py)."""
        if self._fast_pack:
            first = args[0]
            if not (isinstance(first, str) and " " in first):
                with contextlib.suppress(TypeError):  # redis-py says what is wrong below
                    return [_hiredis_pack(args)]  # type: ignore[misc]
        packed: list[bytes] = conn.pack_command(*args)
        return packed

    async def _exchange_one(self, conn: Any, args: tuple[Any, ...]) -> Any:
        await _write(conn, self._pack(conn, args))
        return await conn.read_response(disable_decoding=True, timeout=_NO_TIMEOUT)

    async def _exchange(self, conn: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        chunks: list[bytes] = []
        for args in commands:
            chunks.extend(self._pack(conn, args))
        await _write(conn, chunks)
        replies: list[Any] = []
        for args in commands:
            try:
                reply = await conn.read_response(disable_decoding=True, timeout=_NO_TIMEOUT)
            except ResponseError as exc:
                replies.append(exc)
                continue
            replies.append(await self._parsed(args[0], reply))
        return replies

    async def _parsed(self, command: Any, reply: Any) -> Any:
        """``reply`` through the client's response callback for ``command``, as redis-py
        does for a command sent with no options."""
        callback = self._callback(command)
        if callback is None:
            return reply
        reply = callback(reply)
        if inspect.isawaitable(reply):
            reply = await reply
        return reply


def _dropped(conn: Any) -> bool:
    """Whether the server closed ``conn`` (or sent something unasked) since its last reply.

    What the pool's checkout probe finds with a read, seen here without one: the
    event loop has already fed the connection's stream whatever arrived.
    """
    reader = getattr(conn, "_reader", None)
    if reader is None:
        return False
    unasked = getattr(reader, "_buffer", b"")
    return bool(reader.at_eof() or reader.exception() is not None or unasked)


async def _write(conn: Any, chunks: list[bytes]) -> None:
    """``conn.send_packed_command(chunks)`` without its ``wait_for`` (see the module docs)."""
    writer = getattr(conn, "_writer", None)
    if (
        writer is None
        or not conn.is_connected
        or (
            conn.health_check_interval
            and asyncio.get_running_loop().time() > conn.next_health_check
        )
    ):
        await conn.send_packed_command(chunks)  # connects, checks health
        return
    try:
        writer.writelines(chunks)
        await writer.drain()
    except OSError as exc:
        await conn.disconnect(nowait=True)
        raise RedisConnectionError(f"Error while writing to socket: {exc}") from exc
    except BaseException:
        # A write cut short (cancelled) may have sent part of a command: the
        # connection cannot be used again.
        await conn.disconnect(nowait=True)
        raise


async def _give_back(pool: Any, conn: Any) -> None:
    # Back to the pool as it is, like any connection an earlier loop left there:
    # the pool checks it (and reconnects it) before handing it out again.
    with contextlib.suppress(Exception):
        await pool.release(conn)
