"""Cache-stampede prevention across processes: recompute lock and XFetch.

When a hot entry is missing or expiring, many processes would each call the
loader. ``RecomputeLock`` lets exactly one load it: the others wait for
the entry to be written, woken by pub/sub (never polling), with a wait limit
after which they load themselves (nginx's ``proxy_cache_lock_timeout``). The
lock is only touched on a miss, a refresh or an early recompute, never on an
ordinary hit. Its lease is renewed while the loader runs, so a slow loader
never lets a second one in; a leader that dies is replaced when its lease
runs out.

``xfetch_due`` is the probabilistic early expiration of Vattani et al.
(VLDB 2015): a reader recomputes before expiry with a probability that rises
as expiry nears and with how long the value took to compute, so a hot key is
refreshed by one reader, before it expires, instead of by all of them after.

See docs/stampede.md for who waits and who gets stale data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections.abc import AsyncIterator
from typing import Final

from .._redis.executor import Executor
from .._redis.notify import Inbox, Notifier
from .._redis.scripts import load_script
from ..errors import CachePatternsError
from ..keys import KeyBuilder

__all__ = ["RecomputeLock", "new_token", "xfetch_due"]

logger = logging.getLogger("aiocache_patterns.stampede")

_ACQUIRE: Final = load_script(__package__, "recompute_acquire")
_STORE: Final = load_script(__package__, "recompute_store")
_EXTEND: Final = load_script(__package__, "recompute_extend")


def xfetch_due(now: float, delta: float, fresh_until: float, beta: float, rand: float) -> bool:
    """Whether a reader at ``now`` should recompute a value early (XFetch).

    ``delta`` is how long the value took to compute, ``fresh_until`` when it
    expires, ``rand`` a uniform draw from (0, 1]. Recompute when
    ``now - delta * beta * log(rand) >= fresh_until``; ``beta > 1`` favours
    earlier recomputation, ``beta = 0`` disables it.
    """
    if beta <= 0 or delta <= 0:
        return now >= fresh_until
    return now - delta * beta * math.log(max(rand, 1e-300)) >= fresh_until


class RecomputeLock:
    """The distributed part of stampede control, for one cache."""

    __slots__ = ("_executor", "_notifier", "_poll", "_timeout", "_ttl_ms")

    def __init__(
        self,
        executor: Executor,
        notifier: Notifier,
        *,
        ttl: float,
        timeout: float,
        poll_interval: float,
    ) -> None:
        self._executor = executor
        self._notifier = notifier
        self._ttl_ms = max(1, int(ttl * 1000))
        self._timeout = timeout
        self._poll = poll_interval

    @staticmethod
    def lock_key(rkey: bytes) -> bytes:
        return KeyBuilder.derived(rkey, "lock")

    @staticmethod
    def channel(rkey: bytes) -> bytes:
        return KeyBuilder.derived(rkey, "filled")

    async def try_acquire(self, rkey: bytes, token: bytes) -> tuple[bool, bytes | None, int]:
        """``(acquired, entry as it is now, ms left on the holder's lease)``."""
        reply = await self._executor.script(
            _ACQUIRE, [rkey, self.lock_key(rkey)], [token, self._ttl_ms], self._timeout
        )
        entry = reply[1] if isinstance(reply[1], bytes) else None
        if int(reply[0]) == 1:
            return True, entry, 0
        return False, entry, int(reply[2])

    async def store(self, rkey: bytes, token: bytes, entry: bytes | None, px: int) -> None:
        """Write ``entry`` (if any), release the lock if still ours, wake the waiters.

        The lock is given back and the waiters woken even when Redis refuses the
        entry (full: ``RedisOutOfMemory`` is raised after that), and a wake-up
        that cannot be published (no channel permission) is skipped silently:
        waiters then find the entry on their own. With ``entry=None`` it only
        gives the lock back (if still ours), which is safe to call whether or
        not it was ever taken.
        """
        await self._executor.script(
            _STORE,
            [rkey, self.lock_key(rkey)],
            [token, entry or b"", px, self.channel(rkey)],
            self._timeout,
        )

    @contextlib.asynccontextmanager
    async def held(self, rkey: bytes, token: bytes) -> AsyncIterator[None]:
        """Renew the lock every third of its lease while the block (the loader) runs."""
        renewal = asyncio.get_running_loop().create_task(self._renew(rkey, token))
        try:
            yield
        finally:
            renewal.cancel()

    async def _renew(self, rkey: bytes, token: bytes) -> None:
        interval = self._ttl_ms / 3000
        while True:
            await asyncio.sleep(interval)
            try:
                still_ours = await self._executor.script(
                    _EXTEND, [self.lock_key(rkey)], [token, self._ttl_ms], self._timeout
                )
            except CachePatternsError as exc:
                logger.debug("renewing the recompute lock failed: %s", exc)
                continue
            if not int(still_ours):
                logger.warning(
                    "recompute lock on %r was lost while loading; another process may load too",
                    rkey[:200],
                )
                return

    @contextlib.asynccontextmanager
    async def waiting(self, rkey: bytes, token: bytes) -> AsyncIterator[Inbox]:
        """Be woken when the entry is written (or the loader gives up)."""
        async with self._notifier.waiting(self.channel(rkey), token, self._timeout) as inbox:
            yield inbox

    def wait_time(self, pttl_ms: int, left: float) -> float:
        """How long to sleep before looking again: until the lease ends, the poll, or the limit."""
        wait = min(self._poll, left)
        if pttl_ms > 0:
            wait = min(wait, pttl_ms / 1000 + 0.0005)
        return max(wait, 0.0)


def new_token() -> bytes:
    """A random token naming one loader."""
    return secrets.token_hex(16).encode()
