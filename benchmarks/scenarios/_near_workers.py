"""Processes for the ``near`` scenario: a writer and readers on one Redis, each its own
interpreter (started with ``spawn``), sharing times through shared memory.

Times are ``time.monotonic()``: one clock for every process of the machine (Linux's
CLOCK_MONOTONIC), so a reader's "seen at" and the writer's "set returned at" compare.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from aiocache_patterns import Cache, NearCache

#: A read that starts this long after the writer's ``set`` returned must see it.
STALE_AFTER = 0.005


async def _near_cache(url: str, namespace: str) -> tuple[Any, Cache]:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    cache = Cache(client, namespace=namespace, ttl=600, near=NearCache())
    return client, cache


async def _wait_active(cache: Cache, key: str) -> None:
    for _ in range(1000):
        await cache.get(key)
        stats = cache.stats
        if stats.near_hits or not stats.near_misses:
            return
        await asyncio.sleep(0.005)


def delay_reader(
    url: str, namespace: str, writes: int, returned: Any, ready: Any, out: Any
) -> None:
    """Poll one key; the first time each version is seen; reads that were stale."""

    async def run() -> None:
        client, cache = await _near_cache(url, namespace)
        await _wait_active(cache, "delay")
        ready.set()
        seen = [0.0] * (writes + 1)
        last = 0
        stale = reads = 0
        due = 0  # the newest version whose set returned more than STALE_AFTER ago
        previous = time.monotonic()
        stalls = 0
        longest = 0.0
        while last < writes:
            started = time.monotonic()
            gap = started - previous
            previous = started
            if gap > 0.002:  # this process did not run for a while (a busy machine)
                stalls += 1
                longest = max(longest, gap)
            while due < writes and 0 < returned[due + 1] < started - STALE_AFTER:
                due += 1
            value = await cache.get("delay", 0)
            reads += 1
            if value < due:
                stale += 1
            if value > last:
                now = time.monotonic()
                for v in range(last + 1, value + 1):
                    seen[v] = now
                last = value
            await asyncio.sleep(0)  # a reader that never yields would starve the listener
        out.put(
            {
                "seen": seen,
                "stale": stale,
                "reads": reads,
                "stalls": stalls,
                "longest_stall": longest,
                "stats": str(cache.stats),
            }
        )
        await cache.aclose()
        await client.aclose()

    asyncio.run(run())


def delay_writer(url: str, namespace: str, writes: int, returned: Any, ready: Any) -> None:
    async def run() -> None:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(url)
        cache = Cache(client, namespace=namespace, ttl=600)
        ready.wait()
        rng = random.Random(7)
        for i in range(1, writes + 1):
            await cache.set("delay", i)
            returned[i] = time.monotonic()
            await asyncio.sleep(rng.uniform(0.002, 0.01))
        await client.aclose()

    asyncio.run(run())


def churn_reader(
    url: str, namespace: str, keys: int, ready: Any, stop: Any, final: Any, out: Any
) -> None:
    """Read random keys until the writer stops; count versions going backwards; 10 ms after
    the stop, read every key and count those not at the final version."""

    async def run() -> None:
        client, cache = await _near_cache(url, namespace)
        await _wait_active(cache, "k0")
        ready.set()
        rng = random.Random()
        last = [0] * keys
        backwards = reads = 0
        while not stop.is_set():
            for _ in range(200):
                i = rng.randrange(keys)
                value = await cache.get(f"k{i}", 0)
                reads += 1
                if value < last[i]:
                    backwards += 1
                last[i] = max(last[i], value)
                await asyncio.sleep(0)
        stopped = time.monotonic()
        final_version = int(final.value)
        await asyncio.sleep(max(0.0, stopped + 0.01 - time.monotonic()))
        behind = 0
        for i in range(keys):
            if await cache.get(f"k{i}", 0) != final_version:
                behind += 1
        out.put(
            {
                "backwards": backwards,
                "reads": reads,
                "behind": behind,
                "near_hits": cache.stats.near_hits,
            }
        )
        await cache.aclose()
        await client.aclose()

    asyncio.run(run())


def churn_writer(
    url: str, namespace: str, keys: int, seconds: float, readers_ready: Any, final: Any, stop: Any
) -> None:
    async def run() -> None:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(url)
        cache = Cache(client, namespace=namespace, ttl=600)
        for event in readers_ready:
            event.wait()
        version = 0
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            version += 1
            await cache.set_many({f"k{i}": version for i in range(keys)})
        final.value = version
        stop.set()
        await client.aclose()

    asyncio.run(run())
