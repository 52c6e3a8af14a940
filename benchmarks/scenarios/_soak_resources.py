"""What the soak counts at its start and end, and what "flat" means.

Both snapshots are taken the same way: the workers are stopped, the library
is given time to finish its background work (batches in flight, queue
leaves, lease give-backs, unsubscribes), garbage is collected, then:

* memory: this process's resident set (``/proc/self/statm``); the memory
  blocks Python's allocator has handed out and not taken back
  (``sys.getallocatedblocks()``: every live object, tracked by the garbage
  collector or not); the objects the garbage collector tracks;
* tasks: every asyncio task alive, less the fault proxy's own (one pair per
  proxied connection, the way tests/test_pattern_faults.py counts);
* the library's own state per client: executor batches being flushed and
  round trips in flight, pub/sub channels subscribed;
* connections: per client pool, in use and created (redis-py's pool keeps a
  connection object once made, connected or not); on the server, connected
  clients (``CLIENT LIST``, the soak's admin connection excluded), and the
  proxy's open links (every client connection passes through it).

Flat means:

* tasks, executor work, channels and pool connections in use: exactly as at
  the start;
* connections created per pool: no more than at the start, or than the
  executor's bound (32 round trips in flight, plus the pub/sub connection
  and one being replaced), whichever is larger: a pool may still grow to
  its working size, but never with time;
* server-side clients: no more than the connections the pools have made;
* live Python memory blocks: at most 5% more than at the start (about 8,500
  blocks; the full run makes some 800,000 calls, so a leak of one small object
  per hundred calls would show);
* resident memory: at most 10 MiB more than at the start. The resident set is
  the coarser measure: it keeps the allocators' high-water mark (freed memory
  is not always handed back to the system), which is why the warm-up runs the
  burst and the cancellation storm before the first count.

The soak's own bookkeeping is kept out of the counts: admissions are checked
and dropped as the run goes, and the time series lives in flat arrays.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis

from aiocache_patterns import client_stats
from tests._proxy import FaultProxy

__all__ = [
    "ADMIN_NAME",
    "RSS_TOLERANCE_MB",
    "Snapshot",
    "describe",
    "flatness",
    "rss_mb",
    "settle",
    "snapshot",
]

ADMIN_NAME: Final = "acp-soak-admin"
RSS_TOLERANCE_MB: Final = 10.0
#: Live Python memory blocks may grow this much (a share of the start count).
BLOCKS_TOLERANCE: Final = 0.05
#: Connections one pool may need besides the library's round trips in flight
#: (``client_stats(...).max_in_flight``): pub/sub, and a pub/sub being replaced.
POOL_EXTRA: Final = 2


@dataclass(frozen=True)
class Snapshot:
    at: float  # seconds on the soak's timeline
    rss_mb: float
    py_blocks: int  # memory blocks Python's allocator has handed out and not freed
    gc_objects: int
    tasks: int
    executor_work: int  # batches being flushed + round trips in flight, all clients
    channels: int  # pub/sub channels subscribed, all clients
    in_use: tuple[int, ...]  # per client
    created: tuple[int, ...]  # per client
    pool_bound: int  # connections a pool may need: the library's round trips + POOL_EXTRA
    server_clients: int
    proxy_links: int
    settled: bool  # whether the library went idle before the snapshot
    task_list: tuple[str, ...] = ()  # each task described (see describe())


def _library_tasks() -> list[asyncio.Task[Any]]:
    """Tasks alive now, less the fault proxy's."""
    return [
        task
        for task in asyncio.all_tasks()
        if "FaultProxy" not in getattr(task.get_coro(), "__qualname__", "")
    ]


def library_tasks() -> int:
    return len(_library_tasks())


def describe(task: asyncio.Task[Any]) -> str:
    """A task's coroutine and where it waits (its innermost frames), for leak reports."""
    name = getattr(task.get_coro(), "__qualname__", repr(task.get_coro()))
    frames = task.get_stack()
    where = " < ".join(
        f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno} {f.f_code.co_name}"
        for f in reversed(frames[-3:])
    )
    return f"{name} at {where or '?'}"


