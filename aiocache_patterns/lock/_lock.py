"""A distributed lock that is safe, fast to hand over, and tells you when you lost it.

* Acquire is one script: ``SET NX PX`` with a random token, plus a fencing
  token issued in the same script.
* Release is compare-and-delete; ``extend`` is compare-and-pexpire; both raise
  ``LockNotOwned`` when the lease is gone.
* Waiters queue in arrival order. A release hands the lock straight to the
  first live waiter and wakes it over pub/sub; the waiter confirms from Redis
  that the lock is its own (a message is only a hint: anyone can publish), so
  a hand-off costs the release, one message and one round trip; a waiter in
  the releaser's own process learns it from the release script's reply, with
  no round trip of its own. A lost message costs at most ``poll_interval``,
  and a lease that expires lets the next waiter in when it expires.
* ``auto_renew`` keeps the lease alive while held; if renewal fails the holder
  finds out (``lease.lost``), and with ``cancel_on_loss`` the protected block
  is cancelled with ``LockLost``.

See docs/locks.md for the guarantees and the single-instance trade-off.
"""

from __future__ import annotations

from typing import Any

from .._redis.scripts import load_script
from .._validate import Seconds
from ..keys import KeyT
from ._leases import LeaseHolder

__all__ = ["Lock"]


class Lock(LeaseHolder):
    """A lock shared by every process that uses the same Redis and name.

    >>> lock = Lock(redis, "invoice:42", ttl=30, blocking_timeout=5)  # doctest: +SKIP
    >>> async with lock as lease:
    ...     await charge(invoice, fencing_token=lease.fencing_token)

    One ``Lock`` object is one would-be holder: it keeps its own token (no
    thread-locals), so create one per task that takes the lock.

    Args:
        redis: a ``redis.asyncio.Redis``, ``RedisCluster`` or ``FakeAsyncRedis``.
        name: the lock's name (``str`` or ``bytes``, not empty).
        ttl: the lease: how long the lock outlives a holder that stops renewing it.
        blocking_timeout: how long ``acquire`` waits; ``None`` waits forever,
            ``0`` tries once.
        auto_renew: renew the lease every ``ttl / 3`` while held.
        cancel_on_loss: with ``auto_renew``, cancel the ``async with`` block
            (raising ``LockLost``) if the lease is lost, rather than let it run
            on unprotected.
        namespace: prefix of the lock's keys.
        timeout: deadline of each Redis operation.
        poll_interval: the longest a waiter sleeps between tries when no
            wake-up arrives (a safety net; wake-ups are normally immediate).
        tracing: make an OpenTelemetry span per operation (``True``), none
            (``False``), or as ``configure_telemetry(tracing=...)`` says (``None``).
    """

    _ACQUIRE = load_script(__package__, "lock_acquire", libs=("lib",))
    _RELEASE = load_script(__package__, "lock_release", libs=("lib",))
    _EXTEND = load_script(__package__, "lock_extend")

    def __init__(
        self,
        redis: Any,
        name: KeyT,
        *,
        ttl: Seconds = 30.0,
        blocking_timeout: Seconds | None = None,
        auto_renew: bool = False,
        cancel_on_loss: bool = False,
        namespace: str = "lock",
        timeout: Seconds = 1.0,
        poll_interval: Seconds = 0.25,
        tracing: bool | None = None,
    ) -> None:
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
        # A lock handed to a waiter starts with this lease, stretched to ttl when the
        # waiter confirms (or, handed over in this process, a third of the way in): a
        # waiter that died meanwhile blocks the others this long at most.
        self._handoff_ms = min(self._ttl_ms, self._waiter_lease_ms)

    async def locked(self) -> bool:
        """Whether anyone holds the lock right now."""
        return bool(await self._executor.command("EXISTS", self._key, timeout=self._timeout))

    async def owned(self) -> bool:
        """Whether this object's lease is still the one in Redis."""
        if self._lease is None:
            return False
        holder = await self._executor.command("GET", self._key, timeout=self._timeout)
        return bool(holder == self._lease.token)

    def _acquire_args(self, token: bytes, queue: bool) -> tuple[list[bytes], list[Any]]:
        keys = [self._key, self._fence_key, self._queue_key, self._deadlines_key]
        args = [
            token,
            self._ttl_ms,
            1 if queue else 0,
            self._waiter_lease_ms,
            self._fence_ttl_ms,
        ]
        return keys, args

    def _release_args(self, token: bytes) -> tuple[list[bytes], list[Any]]:
        receipt = self._key + b":rel:" + token
        keys = [self._key, self._queue_key, self._deadlines_key, self._fence_key, receipt]
        return keys, [token, self._channel, self._handoff_ms, self._fence_ttl_ms]

    def _extend_args(self, token: bytes, ttl_ms: int) -> tuple[list[bytes], list[Any]]:
        return [self._key], [token, ttl_ms]
