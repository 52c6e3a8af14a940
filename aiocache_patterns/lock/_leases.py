"""What Lock and Semaphore share: leases, fencing, fair waiting, renewal, cancellation.

A subclass says which scripts take, give back and extend a lease; this class
does everything around them:

* acquire is one script; on failure the caller joins the fair queue,
  subscribes to the wake-up channel and waits to be woken (or for the lease
  ahead to run out, or the fallback poll) before trying again. A wake-up is a
  hint: the caller holds a lease only once the acquire script says so;
* a waiter that leaves (cancelled, or ``blocking_timeout`` ran out) leaves the
  queue and gives back any lease handed to it in one script, the release
  script, which also wakes the next waiter. A cancelled acquire always raises
  ``CancelledError`` and holds nothing, even if a cancellation was swallowed
  below it (redis-py's ``asyncio.wait_for`` on Python 3.11, CPython gh-86296);
* release and extend are compare-and-act scripts; a release that has started
  completes even if its caller is cancelled; a release Redis could not be
  asked to do (unreachable, timed out) leaves the lease on the object, so
  ``release()`` can be called again;
* ``auto_renew`` runs a watchdog; a lost lease sets ``lease.lost`` and, with
  ``cancel_on_loss``, cancels the ``async with`` block with ``LockLost``.

Waiting (``wait_for_turn``): try, subscribe, wait to be woken, try again.

``attempt(queue)`` runs the acquire script once and answers
``(fencing_token, pttl_ms)``: a fencing token when the caller holds the lease
(taken now, or handed over by a releaser), else ``None`` and how long the
lease it waits behind has left (negative if unknown). Between tries a waiter
sleeps until it is woken by name, the lease it waits behind runs out, or the
fallback poll interval passes, whichever is first.

A wake-up message is only ever a hint to try again: whatever it says (anyone
may PUBLISH to the channel), a waiter returns only once ``attempt`` has
confirmed from Redis, atomically, that the lease is its own, and with the
fencing token Redis issued. A forged message costs one round trip, never
exclusion. The one exception is not a message: a lock handed over by a
releaser in this same process, which the release script's reply names with
its fencing token (``inbox.granted``, see ``_redis.notify.hand_over_locally``);
that is Redis's own word, so the waiter takes it without a round trip. A
waiter woken while a release of its lock is in flight in this process waits
for that release's reply before asking Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

from .._redis.eviction import LOCK, EvictionRisk, warn_if_evictable
from .._redis.executor import executor_for
from .._redis.notify import Notifier, hand_over_locally, local_releases, notifier_for, releasing
from .._redis.scripts import Script
from .._telemetry import TELEMETRY
from .._validate import Seconds, milliseconds, seconds, seconds_or_none
from ..errors import (
    CachePatternsError,
    LockError,
    LockLost,
    LockNotAcquired,
    LockNotOwned,
    RedisUnavailable,
)
from ..keys import KeyBuilder, KeyT

__all__ = ["Lease", "LeaseHolder"]

logger = logging.getLogger("aiocache_patterns.lock")

#: Fencing counters outlive every lease by this much at least. They stay above
#: every token ever issued even if they expire (tokens have a clock floor).
FENCE_TTL_MS: Final = 3_600_000

UNSET: Final[Any] = object()

#: Spans of each kind of holder when tracing is on (method: span name).
_SPANS: Final = {
    kind: {name: f"{kind}.{name}" for name in ("acquire", "release", "extend")}
    for kind in ("lock", "semaphore")
}
#: Attributes of ``aiocache_patterns.lock.wait.duration``, by kind and outcome.
_WAIT_ATTRIBUTES: Final = {
    kind: {
        outcome: {"kind": kind, "outcome": outcome}
        for outcome in ("acquired", "timeout", "cancelled", "error")
    }
    for kind in ("lock", "semaphore")
}

#: Background clean-ups (a cancelled release, a waiter leaving the queue).
_BACKGROUND: set[asyncio.Task[None]] = set()


Attempt = Callable[[bool], Awaitable[tuple[int | None, int]]]


async def wait_for_turn(
    attempt: Attempt,
    *,
    notifier: Notifier,
    channel: bytes,
    token: bytes,
    blocking_timeout: float | None,
    poll_interval: float,
    timeout: float,
) -> tuple[int | None, int]:
    """Run ``attempt`` until it succeeds: ``(fencing token or None if time ran out,
    lease in ms)``. The lease is 0 when the acquire script confirmed it (it is the
    full ttl then), else the short lease a releaser in this process handed over.

    ``attempt(queue)`` must join the fair queue when ``queue`` is true;
    ``timeout`` bounds subscribing to the wake-ups, like any Redis operation.
    """
    fence, pttl = await attempt(blocking_timeout != 0)
    if fence is not None or blocking_timeout == 0:
        return fence, 0
    deadline = None if blocking_timeout is None else time.monotonic() + blocking_timeout
    async with notifier.waiting(channel, token, timeout) as inbox:
        # Try again now that we are subscribed: a release in between was not heard.
        fence, pttl = await attempt(True)
        while fence is None:
            wait = poll_interval
            if pttl > 0:
                wait = min(wait, pttl / 1000 + 0.0005)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None, 0
                wait = min(wait, left)
            if await inbox.wait(wait) is not None and inbox.granted is None:
                await local_releases(channel)
            if inbox.granted is not None:
                return inbox.granted  # the release script's reply, relayed here
            fence, pttl = await attempt(True)  # woken by a hint, or the wait ran out: ask
        return fence, 0


@dataclass(eq=False)
class Lease:
    """One holding of a lock or semaphore, as returned by ``async with``."""

    #: The lock's name.
    name: KeyT
    #: Strictly increasing per name: hand it to the resource you protect and
    #: have it refuse writes carrying a smaller token than it has seen.
    fencing_token: int
    #: Set when the lease is known lost (a renewal found it gone, or could not
    #: reach Redis before it ran out, or a release found it taken over).
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    #: The random value that identifies this holder in Redis.
    token: bytes = field(default=b"", repr=False)


class LeaseHolder:
    """The machinery of one would-be holder of a named lease. Subclass it."""

    _ACQUIRE: Script
    _RELEASE: Script
    _EXTEND: Script
    _KIND = "lock"
    #: What eviction would cost this pattern (a warning at first acquire, see _eviction).
    _EVICTION: EvictionRisk = LOCK
    #: Whether a release hands the lease straight to a waiter (Lock) or only wakes it.
    _HANDS_OVER = True

    def __init__(
        self,
        redis: Any,
        name: KeyT,
        *,
        ttl: Seconds,
        blocking_timeout: Seconds | None,
        auto_renew: bool,
        cancel_on_loss: bool,
        namespace: str,
        timeout: Seconds,
        poll_interval: Seconds,
        tracing: bool | None = None,
    ) -> None:
        self._executor = executor_for(redis)
        self._notifier = notifier_for(redis)
        self._name = name
        self._key = KeyBuilder(namespace).key(name, "name")
        self._fence_key = KeyBuilder.derived(self._key, "fence")
        self._queue_key = KeyBuilder.derived(self._key, "q")
        self._deadlines_key = KeyBuilder.derived(self._key, "qd")
        self._channel = KeyBuilder.derived(self._key, "wake")
        self._ttl = seconds(ttl, "ttl")
        self._ttl_ms = milliseconds(self._ttl, "ttl")
        self._blocking_timeout = seconds_or_none(
            blocking_timeout, "blocking_timeout", allow_zero=True
        )
        if not isinstance(auto_renew, bool):
            raise TypeError("auto_renew must be a bool")
        if not isinstance(cancel_on_loss, bool):
            raise TypeError("cancel_on_loss must be a bool")
        if cancel_on_loss and not auto_renew:
            raise ValueError("cancel_on_loss needs auto_renew=True")
        self._auto_renew = auto_renew
        self._cancel_on_loss = cancel_on_loss
        self._timeout = seconds(timeout, "timeout")
        self._poll = seconds(poll_interval, "poll_interval")
        self._waiter_lease_ms = max(1000, int(self._poll * 4000))
        self._fence_ttl_ms = max(FENCE_TTL_MS, self._ttl_ms * 2)
        #: The lease this object gives a waiter it hands the lease to (see Lock).
        self._handoff_ms = self._ttl_ms
        self._lease: Lease | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._holder: asyncio.Task[Any] | None = None
        self._cancelled_for_loss = False
        TELEMETRY.traceable(self, tracing, _SPANS[self._KIND], redis, namespace)

    # -- what a subclass provides --------------------------------------------------

    def _acquire_args(self, token: bytes, queue: bool) -> tuple[list[bytes], list[Any]]:
        raise NotImplementedError

    def _release_args(self, token: bytes) -> tuple[list[bytes], list[Any]]:
        raise NotImplementedError

    def _extend_args(self, token: bytes, ttl_ms: int) -> tuple[list[bytes], list[Any]]:
        raise NotImplementedError

    # -- state ------------------------------------------------------------------------

    @property
    def name(self) -> KeyT:
        return self._name

    @property
    def lease(self) -> Lease | None:
        """The lease this object holds, if any."""
        return self._lease

    # -- acquire / release / extend ----------------------------------------------

    async def acquire(self, blocking_timeout: Seconds | None = UNSET) -> bool:
        """Take a lease; False if ``blocking_timeout`` ran out first.

        Raises ``RedisUnavailable`` if Redis cannot be reached, and
        ``LockError`` if this object already holds a lease. A cancelled
        acquire raises ``CancelledError`` and holds nothing: before it
        raises, the caller has left the queue and given back any lease
        handed to it (one round trip, waited for at most ``timeout``).
        """
        if blocking_timeout is UNSET:
            wait_limit = self._blocking_timeout
        else:
            wait_limit = seconds_or_none(blocking_timeout, "blocking_timeout", allow_zero=True)
        if self._lease is not None:
            raise LockError(
                f"this {type(self).__name__} object already holds a lease; use one per holder"
            )
        if not TELEMETRY.metrics_on:
            return await self._acquire(wait_limit)
        started = time.perf_counter()
        outcome = "error"
        try:
            acquired = await self._acquire(wait_limit)
            outcome = "acquired" if acquired else "timeout"
            return acquired
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            TELEMETRY.record_lock_wait(
                time.perf_counter() - started, _WAIT_ATTRIBUTES[self._KIND][outcome]
            )

    async def _acquire(self, wait_limit: float | None) -> bool:
        warn_if_evictable(self._executor, self._EVICTION)
        token = secrets.token_hex(16).encode()
        cancels = _cancel_requests()
        pending: list[asyncio.Future[Any]] = []

        async def attempt(queue: bool) -> tuple[int | None, int]:
            keys, args = self._acquire_args(token, queue)
            call = asyncio.ensure_future(self._run(self._ACQUIRE, keys, args))
            pending.append(call)
            reply = await asyncio.shield(call)  # a cancelled caller must not lose a lease
            pending.remove(call)
            if int(reply[0]) == 1:
                return int(reply[1]), 0
            return None, int(reply[1])

        try:
            fence, handed_ms = await wait_for_turn(
                attempt,
                notifier=self._notifier,
                channel=self._channel,
                token=token,
                blocking_timeout=wait_limit,
                poll_interval=self._poll,
                timeout=self._timeout,
            )
            if _cancel_requests() > cancels:
                # Cancelled, but something below swallowed it: still a cancelled acquire.
                raise asyncio.CancelledError
        except asyncio.CancelledError:
            await self._leave_now(token, pending)
            raise
        except BaseException:
            # Redis failed us: leave in the background, not waiting on it a second time.
            _background(self._leave(token, pending))
            raise
        if fence is None:
            if wait_limit != 0 or pending:
                await self._leave_now(token, pending)
            return False
        lease = self._lease = Lease(self._name, fence, token=token)
        self._cancelled_for_loss = False
        # Handed over in this process (no confirming round trip), the lease is still
        # the releaser's short hand-off lease: stretch it to the full ttl a third of
        # the way in, unless it is released first (the usual case: no round trip).
        short_ms = handed_ms if 0 < handed_ms < self._ttl_ms else 0
        if self._auto_renew:
            self._watchdog = asyncio.get_running_loop().create_task(self._renew(lease, short_ms))
        elif short_ms:
            self._watchdog = asyncio.get_running_loop().create_task(self._stretch(lease, short_ms))
        return True

    async def release(self) -> None:
        """Give the lease back and wake the next waiter.

        Raises ``LockNotOwned`` if the lease is gone (expired, or taken over);
        whoever holds it now keeps it. Once started, the release completes
        even if the caller is cancelled. If Redis cannot be asked
        (``RedisUnavailable``: unreachable, timed out), the lease stays on
        this object, no longer renewed: call ``release()`` again, or it ends
        with its ttl.
        """
        lease = self._lease
        if lease is None:
            raise LockNotOwned(f"release() of a {self._KIND} this object does not hold")
        self._lease = None
        self._stop_watchdog()
        keys, args = self._release_args(lease.token)
        cancels = _cancel_requests()
        try:
            with self._releasing():
                reply = await self._run(self._RELEASE, keys, args)
                self._after_release(reply)
        except asyncio.CancelledError:
            # Cancelled mid-flight: the script ran or it did not. Release again in the
            # background; if the first one ran, this one finds the lease gone and
            # changes nothing (compare-and-delete), so the lock is never left held.
            _background(self._release_quietly(lease.token))
            raise
        except RedisUnavailable:
            self._lease = lease  # it may well still be held: do not forget it
            raise
        if not int(reply[0]):
            lease.lost.set()
            raise LockNotOwned(f"the lease on {self._name!r} expired or was taken over")
        if _cancel_requests() > cancels:
            raise asyncio.CancelledError  # released; but the caller was cancelled meanwhile

    async def extend(self, ttl: Seconds | None = None) -> None:
        """Make the lease end ``ttl`` seconds from now (the ttl given at construction by default).

        Raises ``LockNotOwned`` if the lease is gone; nothing is changed then.
        """
        ttl_ms = self._ttl_ms if ttl is None else milliseconds(seconds(ttl, "ttl"), "ttl")
        lease = self._lease
        if lease is None:
            raise LockNotOwned(f"extend() of a {self._KIND} this object does not hold")
        cancels = _cancel_requests()
        if not await self._extend(lease, ttl_ms):
            lease.lost.set()
            raise LockNotOwned(f"the lease on {self._name!r} expired or was taken over")
        if _cancel_requests() > cancels:
            raise asyncio.CancelledError  # extended; but the caller was cancelled meanwhile

    # -- async with ----------------------------------------------------------------------

    async def __aenter__(self) -> Lease:
        if not await self.acquire():
            raise LockNotAcquired(
                f"could not acquire {self._name!r} within {self._blocking_timeout}s"
            )
        self._holder = asyncio.current_task()
        assert self._lease is not None
        return self._lease

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._holder = None
        lost_cancel = self._cancelled_for_loss and isinstance(exc, asyncio.CancelledError)
        if lost_cancel:
            self._cancelled_for_loss = False
            uncancel = getattr(asyncio.current_task(), "uncancel", None)
            if uncancel is not None:
                uncancel()
        try:
            await self.release()
        except CachePatternsError:
            if exc is None:
                raise
            logger.warning(
                "releasing %r failed while an error was propagating; the object keeps "
                "the lease (release() again, or it ends with its ttl)",
                self._name,
            )
        if lost_cancel:
            raise LockLost(f"the lease on {self._name!r} was lost; the block was cancelled")

    # -- internals ---------------------------------------------------------------------------

    async def _run(self, script: Script, keys: list[bytes], args: list[Any]) -> Any:
        return await self._executor.script(script, keys, args, self._timeout)

    async def _extend(self, lease: Lease, ttl_ms: int) -> bool:
        keys, args = self._extend_args(lease.token, ttl_ms)
        return bool(int(await self._run(self._EXTEND, keys, args)))

    async def _leave_now(self, token: bytes, pending: list[asyncio.Future[Any]]) -> None:
        """Leave, waiting for it at most ``timeout``; a second cancel stops the wait only."""
        task = _background(self._leave(token, pending))
        await asyncio.wait([task], timeout=self._timeout)

    async def _leave(self, token: bytes, pending: list[asyncio.Future[Any]]) -> None:
        """After a cancelled or timed-out acquire: leave the queue and give back any lease
        handed to us, in one script that also wakes the next waiter. It runs after the
        tries still in flight, so none of them can take a lease after it."""
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await self._release_quietly(token)

    async def _release_quietly(self, token: bytes) -> None:
        try:
            with self._releasing():
                self._after_release(await self._run(self._RELEASE, *self._release_args(token)))
        except CachePatternsError as exc:
            # Nothing is left behind for long: a queued place ends with the waiter's
            # deadline, a handed-over lease with its short hand-off lease.
            logger.debug("leaving the queue of %r failed: %s", self._name, exc)

    def _releasing(self) -> contextlib.AbstractContextManager[None]:
        """Around a release whose reply may hand the lease to a waiter of this process."""
        return releasing(self._channel) if self._HANDS_OVER else contextlib.nullcontext()

    def _after_release(self, reply: Any) -> None:
        """``{released, woken[, waiter, fencing token]}`` from a release script."""
        if not int(reply[1]):
            self._notifier.publish_refused(self._channel)
        if len(reply) > 3:  # Redis handed the lock to this waiter: tell it, if it is ours
            waiter = reply[2]
            waiter = waiter.encode() if isinstance(waiter, str) else waiter
            hand_over_locally(waiter, int(reply[3]), self._handoff_ms)

    async def _stretch(self, lease: Lease, short_ms: int) -> None:
        third = short_ms / 3000
        await asyncio.sleep(third)
        try:
            if not await self._extend(lease, self._ttl_ms):
                lease.lost.set()
            return
        except CachePatternsError as exc:
            logger.warning("extending the handed-over lease on %r failed: %s", self._name, exc)
        # It could not be stretched: it ends with its short hand-off lease, unless a
        # last try gets through before then.
        await asyncio.sleep(third)
        try:
            if await self._extend(lease, self._ttl_ms):
                return
        except CachePatternsError:
            pass
        lease.lost.set()

    async def _renew(self, lease: Lease, short_ms: int) -> None:
        """Renew every third of the ttl; a lease that starts short (``short_ms``,
        handed over) first a third of the way into that."""
        interval = self._ttl / 3
        lease_ms = short_ms or self._ttl_ms
        good_until = time.monotonic() + lease_ms / 1000 - 0.05  # conservative
        first = bool(short_ms)
        while True:
            await asyncio.sleep(min(interval, short_ms / 3000) if first else interval)
            first = False
            started = time.monotonic()
            try:
                renewed = await self._extend(lease, self._ttl_ms)
            except CachePatternsError as exc:
                if time.monotonic() < good_until:
                    logger.warning("renewing %r failed (%s); retrying", self._name, exc)
                    continue
                renewed = False
            if not renewed:
                logger.warning("the lease on %r was lost", self._name)
                lease.lost.set()
                if self._cancel_on_loss and self._holder is not None:
                    self._cancelled_for_loss = True
                    self._holder.cancel()
                return
            good_until = started + self._ttl

    def _stop_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()


def _background(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    return task


def _cancel_requests() -> int:
    """Cancellations requested of the current task and not withdrawn (Python 3.11+; else 0)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return int(cancelling()) if cancelling is not None else 0
