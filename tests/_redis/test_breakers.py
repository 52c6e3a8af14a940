"""Circuit breakers: their settings (``configure_breaker``), and one per cluster node.

A breaker fails calls at once while a server is down, so a dead server is
neither waited on nor hammered. On a Redis Cluster each node has its own: a
dead shard fails its own keys, never the keys of the healthy shards (with one
breaker per client, one dead master of three opened the circuit for every
key).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from aiocache_patterns import (
    BreakerSettings,
    Cache,
    CircuitOpen,
    RateLimiter,
    RedisUnavailable,
    client_stats,
    configure_breaker,
)
from aiocache_patterns._redis.breaker import CircuitBreaker
from aiocache_patterns._redis.executor import executor_for
from tests._backends import in_ci
from tests._cluster import private_cluster, wait_ready
from tests._servers import RedisProcess, free_port, redis_server_binary

TIMEOUT = 0.3


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- the breaker itself -------------------------------------------------------------


def test_opens_after_the_configured_failures_and_lets_trials_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(
        threshold=3, cooldown=1.0, max_cooldown=3.0, trial_calls=2, clock=clock
    )
    for _ in range(2):
        assert breaker.before_call() is False
        breaker.record_failure()
    assert breaker.state_name == "closed"
    breaker.record_failure()
    assert breaker.state_name == "open"
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clock.now += 1.0
    assert breaker.state_name == "half_open"
    assert breaker.before_call() is True
    assert breaker.before_call() is True  # two trials at once
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # a third is refused
    breaker.record_failure(trial=True)  # open again, for twice as long
    clock.now += 1.5
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clock.now += 0.5
    breaker.release_trial()  # the other trial was cancelled
    assert breaker.before_call() is True
    breaker.record_success(trial=True)
    assert breaker.state_name == "closed"
    assert breaker.before_call() is False


def test_the_open_time_doubles_up_to_its_bound() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown=1.0, max_cooldown=3.0, clock=clock)
    breaker.record_failure()
    waits = []
    for _ in range(4):
        start = clock.now
        while True:
            try:
                trial = breaker.before_call()
            except CircuitOpen:
                clock.now += 0.25
                continue
            break
        assert trial
        waits.append(clock.now - start)
        breaker.record_failure(trial=True)
    assert waits == [1.0, 2.0, 3.0, 3.0]


def test_configure_breaker_checks_its_arguments() -> None:
    client = aioredis.Redis(port=free_port())
    with pytest.raises(ValueError, match="failures"):
        configure_breaker(client, failures=0)
    with pytest.raises(TypeError, match="trial_calls"):
        configure_breaker(client, trial_calls=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="open_for"):
        configure_breaker(client, open_for=-1)
    with pytest.raises(ValueError, match="max_open_for"):
        configure_breaker(client, open_for=2, max_open_for=1)
    settings = configure_breaker(client, failures=2, open_for=0.25, trial_calls=3)
    assert settings == BreakerSettings(failures=2, open_for=0.25, max_open_for=5.0, trial_calls=3)
    assert executor_for(client).breaker_settings == settings
    assert configure_breaker(client, open_for=9).max_open_for == 9


@pytest.mark.real_only
async def test_configured_failures_open_the_circuit_on_a_dead_server() -> None:
    client = aioredis.Redis(port=free_port(), socket_connect_timeout=TIMEOUT)
    configure_breaker(client, failures=2, open_for=30.0)
    cache = Cache(client, namespace="br", timeout=TIMEOUT)
    try:
        for _ in range(2):
            with pytest.raises(RedisUnavailable) as info:
                await cache.delete("k")
            assert not isinstance(info.value, CircuitOpen)
        with pytest.raises(CircuitOpen):
            await cache.delete("k")
        assert client_stats(client).breakers == {"": "open"}
        configure_breaker(client)  # new settings: closed again
        assert client_stats(client).breakers == {"": "closed"}
    finally:
        await client.aclose()


# -- one breaker per cluster node ------------------------------------------------------


def _require_binaries() -> None:
    if redis_server_binary() is None:
        if in_ci():
            pytest.fail("redis-server is required in CI", False)
        pytest.skip("redis-server is not on PATH")


def _node_of(client: Any, key: bytes) -> str:
    name: str = client.nodes_manager.get_node_from_slot(key_slot(key)).name
    return name


async def _keys_by_node(client: Any, cache: Cache, count: int) -> dict[str, list[str]]:
    by_node: dict[str, list[str]] = {}
    values = {f"k{i}": i for i in range(count)}
    await cache.set_many(values)
    for key in values:
        by_node.setdefault(_node_of(client, f"bn:{{{key}}}".encode()), []).append(key)
    return by_node


@pytest.mark.real_only
async def test_a_dead_master_fails_only_its_own_keys() -> None:
    _require_binaries()
    async with private_cluster() as nodes:
        client = aioredis.RedisCluster(host="127.0.0.1", port=nodes[0].port)
        try:
            await client.initialize()
            configure_breaker(client, failures=3, open_for=0.3)
            cache = Cache(client, namespace="bn", timeout=TIMEOUT)
            limiter = RateLimiter(client, limit=1000, window=60, timeout=TIMEOUT, fail_open=False)
            by_node = await _keys_by_node(client, cache, 60)
            assert len(by_node) == 3
            dead_node = nodes[2]
            dead = f"127.0.0.1:{dead_node.port}"
            healthy = [k for name, keys in by_node.items() if name != dead for k in keys]
            doomed = by_node[dead]
            assert await cache.get(healthy[0]) is not None  # the slot map is loaded

            dead_node.kill()
            refused = 0
            for _ in range(20):
                # Lone reads, batched reads (MGETs to every node at once) and scripts.
                for key in healthy[:5]:
                    assert await cache.get(key) == int(key[1:])
                got = await asyncio.gather(*(cache.get(k, default=None) for k in healthy))
                assert got == [int(k[1:]) for k in healthy]
                assert (await limiter.hit(healthy[0])).allowed
                assert not (await limiter.hit(healthy[0])).degraded
                # The dead shard's keys fail open (a cache read) or raise (a delete).
                assert await cache.get(doomed[0], default="gone") == "gone"
                try:
                    await cache.delete(doomed[0])
                except CircuitOpen:
                    refused += 1
                except RedisUnavailable:
                    pass
                else:
                    pytest.fail("a delete on a dead master succeeded")
            assert refused > 0  # its breaker opened...
            states = client_stats(client).breakers
            assert states[dead] in {"open", "half_open"}
            for name in by_node:
                if name != dead:
                    assert states[name] == "closed"  # ...and no other one did

            # Back on the same port with its node id (nodes.conf kept): its keys work
            # again once a trial goes through.
            await dead_node.start()
            await wait_ready(nodes)
            for _ in range(100):
                try:
                    await cache.delete(doomed[0])
                except RedisUnavailable:
                    await asyncio.sleep(0.1)
                    continue
                break
            await cache.set(doomed[0], "back")
            assert await cache.get(doomed[0]) == "back"
            assert client_stats(client).breakers[dead] == "closed"
        finally:
            await client.aclose()


@pytest.mark.real_only
async def test_a_stalled_master_opens_its_own_breaker(private_server: RedisProcess) -> None:
    # A node that stops answering (SIGSTOP-like: its socket accepts, nothing comes
    # back) counts a failure per timed-out call, like one that refuses.
    _require_binaries()
    async with private_cluster() as nodes:
        client = aioredis.RedisCluster(host="127.0.0.1", port=nodes[0].port)
        try:
            await client.initialize()
            configure_breaker(client, failures=2, open_for=30.0)
            cache = Cache(client, namespace="bn", timeout=TIMEOUT)
            by_node = await _keys_by_node(client, cache, 30)
            stalled_node = nodes[1]
            stalled = f"127.0.0.1:{stalled_node.port}"
            key = by_node[stalled][0]
            other = next(k for name, ks in by_node.items() if name != stalled for k in ks)
            assert stalled_node._process is not None
            stalled_node._process.send_signal(19)  # SIGSTOP
            try:
                for _ in range(2):
                    with pytest.raises(RedisUnavailable) as info:
                        await cache.delete(key)
                    assert not isinstance(info.value, CircuitOpen)
                with pytest.raises(CircuitOpen):
                    await cache.delete(key)
                assert await cache.get(other) is not None
                assert client_stats(client).breakers[stalled] == "open"
                # A batch over every node times out on the stalled one: the others'
                # replies were read, its connection (replies unread) closed.
                configure_breaker(client, failures=1000)
                keys = [k for ks in by_node.values() for k in ks]
                got = await asyncio.gather(*(cache.get(k, default="miss") for k in keys))
                assert "miss" in got
            finally:
                stalled_node._process.send_signal(18)  # SIGCONT
            # Nothing unread is left to be handed to the wrong caller: once the node
            # is back in the cluster (it may answer CLUSTERDOWN for a moment after a
            # pause longer than the node timeout), every read gets its own value.
            await wait_ready(nodes)
            # (The DELs of `key` sent during the stall ran when it resumed.)
            keys = [k for k in keys if k != key]
            for _ in range(50):
                got = await asyncio.gather(*(cache.get(k, default="miss") for k in keys))
                assert set(got) - {"miss"} <= {int(k[1:]) for k in keys}
                for key, value in zip(keys, got, strict=True):
                    assert value in ("miss", int(key[1:]))
                if "miss" not in got:
                    break
                await asyncio.sleep(0.1)
            assert got == [int(k[1:]) for k in keys]
        finally:
            await client.aclose()
