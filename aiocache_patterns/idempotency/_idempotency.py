"""Idempotency keys: an operation runs once per key, repeats get its result.

One record per key, a Redis hash at ``<namespace>:{<key>}``, holds the state:
*running* (the claimer's random token, its fencing token and the end of its
lease), *done* (the request's fingerprint and the stored result) or *free*
(the operation failed: the key may run again). Three scripts act on it:

* ``claim`` (one round trip, the server's clock): claim the key, or answer
  with the stored result (a replay), a fingerprint mismatch, or how long the
  running claim's lease has left. A claim whose lease has passed (its process
  died) is taken over with a higher fencing token;
* ``complete`` (compare-and-set on the token): store the result (or free the
  key) and wake the waiters over pub/sub;
* ``extend``: renew the lease every third of it while the operation runs.

Callers that find the key running get ``IdempotencyConflict`` at once
(``concurrent="reject"``) or wait for the result (``concurrent="wait"``),
woken by the notifier of ``_redis/notify.py``; a wake-up is a hint, the
waiter asks Redis again (the claim script) before it returns anything.

See docs/idempotency.md for the guarantees and the failure modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

from .._redis.eviction import NOEVICTION, EvictionRisk, warn_if_evictable
from .._redis.executor import executor_for
from .._redis.notify import notifier_for
from .._redis.scripts import load_script
from .._telemetry import TELEMETRY
from .._validate import Seconds, milliseconds, positive_int, seconds
from ..errors import CachePatternsError, IdempotencyConflict, IdempotencyKeyReused
from ..keys import KeyBuilder, KeyT, key_bytes
from ..serializers import JsonSerializer, Serializer

__all__ = ["Concurrent", "Idempotency", "IdempotencyClaim", "IdempotencyReplay"]

logger = logging.getLogger("aiocache_patterns.idempotency")

T = TypeVar("T")

#: What a caller does when it finds the key's operation running elsewhere.
Concurrent = Literal["reject", "wait"]

_CLAIM: Final = load_script(__package__, "claim", libs=("lib",))
_COMPLETE: Final = load_script(__package__, "complete", libs=("lib",))
_EXTEND: Final = load_script(__package__, "extend", libs=("lib",))

#: Results larger than this (bytes, serialized) are not stored by default.
DEFAULT_MAX_RESULT_BYTES: Final = 1024 * 1024

_CLAIMED, _DONE, _MISMATCH, _RUNNING = 0, 1, 2, 3

#: Records have a TTL, so only ``noeviction`` keeps them when Redis is full.
IDEMPOTENCY: Final = EvictionRisk(
    "idempotency store",
    NOEVICTION,
    "an evicted record frees its key, so a retry runs the operation again",
)


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """The right to run a key's operation, until completed, released or its lease ends.

    ``fencing_token`` grows with every claim of the key: pass it to the systems
    the operation writes to, so a write from a claim whose lease ran out (a
    stalled process) can be rejected there.
    """

    redis_key: bytes
    token: bytes
    fencing_token: int


@dataclass(frozen=True, slots=True)
class IdempotencyReplay:
    """The key's operation already ran: its stored result (``None``: too large to store)."""

    payload: bytes | None


def fingerprint_digest(fingerprint: KeyT) -> bytes:
    """The 64-byte digest stored for a fingerprint (any length in, fixed size stored)."""
    return hashlib.sha256(key_bytes(fingerprint, "fingerprint")).hexdigest().encode()