def rss_mb() -> float:
    """This process's resident memory, MiB."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):  # not Linux: the peak, in KiB on Linux/BSD
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _busy(clients: Sequence[aioredis.Redis]) -> bool:
    for client in clients:
        stats = client_stats(client)
        if stats.batches_in_flight or stats.in_flight or stats.wake_up_channels:
            return True
    return False


async def settle(clients: Sequence[aioredis.Redis], limit: float = 15.0) -> bool:
    """Wait until the library is idle and the task count holds still for 0.5 s."""
    deadline = time.monotonic() + limit
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = library_tasks()
        if _busy(clients) or count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= 0.5:
            return True
        await asyncio.sleep(0.05)
    return False


async def snapshot(
    at: float,
    clients: Sequence[aioredis.Redis],
    admin: aioredis.Redis,
    proxy: FaultProxy,
    settled: bool,
) -> Snapshot:
    listed = await admin.client_list()
    server_clients = sum(1 for c in listed if c.get("name") != ADMIN_NAME)
    gc.collect()
    stats = [client_stats(c) for c in clients]
    pools = [c.connection_pool for c in clients]
    return Snapshot(
        at=at,
        rss_mb=rss_mb(),
        py_blocks=sys.getallocatedblocks(),
        gc_objects=len(gc.get_objects()),
        tasks=library_tasks(),
        executor_work=sum(s.batches_in_flight + s.in_flight for s in stats),
        channels=sum(s.wake_up_channels for s in stats),
        in_use=tuple(len(p._in_use_connections) for p in pools),
        created=tuple(len(p._in_use_connections) + len(p._available_connections) for p in pools),
        pool_bound=max(s.max_in_flight for s in stats) + POOL_EXTRA,
        server_clients=server_clients,
        proxy_links=proxy.connections,
        settled=settled,
        task_list=tuple(sorted(describe(t) for t in _library_tasks())),
    )


def flatness(start: Snapshot, end: Snapshot) -> list[tuple[str, str, str, str, bool]]:
    """``(what, start, end, rule, flat)`` rows."""
    rss = end.rss_mb - start.rss_mb
    blocks = end.py_blocks / start.py_blocks - 1 if start.py_blocks else 0.0
    pairs = zip(start.created, end.created, strict=True)
    created_ok = all(e <= max(s, end.pool_bound) for s, e in pairs)

    def per_client(values: tuple[int, ...]) -> str:
        return " + ".join(str(v) for v in values)

    return [
        (
            "resident memory (MiB)",
            f"{start.rss_mb:.1f}",
            f"{end.rss_mb:.1f} ({rss:+.1f})",
            f"≤ start + {RSS_TOLERANCE_MB:g}",
            rss <= RSS_TOLERANCE_MB,
        ),
        (
            "asyncio tasks (fault proxy's excluded)",
            str(start.tasks),
            str(end.tasks),
            "= start",
            end.tasks == start.tasks,
        ),
        (
            "executor batches + round trips in flight",
            str(start.executor_work),
            str(end.executor_work),
            "= start",
            end.executor_work == start.executor_work,
        ),
        (
            "pub/sub channels subscribed",
            str(start.channels),
            str(end.channels),
            "= start",
            end.channels == start.channels,
        ),
        (
            "pool connections in use (per client)",
            per_client(start.in_use),
            per_client(end.in_use),
            "= start",
            end.in_use == start.in_use,
        ),
        (
            "pool connections created (per client)",
            per_client(start.created),
            per_client(end.created),
            f"≤ max(start, {end.pool_bound})",
            created_ok,
        ),
        (
            "server: connected clients (admin excluded)",
            str(start.server_clients),
            str(end.server_clients),
            "≤ connections created",
            end.server_clients <= sum(end.created),
        ),
        (
            "fault proxy: open links",
            str(start.proxy_links),
            str(end.proxy_links),
            "≤ connections created",
            end.proxy_links <= sum(end.created),
        ),
        (
            "Python memory blocks in use",
            f"{start.py_blocks:,}",
            f"{end.py_blocks:,} ({blocks:+.1%})",
            f"≤ start + {BLOCKS_TOLERANCE:.0%}",
            blocks <= BLOCKS_TOLERANCE,
        ),
        (
            "gc-tracked objects",
            f"{start.gc_objects:,}",
            f"{end.gc_objects:,} ({end.gc_objects - start.gc_objects:+,})",
            "reported only",
            True,
        ),
    ]
