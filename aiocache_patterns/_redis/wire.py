"""One exchange of commands and replies on one redis-py connection, and the
resends that follow a lost reply.

This is the part of the direct paths (``_direct.py`` for a ``Redis`` client,
``_cluster.py`` for a ``RedisCluster``) that touches a connection: commands
are packed (by hiredis when it can), written in one go, and their replies read
one by one with redis-py's own ``read_response`` and passed through the
client's response callbacks, as redis-py does for a command sent with no
options. Nothing here raises for a connection that failed: each command's
outcome comes back in place, so the caller knows, command by command, what
happened:

* a reply (bulk strings as bytes);
* an error reply, as redis-py's ``ResponseError`` (subclasses: ``MOVED``,
  ``NOSCRIPT``, ...);
* ``Lost``: no reply, because the connection failed; ``sent`` says
  whether the command may have reached Redis. It did not if the connection
  could not be made, was found closed before anything was written (the event
  loop has already seen the end of stream of a connection the server closed
  while it was idle), or the write itself failed and was small: a write of
  less than ``WHOLE_WRITE`` is handed to the socket in one ``send()``,
  which sends it or fails before sending anything (the stream buffers only
  what the socket did not take, and a failure of that comes later, while
  reading). Once the write has gone out, the command may have run.

``resend_lost`` then sends again what may be sent again (see
``_resend.py``), as many times and with the backoff the client's ``Retry``
says, and settles the rest with ``ReplyLost``.

A reply is never left unread: redis-py's ``read_response`` disconnects the
connection on any error or cancellation while a reply is outstanding (the
CVE-2023-28858/28859 fix), and so does a write cut short here. Reads wait
without ``socket_timeout``: the executor's deadline bounds the round trip.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .compat import has_stream_internals, stream_internals_expected
from .resend import ReplyLost

try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis comes with redis[hiredis]
    hiredis = None  # type: ignore[assignment]

__all__ = ["CONNECTION_FAILURES", "WHOLE_WRITE", "Lost", "Wire", "resend_lost"]

logger = logging.getLogger("aiocache_patterns.executor")

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None = getattr(hiredis, "pack_command", None)

#: ``read_response(timeout=...)``: wait for the reply without a timer of its own.
_NO_TIMEOUT: Final = math.inf
_UNSET: Final = object()

#: A write smaller than this goes to the socket whole or not at all: asyncio's (and
#: uvloop's) stream writer sends at once and buffers only the rest, and ``drain()``
#: waits only above this high-water mark (64 KiB by default).
WHOLE_WRITE: Final = 64 * 1024

#: Reply parsers whose ``read_response(disable_decoding=...)`` the pipelines read from
#: directly (redis-py's, on RESP2; the hiredis one when hiredis is installed).
_PARSERS: Final = frozenset({"_AsyncHiredisParser", "_AsyncRESP2Parser"})

#: What a connection that failed raises (redis-py's errors, and the OS's).
CONNECTION_FAILURES: Final = (RedisConnectionError, RedisTimeoutError, OSError)


class Lost:
    """A command whose reply did not arrive; ``sent``: it may have reached Redis."""

    __slots__ = ("error", "sent")

    def __init__(self, error: BaseException, sent: bool) -> None:
        self.error = error
        self.sent = sent

    def __repr__(self) -> str:
        return f"Lost({self.error!r}, sent={self.sent})"


class Wire:
    """How one client's commands are packed, written and read (its encoding, its
    response callbacks, whether its connections' stream internals can be used)."""

    __slots__ = (
        "_callbacks",
        "_checked",
        "_fast_pack",
        "_parser_reads",
        "_probe",
        "_replies",
        "stream_io",
    )

    def __init__(
        self, callbacks: Any, connection_kwargs: Any, connection_class: Any, *, probe: bool
    ) -> None:
        """``probe``: connections come from no pool that probes them at checkout (a cluster
        node's free list), so without the stream internals a connection is probed with
        redis-py's ``can_read()`` before each write, as a pool's checkout would."""
        self._callbacks = callbacks
        #: command name -> its response callback (or None), looked up once
        self._replies: dict[Any, Callable[..., Any] | None] = {}
        encoding = str(connection_kwargs.get("encoding", "utf-8")).lower().replace("_", "-")
        self._fast_pack = (
            _hiredis_pack is not None
            and encoding in ("utf-8", "utf8")
            and connection_kwargs.get("encoding_errors", "strict") == "strict"
        )
        #: Writes go straight to the connection's stream writer, and a connection the
        #: server closed is seen before writing (see ``_compat.py``).
        self.stream_io = stream_internals_expected(connection_class)
        self._checked = False
        #: A pipeline's replies are read from the connection's parser (see ``receive()``).
        self._parser_reads = False
        self._probe = probe

    async def exchange(self, conn: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write on ``conn``; each one's outcome in place (see
        the module docs). Raises only for what is not the connection's failure (an
        argument redis-py cannot pack: nothing is sent) or a cancellation."""
        failed = await self.send(conn, commands)
        if failed is not None:
            return failed
        return await self.receive(conn, commands)

    async def send(self, conn: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any] | None:
        """The first half of ``exchange()``: connect if needed and write ``commands``.
        None once written (read the replies with ``receive()``: until then they are
        outstanding, and a caller that gives up must disconnect ``conn``), else each
        command's ``Lost`` outcome."""
        chunks = self._pack_all(conn, commands)
        if not self._ready(conn):
            try:
                await self._prepare(conn)
            except CONNECTION_FAILURES as exc:
                return [Lost(exc, False)] * len(commands)
        try:
            await self._write(conn, chunks)
        except CONNECTION_FAILURES as exc:
            return [Lost(exc, sum(map(len, chunks)) >= WHOLE_WRITE)] * len(commands)
        return None

    async def receive(self, conn: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """The second half of ``exchange()``: the replies of ``commands``, written by
        ``send()``, each one's outcome in place."""
        if self._parser_reads and conn._parser is not None and not conn.health_check_interval:
            return await self._receive_from_parser(conn, commands)
        replies: list[Any] = []
        for i, args in enumerate(commands):
            try:
                reply = await conn.read_response(disable_decoding=True, timeout=_NO_TIMEOUT)
            except ResponseError as exc:
                replies.append(exc)
                continue
            except CONNECTION_FAILURES as exc:
                replies.extend([Lost(exc, True)] * (len(commands) - i))
                break
            replies.append(await self._parsed(args[0], reply))
        return replies

    async def exchange_one(self, conn: Any, args: tuple[Any, ...]) -> Any:
        """``exchange()`` for one command (the lone calls' path, kept short): its
        outcome."""
        chunks = self._pack(conn, args)
        if not self._ready(conn):
            try:
                await self._prepare(conn)
            except CONNECTION_FAILURES as exc:
                return Lost(exc, False)
        try:
            if self.stream_io:
                writer = conn._writer
                try:
                    writer.writelines(chunks)
                    await writer.drain()
                except BaseException as exc:
                    await self._write_failed(conn, exc)
            else:
                await conn.send_packed_command(chunks, check_health=False)
        except CONNECTION_FAILURES as exc:
            return Lost(exc, sum(map(len, chunks)) >= WHOLE_WRITE)
        try:
            reply = await conn.read_response(disable_decoding=True, timeout=_NO_TIMEOUT)
        except ResponseError as exc:
            return exc
        except CONNECTION_FAILURES as exc:
            return Lost(exc, True)
        callback = self._callback(args[0])
        if callback is None:
            return reply
        reply = callback(reply)
        if inspect.isawaitable(reply):
            reply = await reply
        return reply

    async def _receive_from_parser(
        self, conn: Any, commands: Sequence[tuple[Any, ...]]
    ) -> list[Any]:
        """``receive()`` reading each reply from the connection's parser, without the
        per-reply work of ``Connection.read_response`` that does not apply here (its
        timeout, which the executor's deadline replaces; its health-check clock, off
        on this path). What it guarantees is kept: any error or cancellation while
        replies are outstanding disconnects the connection, and a socket error is a
        connection failure (``Lost``)."""
        read = conn._parser.read_response
        replies: list[Any] = []
        callbacks = self._callbacks
        try:
            for args in commands:
                reply = await read(disable_decoding=True)
                if isinstance(reply, ResponseError):
                    replies.append(reply)
                    continue
                callback = self._replies.get(args[0], _UNSET)
                if callback is _UNSET:
                    callback = self._replies[args[0]] = callbacks.get(args[0])
                if callback is not None:
                    reply = callback(reply)  # type: ignore[operator]
                    if inspect.isawaitable(reply):
                        reply = await reply
                replies.append(reply)
        except BaseException as exc:
            await conn.disconnect(nowait=True)
            if isinstance(exc, OSError):
                exc = RedisConnectionError(f"Error while reading from the socket: {exc}")
            if not isinstance(exc, CONNECTION_FAILURES):
                raise
            replies.extend([Lost(exc, True)] * (len(commands) - len(replies)))
        return replies

    def _ready(self, conn: Any) -> bool:
        """Whether ``conn`` can be written to now, as far as can be seen without a call:
        connected (streams checked), not closed by the server, no health check due."""
        return bool(
            self._checked
            and self.stream_io
            and conn._writer is not None
            and not conn.health_check_interval
            and not _dropped(conn)
        )

    async def _prepare(self, conn: Any) -> None:
        """Connect ``conn`` if it is not, or again if the server closed it; health check."""
        if self.stream_io and conn.is_connected:
            if not self._checked:
                self._check(conn)
            if self.stream_io and _dropped(conn):
                await conn.disconnect()
        elif self._probe and conn.is_connected and await _stale(conn):
            await conn.disconnect()
        if not conn.is_connected:
            await conn.connect()
            if self.stream_io and not self._checked:
                self._check(conn)
        if conn.health_check_interval and (
            asyncio.get_running_loop().time() > conn.next_health_check
        ):
            await conn.check_health()

    def _check(self, conn: Any) -> None:
        """The first connected connection: are its streams what the fast path expects?"""
        self._checked = True
        parser = getattr(conn, "_parser", None)
        self._parser_reads = (
            type(parser).__name__ in _PARSERS
            and type(parser).__module__.startswith("redis._parsers")
            and getattr(conn, "protocol", 2) in (2, "2", None)
        )
        if not has_stream_internals(conn):
            self.stream_io = False
            self._parser_reads = False
            logger.info(
                "%s has no asyncio streams where expected; writing through redis-py's "
                "send_packed_command instead",
                type(conn).__name__,
            )

    async def _write(self, conn: Any, chunks: list[bytes]) -> None:
        if not self.stream_io:
            await conn.send_packed_command(chunks, check_health=False)
            return
        writer = conn._writer
        try:
            writer.writelines(chunks)
            await writer.drain()
        except BaseException as exc:
            await self._write_failed(conn, exc)

    @staticmethod
    async def _write_failed(conn: Any, exc: BaseException) -> None:
        """A write to the stream failed or was cut short (cancelled: it may have sent part
        of a command): the connection cannot be used again. Raises what the caller sees."""
        await conn.disconnect(nowait=True)
        if isinstance(exc, OSError):
            raise RedisConnectionError(f"Error while writing to socket: {exc}") from exc
        raise exc

    def _pack_all(self, conn: Any, commands: Sequence[tuple[Any, ...]]) -> list[bytes]:
        if len(commands) == 1:
            return self._pack(conn, commands[0])
        if not self._fast_pack:
            chunks: list[bytes] = []
            for args in commands:
                chunks.extend(conn.pack_command(*args))
            return chunks
        pack = _hiredis_pack
        assert pack is not None
        chunks = []
        for args in commands:  # _pack(), inlined: a pipeline of 50 packs 50 times
            first = args[0]
            if first.__class__ is str and " " in first:
                chunks.extend(conn.pack_command(*args))
                continue
            try:
                chunks.append(pack(args))
            except TypeError:  # redis-py says what is wrong
                chunks.extend(conn.pack_command(*args))
        return chunks

    def _pack(self, conn: Any, args: tuple[Any, ...]) -> list[bytes]:
        """``args`` as the chunks of bytes to write (one with hiredis, several with redis-py)."""
        if self._fast_pack:
            first = args[0]
            if not (isinstance(first, str) and " " in first):
                try:
                    return [_hiredis_pack(args)]  # type: ignore[misc]
                except TypeError:  # redis-py says what is wrong below
                    pass
        packed: list[bytes] = conn.pack_command(*args)
        return packed

    def _callback(self, command: Any) -> Callable[..., Any] | None:
        callback = self._replies.get(command, _UNSET)
        if callback is _UNSET:
            callback = self._replies[command] = self._callbacks.get(command)
        return callback  # type: ignore[return-value]

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
    reader = conn._reader
    writer = conn._writer
    return bool(
        reader.at_eof()
        or reader.exception() is not None
        or reader._buffer
        or writer.transport.is_closing()
    )


async def _stale(conn: Any) -> bool:
    """Whether ``conn`` has unread data or was closed by the server: a read that does not
    wait, through redis-py's public ``can_read()`` (what a pool's checkout probe does)."""
    try:
        return bool(await conn.can_read())
    except CONNECTION_FAILURES:
        return True


Attempt = Callable[[list[tuple[Any, ...]]], Awaitable[list[Any]]]


async def resend_lost(
    retry: Any,
    commands: Sequence[tuple[Any, ...]],
    safe: Sequence[bool],
    replies: list[Any],
    attempt: Attempt,
    on_failure: Callable[[BaseException], Awaitable[None]] | None = None,
) -> list[Any]:
    """Settle the ``Lost`` outcomes of a first attempt.

    A command that never left, or that may be resent (``safe``), is sent again
    with ``attempt`` (which returns outcomes like ``Wire.exchange()``), as
    often and with the backoff ``retry`` (the client's redis-py ``Retry``, the
    first attempt counted) allows; ``on_failure`` runs after each failed
    attempt. One that may have reached Redis and is not safe becomes a
    ``ReplyLost``; one still unanswered when the
    retries run out (or the error is not one ``retry`` retries), the last error.
    Everything else stays in place.
    """
    results = list(replies)
    todo: list[int] = []
    error: BaseException | None = None
    for i, reply in enumerate(replies):
        if type(reply) is Lost:
            if reply.sent and not safe[i]:
                results[i] = ReplyLost(reply.error)
            else:
                todo.append(i)
                error = reply.error
    if error is None:
        return results
    first: list[BaseException] = [error]

    async def once() -> None:
        nonlocal todo
        if first:  # the first attempt's failure, counted as redis-py counts it
            raise first.pop()
        outcomes = await attempt([commands[i] for i in todo])
        again: list[int] = []
        failed: BaseException | None = None
        for i, reply in zip(todo, outcomes, strict=True):
            if type(reply) is Lost:
                if reply.sent and not safe[i]:
                    results[i] = ReplyLost(reply.error)
                else:
                    again.append(i)
                    failed = reply.error
            else:
                results[i] = reply
        todo = again
        if failed is not None:
            raise failed

    async def fail(exc: BaseException) -> None:
        if on_failure is not None:
            await on_failure(exc)

    try:
        if retry is None:
            await fail(error)
            raise error
        await retry.call_with_retry(once, fail)
    except Exception as exc:  # out of retries, or not an error ``retry`` retries
        for i in todo:
            results[i] = exc
    return results
