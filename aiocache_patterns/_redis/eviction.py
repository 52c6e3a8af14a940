"""One warning when the server's eviction policy can break a pattern.

With ``maxmemory`` set, a full Redis makes room by its ``maxmemory-policy``:
``noeviction`` refuses writes that add data (an OOM error: the library's
``RedisOutOfMemory``); ``allkeys-*`` evicts
any key; ``volatile-*`` evicts only keys that have a TTL. Which of these a
pattern tolerates depends on what its keys are (see docs/eviction.md):

* cache entries: any policy (an evicted entry is a miss);
* rate limiters, locks, semaphores, periodic leaderboards: every key has a
  TTL, so ``volatile-*`` evicts them as readily as ``allkeys-*``; only
  ``noeviction`` keeps them (an evicted counter is a full quota, an evicted
  lock a second holder, an evicted periodic board lost scores);
* leaderboards without a period: their keys have no TTL, so ``noeviction``
  and ``volatile-*`` keep them.

A pattern calls ``warn_if_evictable`` at its first use with its executor
and an ``EvictionRisk``. Once per client and kind of pattern, off the
hot path (a background task), it reads ``CONFIG GET maxmemory*`` and logs one
warning if the server can evict keys the pattern cannot lose. It never fails
the call and says nothing when it cannot tell: ``CONFIG`` refused (managed
services and ACLs often forbid it), Redis down, a server without ``CONFIG``.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .executor import Executor

__all__ = [
    "ANY_POLICY",
    "EVICTION_POLICIES",
    "LEADERBOARD",
    "LOCK",
    "NOEVICTION",
    "PERIODIC_LEADERBOARD",
    "RATE_LIMITER",
    "SEMAPHORE",
    "WITHOUT_TTL_KEPT",
    "EvictionRisk",
    "warn_if_evictable",
]

logger = logging.getLogger("aiocache_patterns.eviction")

#: Every ``maxmemory-policy`` of Redis 7.
EVICTION_POLICIES: Final = frozenset(
    {
        "noeviction",
        "allkeys-lru",
        "allkeys-lfu",
        "allkeys-random",
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    }
)
#: The one policy that never evicts a key.
NOEVICTION: Final = frozenset({"noeviction"})
#: The policies that never evict a key without a TTL.
WITHOUT_TTL_KEPT: Final = frozenset(p for p in EVICTION_POLICIES if not p.startswith("allkeys"))
#: Every policy (a pattern whose keys may all be evicted).
ANY_POLICY: Final = EVICTION_POLICIES

#: How long the background check waits for ``CONFIG GET``.
CHECK_TIMEOUT: Final = 1.0


@dataclass(frozen=True, slots=True)
class EvictionRisk:
    """What a kind of pattern cannot lose, and what losing it does."""

    #: The pattern, as the warning names it ("rate limiter").
    kind: str
    #: The ``maxmemory-policy`` values under which its keys are safe.
    tolerated: frozenset[str]
    #: What an eviction does to it, for the warning.
    consequence: str


RATE_LIMITER: Final = EvictionRisk(
    "rate limiter",
    NOEVICTION,
    "an evicted counter is a full quota again, so evicted clients get past their limit",
)
LOCK: Final = EvictionRisk(
    "lock",
    NOEVICTION,
    "an evicted lock key is a free lock while its holder still runs: two holders at once",
)
SEMAPHORE: Final = EvictionRisk(
    "semaphore",
    NOEVICTION,
    "an evicted holder set lets more than `limit` holders in",
)

LEADERBOARD: Final = EvictionRisk(
    "leaderboard",
    WITHOUT_TTL_KEPT,
    "an evicted board loses its scores (a board's index, if evicted alone, is rebuilt)",
)
PERIODIC_LEADERBOARD: Final = EvictionRisk(
    "periodic leaderboard",
    NOEVICTION,
    "a periodic board's keys have a TTL, so any eviction policy can drop its scores",
)

_checked: weakref.WeakKeyDictionary[Executor, set[str]] = weakref.WeakKeyDictionary()
_tasks: set[asyncio.Task[None]] = set()


def warn_if_evictable(executor: Executor, risk: EvictionRisk) -> None:
    """Check, once per client and ``risk.kind``, that the server will not evict keys
    the pattern cannot lose; log one warning if it may. Returns at once: the check
    runs in a background task. Call it from a coroutine (it needs the running loop)."""
    kinds = _checked.get(executor)
    if kinds is None:
        kinds = _checked[executor] = set()
    if risk.kind in kinds:
        return
    kinds.add(risk.kind)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # pragma: no cover - patterns call this from coroutines
        return
    task = loop.create_task(_check(executor.client, risk))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _check(client: Any, risk: EvictionRisk) -> None:
    try:
        reply = await asyncio.wait_for(
            client.execute_command("CONFIG", "GET", "maxmemory*"), CHECK_TIMEOUT
        )
    except Exception:  # refused (ACL), unknown (no CONFIG), Redis down: say nothing
        return
    found = _config(reply)
    policy = found.get("maxmemory-policy")
    maxmemory = found.get("maxmemory", "")
    if policy is None or policy in risk.tolerated or not maxmemory.isdigit():
        return
    if int(maxmemory) == 0:
        return  # no memory limit: nothing is ever evicted
    allowed = " or ".join(sorted(risk.tolerated))
    logger.warning(
        "Redis evicts keys when full (maxmemory %s, maxmemory-policy %s), and a %s needs "
        "maxmemory-policy %s: %s. See docs/eviction.md.",
        maxmemory,
        policy,
        risk.kind,
        allowed,
        risk.consequence,
    )


def _config(reply: object) -> dict[str, str]:
    """``CONFIG GET``'s reply as ``{name: value}``, whatever the client decodes."""
    pairs: list[tuple[object, object]]
    if isinstance(reply, Mapping):
        pairs = list(reply.items())
    elif isinstance(reply, (list, tuple)):
        pairs = list(zip(reply[::2], reply[1::2], strict=False))
    else:
        return {}
    return {_text(name): _text(value) for name, value in pairs}


def _text(value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)
