"""A connection of the executor's own, for the calls that travel alone.

Why: with nobody to share a round trip with, a call's cost is redis-py's own
path, and a fifth of that path on a small machine is the pool: every call
checks a connection out and back in (an ``asyncio.Lock`` each way, a probe of
the socket for unread data, observability hooks), about 20 µs against a
loopback round trip of about 100 µs. A lone caller sends on this connection
instead, which stays checked out of the client's pool between calls.

What keeps it as safe as redis-py's own path:

* one caller at a time: a call that finds the lane busy takes the ordinary
  path (``execute_command``), so two commands never share the connection;
* a reply is never left unread: redis-py's ``send_packed_command`` and
  ``read_response`` disconnect the connection on any error or cancellation
  while a command is outstanding (the CVE-2023-28858/28859 fix), and the next
  call reconnects;
* the client's own ``Retry`` policy applies, as it does to ``execute_command``
  (disconnect, back off, resend);
* only commands whose reply redis-py passes through untouched (``GET``,
  ``EVALSHA``, ...) use the lane; commands with a response callback do not;
* the connection is checked out of the client's pool, so ``client.aclose()``
  and ``pool.disconnect()`` close it like any other, and it counts against
  ``max_connections``; clients whose pool is smaller than :data:`MIN_POOL`
  get no lane.

Only a plain ``redis.asyncio.Redis`` gets a lane: a cluster client routes per
node, a ``single_connection_client`` already has one connection, and
fakeredis's connections are not sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

from redis.asyncio import Redis
from redis.client import NEVER_DECODE

__all__ = ["MIN_POOL", "Lane"]

#: Pools smaller than this are left alone: one connection is a large share of them.
MIN_POOL: Final = 8

_RAW: Final = {NEVER_DECODE: True}


class Lane:
    """One connection checked out of ``client``'s pool, one call at a time."""

    __slots__ = ("_callbacks", "_client", "_conn", "_pool", "busy")

    def __init__(self, client: Redis) -> None:
        self._client: Any = client
        self._pool: Any = client.connection_pool
        self._callbacks: Any = client.response_callbacks
        self._conn: Any = None
        #: A call is using the connection right now.
        self.busy = False

    @classmethod
    def for_client(cls, client: Any) -> Lane | None:
        """A lane for ``client``, or None if it cannot have one (see the module docs)."""
        if not isinstance(client, Redis) or getattr(client, "connection", None) is not None:
            return None
        pool = getattr(client, "connection_pool", None)
        connection_class = getattr(pool, "connection_class", None)
        if not (
            isinstance(connection_class, type)
            and connection_class.__module__.startswith("redis.")
            and isinstance(getattr(pool, "max_connections", None), int)
            and pool.max_connections >= MIN_POOL  # type: ignore[union-attr]
        ):
            return None
        return cls(client)

    @property
    def holds_connection(self) -> bool:
        """Whether a connection is checked out of the pool for the lane."""
        return self._conn is not None

    def carries(self, command: str) -> bool:
        """Whether ``command``'s reply can come off the lane as it is (no response callback)."""
        return command not in self._callbacks

    async def call(self, args: tuple[Any, ...]) -> Any:
        """Send ``args``, return the raw reply (bulk strings as bytes); error replies raise."""
        if self.busy:
            return await self._client.execute_command(*args, **_RAW)
        self.busy = True
        try:
            conn = self._conn
            if conn is None:
                conn = self._conn = await self._pool.get_connection()
            elif _dropped(conn):
                await conn.disconnect()  # the send below reconnects
            return await conn.retry.call_with_retry(
                lambda: _send(conn, args), lambda _error: conn.disconnect()
            )
        finally:
            self.busy = False

    def close_soon(self) -> asyncio.Task[None] | None:
        """Give the connection back to the pool (in a task of the running loop); the
        lane is done with: the executor moved to another event loop."""
        conn, self._conn = self._conn, None
        if conn is None:
            return None
        return asyncio.get_running_loop().create_task(_give_back(self._pool, conn))


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


async def _send(conn: Any, args: tuple[Any, ...]) -> Any:
    await conn.send_packed_command(conn.pack_command(*args))
    return await conn.read_response(disable_decoding=True)


async def _give_back(pool: Any, conn: Any) -> None:
    # Back to the pool as it is, like any connection an earlier loop left there:
    # the pool checks it (and reconnects it) before handing it out again.
    with contextlib.suppress(Exception):
        await pool.release(conn)