class Idempotency:
    """Exactly-once operations under idempotency keys, across processes.

    >>> idem = Idempotency(redis, namespace="payments", ttl=24 * 3600)  # doctest: +SKIP
    >>> async def charge(fence: int) -> dict: ...
    >>> receipt = await idem.run(request_id, fingerprint, charge)

    The first ``run`` of a key calls ``operation(fencing_token)`` and stores
    its result with the fingerprint; a repeat with the same fingerprint gets
    the stored result without calling it; a repeat with another fingerprint
    raises ``IdempotencyKeyReused``. An operation that raises is not stored
    (the key may run again). While one runs, a repeat raises
    ``IdempotencyConflict`` (``concurrent="reject"``) or waits for its result
    (``"wait"``, up to ``wait_timeout``).

    Args:
        redis: a ``redis.asyncio.Redis``, ``RedisCluster`` or ``FakeAsyncRedis``.
        namespace: prefix of the records' keys.
        ttl: how long a finished key's result is kept (and a running key's record).
        lease: how long a claim outlives a process that stops renewing it (it is
            renewed every third of it while the operation runs).
        concurrent: ``"reject"`` or ``"wait"``, for a repeat that finds the key running.
        wait_timeout: how long a ``"wait"`` repeat waits before ``IdempotencyConflict``.
        serializer: encodes ``run``'s results (JSON by default).
        max_result_bytes: results larger than this (serialized) are not stored:
            the key then answers ``IdempotencyConflict`` (``in_progress=False``)
            to every repeat, and never runs again while its record lives.
        timeout: deadline of each Redis operation.
        poll_interval: the longest a waiter sleeps between looks when no wake-up
            arrives (a safety net).
        tracing: make an OpenTelemetry span per operation (``True``), none
            (``False``), or as ``configure_telemetry(tracing=...)`` says (``None``).
    """

    def __init__(
        self,
        redis: Any,
        *,
        namespace: str = "idempotency",
        ttl: Seconds = 24 * 3600.0,
        lease: Seconds = 30.0,
        concurrent: Concurrent = "reject",
        wait_timeout: Seconds = 10.0,
        serializer: Serializer | None = None,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        timeout: Seconds = 1.0,
        poll_interval: Seconds = 0.25,
        tracing: bool | None = None,
    ) -> None:
        self._executor = executor_for(redis)
        self._notifier = notifier_for(redis)
        self._keys = KeyBuilder(namespace)
        self.ttl = seconds(ttl, "ttl")
        self._ttl_ms = milliseconds(self.ttl, "ttl")
        self.lease = seconds(lease, "lease")
        self._lease_ms = milliseconds(self.lease, "lease")
        if self._lease_ms > self._ttl_ms:
            raise ValueError(f"lease must not be longer than ttl, got {lease!r} > {ttl!r}")
        if concurrent not in ("reject", "wait"):
            raise ValueError(f"concurrent must be 'reject' or 'wait', not {concurrent!r}")
        self.concurrent: Concurrent = concurrent
        self._wait_timeout = seconds(wait_timeout, "wait_timeout", allow_zero=True)
        if serializer is not None and not (
            callable(getattr(serializer, "dumps", None))
            and callable(getattr(serializer, "loads", None))
        ):
            raise TypeError("serializer must have dumps() and loads()")
        self._serializer: Serializer = serializer or JsonSerializer()
        self.max_result_bytes = positive_int(max_result_bytes, "max_result_bytes", allow_zero=True)
        self._timeout = seconds(timeout, "timeout")
        self._poll = seconds(poll_interval, "poll_interval")
        self._background: set[asyncio.Task[Any]] = set()
        TELEMETRY.traceable(self, tracing, _SPANS, redis, namespace)

    # -- the whole operation -----------------------------------------------------

    async def run(
        self, key: KeyT, fingerprint: KeyT, operation: Callable[[int], Awaitable[T]]
    ) -> T:
        """Run ``operation(fencing_token)`` once for ``key``; repeats get its result.

        Raises ``IdempotencyKeyReused`` (another fingerprint), ``IdempotencyConflict``
        (running elsewhere, or its result was not storable) and ``RedisUnavailable``
        (Redis could not be asked: nothing ran). If the result cannot be stored
        once the operation ran (Redis went away), it is returned all the same and a
        warning logged: the key is free again when the lease ends.
        """
        if not callable(operation):
            raise TypeError(f"operation must be callable, not {type(operation).__name__}")
        outcome = await self.start(key, fingerprint)
        if isinstance(outcome, IdempotencyReplay):
            if outcome.payload is None:
                raise IdempotencyConflict(
                    "the operation ran, but its result was not stored", in_progress=False
                )
            value: T = self._serializer.loads(outcome.payload)
            return value
        claim = outcome
        try:
            async with self.renewing(claim):
                result = await operation(claim.fencing_token)
        except BaseException:
            await self.release(claim)
            raise
        try:
            payload: bytes | None = self._serializer.dumps(result)
        except Exception as exc:  # ran, but cannot be replayed: never run again
            logger.warning("idempotency: result of %r not serializable: %s", claim.redis_key, exc)
            payload = None
        if payload is not None and len(payload) > self.max_result_bytes:
            payload = None
        try:
            if not await self.complete(claim, payload):
                logger.warning(
                    "idempotency: the claim on %r was lost before its result was stored "
                    "(its lease ended, or the record vanished); the key may run again",
                    claim.redis_key[:200],
                )
        except CachePatternsError as exc:
            logger.warning(
                "idempotency: the result of %r could not be stored (%s); the key is free "
                "again when its lease ends",
                claim.redis_key[:200],
                exc,
            )
        return result

    # -- the steps, for callers that keep their own results (the ASGI middleware) --

    async def start(self, key: KeyT, fingerprint: KeyT) -> IdempotencyClaim | IdempotencyReplay:
        """Claim ``key`` (an ``IdempotencyClaim``: run the operation, then ``complete``
        or ``release`` it) or get its stored result (an ``IdempotencyReplay``).

        Raises ``IdempotencyKeyReused``, ``IdempotencyConflict`` and ``RedisUnavailable``
        as ``run`` does. One round trip, unless it waits for a running claim.
        """
        rkey = self._keys.key(key)
        digest = fingerprint_digest(fingerprint)
        token = secrets.token_hex(16).encode()
        warn_if_evictable(self._executor, IDEMPOTENCY)
        reply = await self._claim(rkey, token, digest)
        if int(reply[0]) != _RUNNING:
            return self._outcome(rkey, token, reply)
        if self.concurrent == "reject" or self._wait_timeout == 0:
            raise IdempotencyConflict(
                "a request with this idempotency key is being processed", in_progress=True
            )
        return await self._wait(rkey, token, digest, int(reply[1]))

    async def complete(self, claim: IdempotencyClaim, payload: bytes | None) -> bool:
        """Store ``payload`` as the key's result (``None``: it ran, but keep no result)
        and wake the waiters. False if the claim was lost (its lease ended and another
        caller claimed the key): nothing is stored then. Completes even if the
        caller is cancelled meanwhile."""
        if payload is not None and not isinstance(payload, bytes):
            raise TypeError(f"payload must be bytes or None, not {type(payload).__name__}")
        args = [
            claim.token,
            b"done",
            payload or b"",
            self._ttl_ms,
            b"0" if payload is None else b"1",
            self._channel(claim.redis_key),
        ]
        return await self._settle(claim, args)

    async def release(self, claim: IdempotencyClaim) -> bool:
        """Free the key (the operation failed or was cancelled: it may run again) and
        wake the waiters. Never raises a Redis error: a release Redis could not be
        asked to do is logged, and the key is free when its lease ends."""
        args = [claim.token, b"free", b"", self._ttl_ms, b"0", self._channel(claim.redis_key)]
        try:
            return await self._settle(claim, args)
        except CachePatternsError as exc:
            logger.warning(
                "idempotency: releasing %r failed (%s); it is free when its lease ends",
                claim.redis_key[:200],
                exc,
            )
            return False

    @contextlib.asynccontextmanager
    async def renewing(self, claim: IdempotencyClaim) -> AsyncIterator[None]:
        """Renew the claim's lease every third of it while the block runs."""
        renewal = asyncio.get_running_loop().create_task(self._renew(claim))
        try:
            yield
        finally:
            renewal.cancel()

    # -- internals -----------------------------------------------------------------

    async def _claim(self, rkey: bytes, token: bytes, digest: bytes) -> Any:
        # In a task of its own: a caller cancelled while its claim is in flight still
        # learns (in a callback) whether Redis applied it, and gives the key back
        # then, rather than leave it claimed until the lease ends.
        task = asyncio.get_running_loop().create_task(
            self._executor.script(
                _CLAIM, [rkey], [token, digest, self._lease_ms, self._ttl_ms], self._timeout
            )
        )
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(lambda done: self._give_back(rkey, token, done))
            raise

    def _give_back(self, rkey: bytes, token: bytes, claim: asyncio.Task[Any]) -> None:
        """After a cancelled caller's claim finished: free the key if it was claimed."""
        if claim.cancelled() or claim.exception() is not None:
            return
        if int(claim.result()[0]) != _CLAIMED:
            return
        args = [token, b"free", b"", self._ttl_ms, b"0", self._channel(rkey)]
        task = asyncio.get_running_loop().create_task(
            self._executor.script(_COMPLETE, [rkey], args, self._timeout)
        )
        self._background.add(task)
        task.add_done_callback(_forget(self._background))

    def _outcome(
        self, rkey: bytes, token: bytes, reply: Any
    ) -> IdempotencyClaim | IdempotencyReplay:
        kind = int(reply[0])
        if kind == _CLAIMED:
            return IdempotencyClaim(rkey, token, int(reply[1]))
        if kind == _DONE:
            # Bulk replies come back as bytes whatever the client decodes (the executor).
            payload = reply[1] if isinstance(reply[1], bytes) else None
            return IdempotencyReplay(payload)
        raise IdempotencyKeyReused("the idempotency key was used with a different request")

    async def _wait(
        self, rkey: bytes, token: bytes, digest: bytes, lease_left_ms: int
    ) -> IdempotencyClaim | IdempotencyReplay:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_timeout
        async with self._notifier.waiting(self._channel(rkey), token, self._timeout) as inbox:
            while True:
                # Subscribed first, then asked: a completion in between is not missed.
                reply = await self._claim(rkey, token, digest)
                if int(reply[0]) != _RUNNING:
                    return self._outcome(rkey, token, reply)
                lease_left_ms = int(reply[1])
                left = deadline - loop.time()
                if left <= 0:
                    raise IdempotencyConflict(
                        "a request with this idempotency key is still being processed",
                        in_progress=True,
                    )
                await inbox.wait(min(self._poll, left, lease_left_ms / 1000 + 0.0005))

    async def _settle(self, claim: IdempotencyClaim, args: list[Any]) -> bool:
        # In a task of its own, shielded: cancelling the caller never leaves the key
        # claimed until its lease ends when the script can still be sent.
        task = asyncio.get_running_loop().create_task(
            self._executor.script(_COMPLETE, [claim.redis_key], args, self._timeout)
        )
        self._background.add(task)
        task.add_done_callback(_forget(self._background))
        return bool(int(await asyncio.shield(task)))

    async def _renew(self, claim: IdempotencyClaim) -> None:
        interval = self._lease_ms / 3000
        while True:
            await asyncio.sleep(interval)
            try:
                ours = await self._executor.script(
                    _EXTEND, [claim.redis_key], [claim.token, self._lease_ms], self._timeout
                )
            except CachePatternsError as exc:
                logger.debug("idempotency: renewing %r failed: %s", claim.redis_key[:200], exc)
                continue
            if not int(ours):
                logger.warning(
                    "idempotency: the claim on %r was lost while its operation ran; "
                    "another caller may run it too (see its fencing token)",
                    claim.redis_key[:200],
                )
                return

    @staticmethod
    def _channel(rkey: bytes) -> bytes:
        return KeyBuilder.derived(rkey, "done")


def _forget(tasks: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that was cancelled never reads it

    return done


#: The operations that make a span when tracing is on (method: span name).
_SPANS: Final = {name: f"idempotency.{name}" for name in ("run", "start", "complete", "release")}
