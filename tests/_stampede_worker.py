"""A worker process for cache/test_stampede_processes.py: N concurrent get_or_load on one key.

Usage: python -m tests._stampede_worker URL CLUSTER(0|1) KEY CALLERS LOADER_SECONDS [LOCK_TTL]

The loader counts its calls in Redis (``<KEY>:calls``) so the parent can see
how many loads happened across every process, and marks ``<KEY>:loading``
while it runs so the parent can kill it mid-load. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import redis.asyncio as aioredis

from aiocache_patterns import Cache


async def main(argv: list[str]) -> None:
    url, cluster, key, callers, loader_s = argv[:5]
    lock_ttl = float(argv[5]) if len(argv) > 5 else 3.0
    client: Any = (
        aioredis.RedisCluster.from_url(url) if cluster == "1" else aioredis.Redis.from_url(url)
    )
    counter: Any = (
        aioredis.RedisCluster.from_url(url) if cluster == "1" else aioredis.Redis.from_url(url)
    )
    cache = Cache(client, namespace="mp", ttl=60, lock_ttl=lock_ttl, lock_timeout=30)

    async def loader() -> dict[str, int]:
        await counter.incr(f"{key}:calls")
        await counter.set(f"{key}:loading", 1, px=60_000)
        await asyncio.sleep(float(loader_s))
        return {"answer": 42}

    latencies: list[float] = []

    async def call() -> Any:
        started = time.monotonic()
        try:
            return await cache.get_or_load(key, loader)
        finally:
            latencies.append(time.monotonic() - started)

    results = await asyncio.gather(*(call() for _ in range(int(callers))), return_exceptions=True)
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    correct = sum(1 for r in results if r == {"answer": 42})
    latencies.sort()
    print(
        json.dumps(
            {
                "correct": correct,
                "errors": errors[:5],
                "error_count": len(errors),
                "p99": latencies[int(len(latencies) * 0.99)],
                "loads": cache.stats.loads,
            }
        ),
        flush=True,
    )
    await client.aclose()
    await counter.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
