"""redis-py's connections used directly, without its per-call layers, and with
the executor owning the resends.

Why: from Python, most of a Redis call's cost is the client's, and on redis-py
8 a good part of that is layers the executor does not need, because it already
bounds and times every round trip itself:

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

And one layer it must not have: redis-py's ``Retry`` resends a command whose
reply was lost, which runs it twice. Here a command is sent again only when it
never left or is safe to resend (``_resend.py``), with the client's own retry
count and backoff (``_wire.resend_lost``).

So, for a standalone ``redis.asyncio.Redis``, every command of the executor
goes through here:

* **the lane**: a lone call (nobody to batch with) is sent on one connection
  kept checked out of the client's pool between calls;
* **pipelines**, and lone calls that find the lane busy (or have none), are
  packed, sent and read here on a pooled connection: one write, then one
  plain read per reply.

Connections are redis-py's, used through their own methods (``connect``,
``read_response``, ``pack_command``, ``check_health``, ``disconnect``), so
their safety holds (see ``_wire.py``); the connection counts against
``max_connections`` and is closed by ``client.aclose()`` like any other.

The lane needs to see a connection the server closed while it sat idle before
writing to it (the pool's checkout probe would have): it reads the
connection's stream internals, checked at start-up (``_compat.py``); without
them there is no lane. Pools smaller than ``MIN_POOL`` get none either,
and ``single_connection_client`` clients, connection classes not from
redis-py and fakeredis (no sockets) are left to redis-py (and its retries).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import MaxConnectionsError

from .wire import CONNECTION_FAILURES, Lost, Wire, resend_lost

__all__ = ["MIN_POOL", "Direct"]

#: Pools smaller than this get no lane: one held connection is a large share of them.
MIN_POOL: Final = 8


class Direct:
    """Direct use of one ``redis.asyncio.Redis`` client's connections. See the module docs."""

    __slots__ = ("_client", "_conn", "_hold", "_pool", "_wire", "busy")

    def __init__(self, client: Redis, *, hold: bool) -> None:
        self._client: Any = client
        self._pool: Any = client.connection_pool
        self._wire = Wire(
            client.response_callbacks,
            self._pool.connection_kwargs,
            self._pool.connection_class,
            probe=False,  # the pool probes at checkout; the lane is used only with streams
        )
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
        """Whether lone calls go on the lane (the pool is big enough to hold one, and the
        connection's stream internals are there to see it dropped)."""
        return self._hold and self._wire.stream_io

    async def call(self, args: tuple[Any, ...], safe: bool) -> Any:
        """Send ``args`` alone (on the lane when it is free); the raw reply (bulk strings
        as bytes). An error reply raises (redis-py's ``ResponseError``), and so does a
        lost reply that was not sent again (``ReplyLost``) or a connection failure."""
        conn = self._conn
        if conn is not None and not self.busy and self._hold and self._wire.stream_io:
            # The lone call's usual path, kept short: the lane is connected and free.
            self.busy = True
            try:
                reply = await self._wire.exchange_one(conn, args)
                if type(reply) is Lost:
                    reply = await self._resend_on_lane(args, safe, reply)
            finally:
                self.busy = False
        elif not self.busy and self.has_lane:
            reply = await self._lane_call(args, safe)
        else:
            reply = (await self._pooled([args], [safe]))[0]
        if isinstance(reply, BaseException):
            raise reply
        return reply

    async def pipeline(
        self, commands: Sequence[tuple[Any, ...]], safe: Sequence[bool]
    ) -> list[Any]:
        """Send ``commands`` in one write on a pooled connection; their replies in order,
        an error (reply, lost reply, failed connection) as an exception in place
        (non-transactional, like ``pipeline(transaction=False).execute(raise_on_error=False)``)."""
        return await self._pooled(commands, safe)

    def close_soon(self) -> asyncio.Task[None] | None:
        """Give the lane's connection back to the pool (in a task of the running loop):
        the executor moved to another event loop."""
        conn, self._conn = self._conn, None
        if conn is None:
            return None
        return asyncio.get_running_loop().create_task(_give_back(self._pool, conn))

    # -- internals -------------------------------------------------------------

    async def _lane_call(self, args: tuple[Any, ...], safe: bool) -> Any:
        """A lone call on the lane, connecting it first."""
        self.busy = True
        try:
            reply = (await self._on_lane([args]))[0]
            if type(reply) is Lost:
                reply = await self._resend_on_lane(args, safe, reply)
        finally:
            self.busy = False
            if not self._wire.stream_io:
                self._give_back_lane()
        return reply

    async def _resend_on_lane(self, args: tuple[Any, ...], safe: bool, lost: Lost) -> Any:
        return (await resend_lost(self._retry(), [args], [safe], [lost], self._on_lane))[0]

    def _retry(self) -> Any:
        return self._client.get_retry()

    async def _on_lane(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        conn = self._conn
        if conn is None:
            try:
                conn = self._conn = await self._pool.get_connection()
            except MaxConnectionsError:
                raise
            except CONNECTION_FAILURES as exc:
                return [Lost(exc, False)] * len(commands)
        return await self._wire.exchange(conn, commands)

    async def _pooled(
        self, commands: Sequence[tuple[Any, ...]], safe: Sequence[bool]
    ) -> list[Any]:
        replies = await self._checked_out(commands)
        for reply in replies:
            if type(reply) is Lost:
                return await resend_lost(self._retry(), commands, safe, replies, self._checked_out)
        return replies

    async def _checked_out(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        pool = self._pool
        try:
            conn = await pool.get_connection()
        except MaxConnectionsError:
            raise
        except CONNECTION_FAILURES as exc:  # the pool's probe found it dead, and connecting failed
            return [Lost(exc, False)] * len(commands)
        try:
            return await self._wire.exchange(conn, commands)
        finally:
            await pool.release(conn)

    def _give_back_lane(self) -> None:
        task = self.close_soon()
        if task is not None:
            _closing.add(task)
            task.add_done_callback(_closing.discard)


#: Lane give-backs in flight (a reference, so they are not collected while they run).
_closing: set[asyncio.Task[None]] = set()


async def _give_back(pool: Any, conn: Any) -> None:
    # Back to the pool as it is, like any connection an earlier loop left there:
    # the pool checks it (and reconnects it) before handing it out again.
    with contextlib.suppress(Exception):
        await pool.release(conn)
