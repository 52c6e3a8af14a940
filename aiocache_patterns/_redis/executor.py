"""The one door to Redis: every command the library sends goes through here.

Why: from Python, a Redis round trip costs far more client time than server
time, so the cheapest command is one that shares a round trip. Commands issued
by many tasks in the same event-loop tick are sent together:

* GETs are merged into one MGET (one per hash slot on a cluster), and
  concurrent GETs of the same key are one read;
* scripts and other commands ride along in the same non-transactional
  pipeline.

How, without a timer: the first caller of a tick opens a batch and, if other
tasks are ready to run, yields once (``sleep(0)``) so they can join; then it
flushes. A lone caller (no other task ready) is sent at once, as a plain
command, so latency at concurrency 1 is that of a raw call. "No other task
ready" is read from asyncio's ready queue; on a loop that has none to read
(uvloop), a caller is lone when nothing of this client is in flight or being
gathered (``_compat.py``).

Guarantees:

* each caller gets its own result or its own exception; one failing command
  never fails its neighbours;
* a batch runs in a task of its own, so cancelling any caller (the one that
  opened the batch included) cancels only that caller's wait, never the batch
  or the connection; a lone caller's command is cancelled like a raw redis-py
  call (redis-py drops the connection rather than leave a reply unread);
* round trips in flight are bounded (``max_inflight``), so a default pool of
  100 connections is never exhausted however many tasks call;
* every round trip has a deadline that includes the resends; errors are
  translated into the library's exceptions; a circuit breaker fails fast while
  the server is down and lets a trial through to notice recovery;
* NOSCRIPT is answered by loading the script and resending;
* a command whose reply was lost is sent again only if that is safe
  (``_resend.py``): on a ``Redis`` and a ``RedisCluster`` the executor sends
  through ``_direct.py`` / ``_cluster.py``, which own the resends, instead of
  redis-py's ``execute_command`` and pipelines, which resend anything;
* a GET of a key holding another Redis type reads as a miss, alone or batched
  (an MGET answers nil for it; a lone GET's WRONGTYPE is read the same way).
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Coroutine, Iterable, Sequence, Sized
from typing import Any, Final, TypeVar

from redis.client import NEVER_DECODE
from redis.crc import key_slot

from .._telemetry import BATCH_KINDS, TELEMETRY, AttrKey, attrs, node_name
from ..errors import RedisCommandError, RedisOutOfMemory, RedisTimeout, RedisUnavailable
from . import compat as _compat
from .breaker import BreakerSettings, CircuitBreaker, NodeBreakers
from .clients import (
    CLIENT_ERRORS,
    NO_SCRIPT_ERRORS,
    OUT_OF_MEMORY_ERRORS,
    TIMEOUT_ERRORS,
    UNAVAILABLE_ERRORS,
    is_cluster_client,
)
from .cluster import ClusterDirect
from .direct import Direct
from .guards import Deadlines, Slots
from .resend import is_resend_safe
from .scripts import Script

__all__ = ["Executor", "executor_for"]

T = TypeVar("T")

_GET: Final = 0
_COMMAND: Final = 1
_SCRIPT: Final = 2
#: Several GETs of one caller, answered together (``get_many``): one op, one future.
_GETS: Final = 3
#: The kinds that are read from MGETs (not counted as commands in a batch).
_READS: Final = (_GET, _GETS)

#: Round trips one executor keeps in flight at most (per client).
DEFAULT_MAX_INFLIGHT: Final = 32
#: Commands in one batch at most; a fuller batch is closed and the next caller opens another.
DEFAULT_MAX_BATCH: Final = 1000
#: Commands other than GET (scripts, mostly) in one batch at most. Smaller batches in
#: flight side by side keep both ends busy: the server runs one batch's scripts while
#: the client sends the next and hands out the last one's replies. (Measured: 50
#: callers' rate-limit scripts go 1.3-1.8x faster as two pipelines than as one;
#: GETs cost the server too little for it to matter.)
DEFAULT_MAX_BATCH_COMMANDS: Final = 25

_RAW: Final = {NEVER_DECODE: True}  # bulk replies as bytes, whatever the client decodes

_UNAVAILABLE_ERRORS: Final = UNAVAILABLE_ERRORS  # redis-py's and valkey-py's (_clients.py)


class _Op:
    """One command waiting in a batch. ``future`` is made only if it joins a batch;
    ``safe``: it may be resent after a lost reply (``_resend.py``)."""

    __slots__ = ("args", "future", "key", "keys", "kind", "safe", "script", "timeout")

    def __init__(
        self,
        kind: int,
        args: tuple[Any, ...],
        timeout: float,
        safe: bool,
        key: bytes = b"",
        script: Script | None = None,
    ) -> None:
        self.kind = kind
        self.args = args
        self.timeout = timeout
        self.safe = safe
        self.future: asyncio.Future[Any] | None = None
        self.key = key
        self.script = script
        self.keys: Sequence[bytes] = ()


def _settle_op(op: _Op, result: Any) -> None:
    if op.future is not None:
        _settle(op.future, result)


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():
        return
    if isinstance(result, asyncio.CancelledError):
        future.cancel()
    elif isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _translate(exc: BaseException, timeout: float) -> BaseException:
    """A library exception for an error that ended a whole round trip."""
    if isinstance(exc, (RedisUnavailable, RedisCommandError)):
        return exc
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, *TIMEOUT_ERRORS)):
        new: BaseException = RedisTimeout(f"Redis did not answer within {timeout:g}s")
    elif isinstance(exc, _UNAVAILABLE_ERRORS):
        new = RedisUnavailable(f"Redis is unavailable: {exc}")
    elif isinstance(exc, OUT_OF_MEMORY_ERRORS):
        new = _out_of_memory(exc)
    elif isinstance(exc, CLIENT_ERRORS):
        new = RedisCommandError(str(exc))
    else:
        return exc
    new.__cause__ = exc
    return new


def _out_of_memory(exc: BaseException) -> RedisOutOfMemory:
    return RedisOutOfMemory(f"Redis is full (maxmemory reached) and refuses writes: {exc}")


def _reply_error(exc: BaseException) -> BaseException:
    """A library exception for one command's error reply inside a pipeline."""
    if isinstance(exc, (RedisUnavailable, RedisCommandError)):
        return _copy_error(exc)  # already ours (a cluster node's CircuitOpen)
    if isinstance(exc, _UNAVAILABLE_ERRORS):
        new: BaseException = RedisUnavailable(f"Redis is unavailable: {exc}")
    elif isinstance(exc, OUT_OF_MEMORY_ERRORS):
        new = _out_of_memory(exc)
    else:
        new = RedisCommandError(str(exc))
    new.__cause__ = exc
    return new


