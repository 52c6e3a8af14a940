"""Wake-ups over sharded pub/sub on a Redis 7 cluster, plain pub/sub elsewhere.

A PUBLISH on a cluster is broadcast over the cluster bus to every node
(redis/redis#2672). On a cluster of Redis 7+ the scripts SPUBLISH their
wake-ups and waiters SSUBSCRIBE on the shard that owns the channel, so a lock
hand-off sends no PUBLISH over the bus; a single server keeps PUBLISH and
SUBSCRIBE.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from aiocache_patterns import Cache, Lock, Semaphore
from aiocache_patterns._redis.notify import ShardedNotifier, notifier_for
from tests._backends import Backend

BOUND = 2.0


async def _bus_publishes(client: aioredis.RedisCluster) -> int:
    """PUBLISH messages every primary has sent over the cluster bus so far."""
    total = 0
    for node in client.get_primaries():
        direct: Any = aioredis.Redis(host=node.host, port=int(node.port))
        try:
            info = await direct.execute_command("CLUSTER INFO")
        finally:
            await direct.aclose()
        total += int(info.get("cluster_stats_messages_publish_sent", 0))
    return total


async def _server_major(redis: Any) -> int:
    info = await redis.info("server")
    return int(str(info["redis_version"]).split(".")[0])


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
async def test_a_hand_off_wakes_the_waiter(redis: Any, backend: Backend, kind: str) -> None:
    def make(**kwargs: Any) -> Lock | Semaphore:
        if kind == "lock":
            return Lock(redis, "handoff", ttl=10, **kwargs)
        return Semaphore(redis, "handoff", limit=1, ttl=10, **kwargs)

    holder = make()
    assert await holder.acquire()
    waiter = make(blocking_timeout=8, poll_interval=30)  # only a wake-up is this fast
    waiting = asyncio.create_task(waiter.acquire())
    await asyncio.sleep(0.3)
    assert not waiting.done()
    notifier = notifier_for(redis)
    channel = next(iter(notifier.channels))
    if backend.is_cluster and await _server_major(redis) >= 7:
        assert isinstance(notifier, ShardedNotifier)
        assert notifier.sharded is True
        node = redis.nodes_manager.get_node_from_slot(key_slot(channel))
        direct: Any = aioredis.Redis(host=node.host, port=node.port)
        try:
            assert channel in await direct.execute_command("PUBSUB SHARDCHANNELS")
            assert channel not in await direct.execute_command("PUBSUB CHANNELS")
        finally:
            await direct.aclose()
    elif not backend.is_cluster:
        assert not isinstance(notifier, ShardedNotifier)
    started = time.monotonic()
    await holder.release()
    assert await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < BOUND
    await waiter.release()


async def test_cluster_hand_offs_broadcast_nothing(redis: Any, backend: Backend) -> None:
    if not backend.is_cluster:
        pytest.skip("the cluster bus exists on a cluster only")
    if await _server_major(redis) < 7:
        pytest.skip("sharded pub/sub needs Redis 7")
    cluster: aioredis.RedisCluster = redis
    first = Lock(cluster, "bus", ttl=10, blocking_timeout=5, poll_interval=30)
    # Another process's release: this process's waiter is not handed the lock by
    # the releaser's reply, only by the wake-up.
    other: Any = aioredis.RedisCluster.from_url(backend.url or "")
    try:
        remote = Lock(other, "bus", ttl=10)
        before = await _bus_publishes(cluster)
        for _ in range(20):
            assert await remote.acquire()
            waiting = asyncio.create_task(first.acquire())
            await asyncio.sleep(0.01)
            started = time.monotonic()
            await remote.release()
            assert await asyncio.wait_for(waiting, 5)
            assert time.monotonic() - started < BOUND
            await first.release()
        assert await _bus_publishes(cluster) - before < 20  # was 2 a hand-off with PUBLISH
        # The recompute lock's wake-ups too: a waiter for a value being loaded.
        cache = Cache(cluster, namespace="bus", ttl=60)
        gate = asyncio.Event()

        async def slow() -> int:
            await gate.wait()
            return 1

        other_cache = Cache(other, namespace="bus", ttl=60)
        loading = asyncio.create_task(other_cache.get_or_load("k", slow))
        await asyncio.sleep(0.1)
        waiting_value = asyncio.create_task(cache.get_or_load("k", slow))
        await asyncio.sleep(0.2)
        before = await _bus_publishes(cluster)
        gate.set()
        assert await asyncio.wait_for(loading, 5) == 1
        assert await asyncio.wait_for(waiting_value, 5) == 1
        assert await _bus_publishes(cluster) - before == 0
    finally:
        await other.aclose()
