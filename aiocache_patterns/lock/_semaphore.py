"""A distributed semaphore: up to ``limit`` holders at once across processes.

Holders are a sorted set of tokens scored by the end of their lease, so a
holder that crashes frees its place when its lease ends. Acquire is one
script (drop expired leases, admit in arrival order if a place is free, issue
a fencing token); release wakes the waiters whose turn it is over pub/sub, and
so does a waiter that leaves. Everything else (fair queue, wake-ups that are
only hints, renewal, cancellation) is the same as ``Lock``.
"""

from __future__ import annotations

from typing import Any

from .._redis.eviction import SEMAPHORE
from .._redis.scripts import load_script
from .._validate import Seconds, positive_int
from ..keys import KeyT
from ._leases import LeaseHolder

__all__ = ["Semaphore"]


class Semaphore(LeaseHolder):
    """At most ``limit`` holders of ``name`` at once, across every process.

    >>> sem = Semaphore(redis, "render-farm", limit=4, ttl=60)  # doctest: +SKIP
    >>> async with sem as lease:
    ...     await render(job)

    One ``Semaphore`` object is one would-be holder; create one per task.
    Arguments as for [`Lock`][aiocache_patterns.Lock], plus ``limit``.
    """

    _ACQUIRE = load_script(__package__, "semaphore_acquire", libs=("lib",))
    _RELEASE = load_script(__package__, "semaphore_release", libs=("lib",))
    _EXTEND = load_script(__package__, "semaphore_extend", libs=("lib",))
    _HOLDERS = load_script(__package__, "semaphore_holders")
    _KIND = "semaphore"
    _EVICTION = SEMAPHORE
    _HANDS_OVER = False

    def __init__(
        self,
        redis: Any,
        name: KeyT,
        limit: int,
        ttl: Seconds = 30.0,
        *,
        blocking_timeout: Seconds | None = None,
        auto_renew: bool = False,
        cancel_on_loss: bool = False,
        namespace: str = "semaphore",
        timeout: Seconds = 1.0,
        poll_interval: Seconds = 0.25,
        tracing: bool | None = None,
    ) -> None:
        self._limit = positive_int(limit, "limit")
        super().__init__(
            redis,
            name,
            ttl=ttl,
            blocking_timeout=blocking_timeout,
            auto_renew=auto_renew,
            cancel_on_loss=cancel_on_loss,
            namespace=namespace,
            timeout=timeout,
            poll_interval=poll_interval,
            tracing=tracing,
        )

    @property
    def limit(self) -> int:
        """How many holders may hold a lease at once."""
        return self._limit

    async def holders(self) -> int:
        """How many live leases there are right now."""
        return int(await self._run(self._HOLDERS, [self._key], []))

    def _acquire_args(self, token: bytes, queue: bool) -> tuple[list[bytes], list[Any]]:
        keys = [self._key, self._fence_key, self._queue_key, self._deadlines_key]
        args = [
            token,
            self._ttl_ms,
            1 if queue else 0,
            self._waiter_lease_ms,
            self._fence_ttl_ms,
            self._limit,
        ]
        return keys, args

    def _release_args(self, token: bytes) -> tuple[list[bytes], list[Any]]:
        receipt = self._key + b":rel:" + token
        keys = [self._key, self._queue_key, self._deadlines_key, receipt]
        return keys, [token, self._channel, self._limit]

    def _extend_args(self, token: bytes, ttl_ms: int) -> tuple[list[bytes], list[Any]]:
        return [self._key], [token, ttl_ms]