def _wrong_type(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis's WRONGTYPE error reply (a key of another type)."""
    return isinstance(exc, RedisCommandError) and str(exc).startswith("WRONGTYPE")


def _copy_error(exc: BaseException) -> BaseException:
    """A fresh exception per waiter, so tracebacks do not pile up on a shared one."""
    if isinstance(exc, (RedisUnavailable, RedisCommandError)):
        new = type(exc)(*exc.args)
        new.__cause__ = exc.__cause__
        return new
    return exc


class Executor:
    """Batches, bounds and guards the Redis commands of one client. Use ``executor_for``."""

    def __init__(
        self,
        client: Any,
        *,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_batch_commands: int = DEFAULT_MAX_BATCH_COMMANDS,
    ) -> None:
        self.client = client
        self.is_cluster = is_cluster_client(client)
        self.breaker_settings = BreakerSettings()
        #: On a cluster driven node by node, one breaker per node (``_cluster.py``), and
        #: the client's own breaker never opens: a failing shard fails its keys alone.
        self.node_breakers = NodeBreakers(self.breaker_settings)
        self._per_node = ClusterDirect.for_client(client, self.node_breakers) is not None
        self.breaker = (
            CircuitBreaker.never_opens() if self._per_node else self.breaker_settings.breaker()
        )
        self._max_inflight = max_inflight
        self._max_batch = max_batch
        self._max_commands = max_batch_commands
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: Sized | None = None
        self._slots = Slots(max_inflight)
        self._deadlines: Deadlines | None = None
        self._open: list[_Op] | None = None
        #: Commands other than GET in the open batch.
        self._open_commands = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._direct: Direct | ClusterDirect | None = None
        self._lane_closing: set[asyncio.Task[None]] = set()
        #: Round trips sent, by kind (``client_stats``, the round-trip metric).
        self.trips = RoundTrips()
        observe_executor(self)

    # -- public operations ---------------------------------------------------

    async def get(self, key: bytes, timeout: float) -> bytes | None:
        """GET ``key`` (bytes, never decoded), merged with concurrent GETs.

        A key that holds another Redis type reads as None (a miss), alone or batched.
        """
        if self._lone_caller():
            try:
                result: bytes | None = await self._round_trip(
                    timeout, self._send(("GET", key), None, True)
                )
            except RedisCommandError as exc:
                if not _wrong_type(exc):
                    raise
                return None
            return result
        op = _Op(_GET, ("GET", key), timeout, True, key=key)
        joined = self._join(op)  # the common case under load, without a coroutine more
        reply: bytes | None = await (joined if joined is not None else self._submit(op))
        return reply

    async def get_many(self, keys: Sequence[bytes], timeout: float) -> list[bytes | None]:
        """GET every key in one round trip (per cluster node); the order of ``keys``."""
        if not keys:
            return []
        if self._lone_caller() and not self.is_cluster:
            # Nobody to batch with: one MGET sent at once, like a lone GET.
            self.trips.mget += 1  # (counted as the MGET it is, not as a single command)
            if TELEMETRY.metrics_on:
                TELEMETRY.record_batch(len(keys), BATCH_KINDS["mget"])
            replies: list[bytes | None] = await self._round_trip(
                timeout, self._send(("MGET", *keys), None, True), single=False
            )
            return replies
        # One op for all the keys, merged into the batch's MGETs like single GETs.
        op = _Op(_GETS, ("MGET", *keys), timeout, True)
        op.keys = keys
        joined = self._join(op)
        values: list[bytes | None] = await (joined if joined is not None else self._submit(op))
        return values

    async def command(self, *args: Any, timeout: float, resend_safe: bool | None = None) -> Any:
        """Any single-key (or keyless) command; bulk replies come back as bytes.

        ``resend_safe``: whether the command may be sent again after its reply was
        lost (running it twice has the effect and the reply of running it once);
        None (the default) decides by the command (``_resend.py``).
        """
        safe = is_resend_safe(args) if resend_safe is None else resend_safe
        if self._lone_caller():
            return await self._round_trip(timeout, self._send(args, None, safe))
        return await self._submit(_Op(_COMMAND, args, timeout, safe))

    async def commands(
        self,
        commands: Iterable[tuple[Any, ...]],
        timeout: float,
        *,
        resend_safe: bool | None = None,
    ) -> list[Any]:
        """Several commands in one round trip; each result or error in its place.

        Errors come back as exception objects in the list, not raised, so one
        failing command does not hide the others' results. ``resend_safe``: as
        for ``command()``, for all of them.
        """
        self._lone_caller()
        ops = [
            _Op(
                _COMMAND,
                args,
                timeout,
                is_resend_safe(args) if resend_safe is None else resend_safe,
            )
            for args in commands
        ]
        if not ops:
            return []
        return await self._submit_many(ops, return_exceptions=True)

    async def script(
        self,
        script: Script,
        keys: Sequence[bytes],
        args: Sequence[Any],
        timeout: float,
        *,
        resend_safe: bool | None = None,
    ) -> Any:
        """EVALSHA ``script``; loads it on NOSCRIPT and resends. Resent after a lost
        reply only if the script declares it safe (``Script.resend_safe``), or the
        caller says so for this call (``resend_safe=True``: a read-only mode of a
        script that also writes, say)."""
        op = _Op(
            _SCRIPT,
            ("EVALSHA", script.sha, len(keys), *keys, *args),
            timeout,
            script.resend_safe if resend_safe is None else resend_safe,
            script=script,
        )
        if self._lone_caller():
            return await self._round_trip(timeout, self._send(op.args, script, op.safe))
        return await self._submit(op)

    async def guarded(self, operation: Coroutine[Any, Any, T], timeout: float) -> T:
        """Await a redis-py call made outside the batches (pub/sub, say) under the same
        breaker, in-flight bound, deadline and error translation as every command."""
        self._lone_caller()  # bind to the running loop
        return await self._round_trip(timeout, operation)

    @property
    def per_node(self) -> bool:
        """Whether this client's breakers are its cluster nodes' (one each)."""
        return self._per_node

    def configure_breaker(self, settings: BreakerSettings) -> None:
        """New breaker settings for this client; its breakers start closed again."""
        self.breaker_settings = settings
        self.node_breakers.configure(settings)
        if not self._per_node:
            self.breaker = settings.breaker()
            observe_executor(self)

    def breaker_states(self) -> dict[str, str]:
        """Each breaker's state: ``{"": state}`` for a server, ``{"host:port": state}``
        per cluster node that was used."""
        if self._per_node:
            return {name: b.state_name for name, b in self.node_breakers.by_node.items()}
        return {"": self.breaker.state_name}

    @property
    def round_trips(self) -> int:
        """Round trips sent, for tests and the benchmark harness."""
        return self.trips.total

    @property
    def pending_tasks(self) -> int:
        """Batches being flushed right now (for leak checks)."""
        return len(self._tasks)

    @property
    def held_connections(self) -> int:
        """Connections this executor keeps checked out of the pool between calls (its lane)."""
        direct = self._direct
        return int(isinstance(direct, Direct) and direct.holds_connection)

    @property
    def in_flight(self) -> int:
        """Round trips in flight right now."""
        return self._slots.busy

    @property
    def max_in_flight(self) -> int:
        """The most round trips this executor keeps in flight."""
        return self._max_inflight

    # -- batching -------------------------------------------------------------

    def _lone_caller(self) -> bool:
        """Bind to the running loop; True if this caller can be sent at once, unbatched.

        That is the case when no batch is open and no other task is ready to
        run this tick (so nobody could join), and a slot is free. On a loop
        whose ready queue cannot be read (uvloop), when no batch is open and
        nothing of this client is in flight: concurrent callers then find the
        first one's round trip in flight and batch behind it.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A client is bound to one loop at a time; start clean on a new one.
            self._loop = loop
            self._ready = _compat.ready_queue(loop)
            self._slots = Slots(self._max_inflight)
            self._deadlines = Deadlines(loop)
            self._open = None
            self._tasks = set()
            self._rebind_direct()
        if self._open is not None:
            return False
        ready = self._ready
        if ready is None:
            return self._slots.busy == 0
        return not ready and self._slots.busy < self._max_inflight

    def _join(self, op: _Op) -> asyncio.Future[Any] | None:
        """Add ``op`` to the open batch, if one is open; the future of its reply."""
        batch = self._open
        if batch is None:
            return None
        assert self._loop is not None
        future = op.future = self._loop.create_future()
        batch.append(op)
        self._open_commands += op.kind not in _READS
        if len(batch) >= self._max_batch or self._open_commands >= self._max_commands:
            self._open = None
        return future

    async def _submit(self, op: _Op) -> Any:
        loop = self._loop
        assert loop is not None
        joined = self._join(op)
        if joined is not None:
            return await joined
        batch = [op]
        self._open = batch
        self._open_commands = op.kind not in _READS
        await self._gather_tick(batch, [op])
        if len(batch) == 1 and (op.kind != _GETS or not self.is_cluster):
            send = self._send(op.args, op.script, op.safe)
            if op.kind != _GET:
                return await self._round_trip(op.timeout, send)
            try:
                return await self._round_trip(op.timeout, send)
            except RedisCommandError as exc:
                if not _wrong_type(exc):
                    raise
                return None
        op.future = loop.create_future()
        self._spawn(batch)
        return await op.future

    async def _submit_many(self, ops: list[_Op], *, return_exceptions: bool = False) -> list[Any]:
        loop = self._loop
        assert loop is not None
        for op in ops:
            op.future = loop.create_future()
        commands = sum(op.kind != _GET for op in ops)
        batch = self._open
        if batch is not None:
            batch.extend(ops)
            self._open_commands += commands
            if len(batch) >= self._max_batch or self._open_commands >= self._max_commands:
                self._open = None
        else:
            batch = list(ops)
            self._open = batch
            self._open_commands = commands
            await self._gather_tick(batch, ops)
            if len(batch) == len(ops):
                await self._flush(batch)  # nobody joined: no task needed
            else:
                self._spawn(batch)
        results: list[Any] = []
        first: BaseException | None = None
        for op in ops:
            assert op.future is not None
            try:
                results.append(await op.future)
            except (RedisCommandError, RedisUnavailable) as exc:
                # Every future is awaited (they settle together), so none is left
                # with an exception nobody retrieved; the first error is raised.
                first = first or exc
                results.append(exc)
        if first is not None and not return_exceptions:
            raise first
        return results

    async def _gather_tick(self, batch: list[_Op], mine: list[_Op]) -> None:
        """Let the tasks that are ready this tick join ``batch``, then close it."""
        ready = self._ready
        if ready is None or ready:
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                # Our caller is gone; the others who joined still need their batch.
                if self._open is batch:
                    self._open = None
                rest = [op for op in batch if op not in mine]
                if rest:
                    self._spawn(rest)
                raise
        if self._open is batch:
            self._open = None

    def _spawn(self, batch: list[_Op]) -> None:
        loop = self._loop
        assert loop is not None
        for op in batch:
            if op.future is None:
                op.future = loop.create_future()
        task = loop.create_task(self._flush(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- sending ----------------------------------------------------------------

    async def _round_trip(
        self, timeout: float, send: Coroutine[Any, Any, T], single: bool = True
    ) -> T:
        """Await ``send`` under the breaker, the in-flight bound and a deadline
        (``single``: one command, not a batch that records its own size).

        Redis errors come out as the library's exceptions.
        """
        try:
            trial = self.breaker.before_call()
        except BaseException:
            send.close()
            raise
        slots = self._slots
        deadlines = self._deadlines
        assert deadlines is not None
        # The deadline covers the wait for a free slot too: on a stalled server the
        # slots fill up, and waiting for one must not outlast the timeout.
        task = deadlines.start(timeout)
        has_slot = False
        try:
            if not slots.try_take():
                await slots.take()
            has_slot = True
            self.trips.total += 1
            if single and TELEMETRY.metrics_on:
                TELEMETRY.record_batch(1, BATCH_KINDS["single"])
            result = await send
        except asyncio.CancelledError as exc:
            timed_out = deadlines.caused(task)
            if self._per_node and isinstance(self._direct, ClusterDirect):
                self._direct.stalled(task, timed_out)
            if timed_out:
                self.breaker.record_failure(trial)
                # If redis-py was retrying (backing off after a failure), that failure
                # is the real story: keep it as the cause.
                cause = exc.__context__ if isinstance(exc.__context__, Exception) else None
                raise RedisTimeout(f"Redis did not answer within {timeout:g}s") from cause
            if trial:
                self.breaker.release_trial()
            raise
        except _UNAVAILABLE_ERRORS as exc:
            self.breaker.record_failure(trial)
            raise _translate(exc, timeout) from exc
        except CLIENT_ERRORS as exc:
            self.breaker.record_success(trial)
            raise _translate(exc, timeout) from exc
        except RuntimeError as exc:
            if "another coroutine" not in str(exc):
                if trial:
                    self.breaker.release_trial()
                raise
            # asyncio's "read() called while another coroutine is already waiting":
            # redis-py racing its own reconnect of a connection. Redis is, for us,
            # unavailable for this call.
            self.breaker.record_failure(trial)
            raise RedisUnavailable(f"Redis connection in use by a reconnect: {exc}") from exc
        except BaseException:
            # Not Redis's answer (a bug, an interpreter exit): a trial must not stay
            # "running" for ever, or the breaker would never let a call through again.
            if trial:
                self.breaker.release_trial()
            raise
        finally:
            send.close()  # unstarted if the wait for a slot ended it (no-op once finished)
            deadlines.stop(task)
            if has_slot:
                slots.give_back()
        self.breaker.record_success(trial)
        return result

    def _rebind_direct(self) -> None:
        """A new loop: a new direct path; the old lane's connection goes back to the pool."""
        old = self._direct
        self._direct = Direct.for_client(self.client) or ClusterDirect.for_client(
            self.client, self.node_breakers
        )
        task = old.close_soon() if isinstance(old, Direct) else None
        if task is not None:
            self._lane_closing.add(task)
            task.add_done_callback(self._lane_closing.discard)

    async def _send(self, args: tuple[Any, ...], script: Script | None, safe: bool) -> Any:
        """One command as itself (on the lane if there is one); a script is loaded on
        NOSCRIPT and sent again."""
        direct = self._direct
        try:
            if direct is not None:
                return await direct.call(args, safe)
            return await self.client.execute_command(*args, **_RAW)
        except NO_SCRIPT_ERRORS:
            if script is None:
                raise
            await self._load_script(script, [args])
            if direct is not None:
                return await direct.call(args, safe)
            return await self.client.execute_command(*args, **_RAW)

    async def _flush(self, batch: list[_Op]) -> None:
        timeout = max(op.timeout for op in batch)
        try:
            await self._round_trip(timeout, self._send_batch(batch), single=False)
        except BaseException as exc:
            for op in batch:
                if op.future is not None:
                    _settle(op.future, _copy_error(exc))
            if not isinstance(exc, Exception):
                raise

    async def _send_batch(self, batch: list[_Op]) -> None:
        gets: dict[bytes, list[_Op]] = {}
        others: list[_Op] = []
        several: list[_Op] = []
        for op in batch:
            if op.kind == _GET:
                gets.setdefault(op.key, []).append(op)
            elif op.kind == _GETS:
                several.append(op)
                for key in op.keys:
                    gets.setdefault(key, [])
            else:
                others.append(op)
        values: dict[bytes, Any] = {}

        get_groups = self._get_groups(list(gets))
        commands = [("MGET", *group) for group in get_groups]
        commands.extend(op.args for op in others)
        safe = [True] * len(get_groups)
        safe.extend(op.safe for op in others)
        kind = "pipeline" if others or len(get_groups) > 1 else "mget"
        if kind == "mget":
            self.trips.mget += 1
        else:
            self.trips.pipeline += 1
        if TELEMETRY.metrics_on:
            TELEMETRY.record_batch(len(batch), BATCH_KINDS[kind])
        replies = await self._pipeline(commands, safe)

        for group, reply in zip(get_groups, replies, strict=False):
            if isinstance(reply, BaseException):
                for key in group:
                    for op in gets[key]:
                        _settle_op(op, _reply_error(reply))
                    if several:
                        values[key] = reply
                continue
            for key, value in zip(group, reply, strict=True):
                for op in gets[key]:
                    _settle_op(op, value)
                if several:
                    values[key] = value
        for op in several:
            found = [values[key] for key in op.keys]
            failed = next((v for v in found if isinstance(v, BaseException)), None)
            _settle_op(op, found if failed is None else _reply_error(failed))

        missing: list[_Op] = []
        for op, reply in zip(others, replies[len(get_groups) :], strict=True):
            if isinstance(reply, NO_SCRIPT_ERRORS):
                missing.append(op)
            elif isinstance(reply, BaseException):
                _settle_op(op, _reply_error(reply))
            else:
                _settle_op(op, reply)
        if missing:
            await self._resend_without_scripts(missing)

    async def _resend_without_scripts(self, ops: list[_Op]) -> None:
        scripts = {op.script.sha: op.script for op in ops if op.script is not None}
        for script in scripts.values():
            await self._load_script(script, [op.args for op in ops if op.script is script])
        replies = await self._pipeline([op.args for op in ops], [op.safe for op in ops])
        for op, reply in zip(ops, replies, strict=True):
            _settle_op(op, _reply_error(reply) if isinstance(reply, BaseException) else reply)

    async def _load_script(self, script: Script, commands: list[tuple[Any, ...]]) -> None:
        """Load ``script`` where ``commands`` (its EVALSHAs) go: on a cluster driven node
        by node, on those nodes alone (a dead shard does not hold up the others);
        otherwise with redis-py's ``script_load`` (every primary of a cluster)."""
        direct = self._direct
        if isinstance(direct, ClusterDirect):
            await direct.load_script(script.source, commands)
        else:
            await self.client.script_load(script.source)

    async def _pipeline(self, commands: list[tuple[Any, ...]], safe: list[bool]) -> list[Any]:
        """Commands in one non-transactional pipeline (one per node on a cluster); error
        replies in place. ``safe``: which may be resent after a lost reply."""
        if self._direct is not None:
            return await self._direct.pipeline(commands, safe)
        pipe = self.client.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args, **_RAW)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    def _get_groups(self, keys: list[bytes]) -> list[list[bytes]]:
        """MGET argument lists: one for a server, one per hash slot on a cluster."""
        if not keys:
            return []
        if not self.is_cluster:
            return [keys]
        by_slot: dict[int, list[bytes]] = {}
        for key in keys:
            by_slot.setdefault(key_slot(key), []).append(key)
        return list(by_slot.values())


class RoundTrips:
    """Round trips an executor sent: in all, and the batches by kind (the rest are single)."""

    __slots__ = ("mget", "pipeline", "total")

    def __init__(self) -> None:
        self.total = self.mget = self.pipeline = 0


_TRIP_KINDS: Final = {kind: attrs(kind=kind) for kind in ("mget", "pipeline", "single")}


def _read_trips(trips: RoundTrips) -> list[tuple[AttrKey, int]]:
    single = trips.total - trips.mget - trips.pipeline
    return [
        (_TRIP_KINDS["mget"], trips.mget),
        (_TRIP_KINDS["pipeline"], trips.pipeline),
        (_TRIP_KINDS["single"], single),
    ]


def observe_executor(executor: Executor) -> None:
    """Let the metrics observe ``executor``'s round trips and its breaker's state."""
    TELEMETRY.executors.add(executor, executor.trips, _read_trips)
    if executor.per_node:
        # A cluster's breakers are its nodes', each observed as it is made.
        def observe(breaker: CircuitBreaker) -> None:
            node = attrs(node=breaker.name)
            TELEMETRY.breakers.add(breaker, lambda b: (node, b.state))

        executor.node_breakers.on_new = observe
        for breaker in executor.node_breakers.by_node.values():
            observe(breaker)
    else:
        node = attrs(node=node_name(executor.client))
        TELEMETRY.breakers.add(executor.breaker, lambda breaker: (node, breaker.state))
    TELEMETRY.refresh()


_EXECUTORS: weakref.WeakKeyDictionary[Any, Executor] = weakref.WeakKeyDictionary()


def executor_for(client: Any) -> Executor:
    """The executor of ``client``, shared by every pattern object that uses it."""
    _check_client(client)
    executor = _EXECUTORS.get(client)
    if executor is None:
        executor = _EXECUTORS[client] = Executor(client)
    return executor


def _check_client(client: Any) -> None:
    if not (callable(getattr(client, "execute_command", None)) and hasattr(client, "pipeline")):
        raise TypeError(
            "redis must be a redis.asyncio.Redis, redis.asyncio.RedisCluster, "
            "valkey.asyncio.Valkey or fakeredis.FakeAsyncRedis client, "
            f"not {type(client).__name__}"
        )
    if not inspect.iscoroutinefunction(client.execute_command):
        raise TypeError(
            "redis must be an asyncio client (redis.asyncio.Redis), "
            f"not the synchronous {type(client).__name__}"
        )
