"""A full Redis (maxmemory reached, noeviction) is a degraded Redis, not a command error.

Redis answers writes that add data with an ``OOM`` error reply; the executor
turns it into :class:`RedisOutOfMemory`, a :class:`RedisUnavailable`, so every
fail-open path treats it like a timeout. Reads and deletes still work. The
server answered, so the circuit breaker stays closed.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from aiocache_patterns import RedisCommandError, RedisOutOfMemory, RedisUnavailable
from aiocache_patterns._redis.executor import executor_for
from aiocache_patterns._redis.scripts import Script
from tests._servers import RedisProcess, redis_full

WRITE = Script("test_oom_write", b"return redis.call('SET', KEYS[1], ARGV[1])")


async def test_an_oom_reply_is_redis_out_of_memory_alone_and_batched(
    private_server: RedisProcess,
) -> None:
    client = aioredis.Redis(port=private_server.port)
    try:
        await client.set(b"t:{old}", b"v")
        ex = executor_for(client)
        async with redis_full(client):
            assert issubclass(RedisOutOfMemory, RedisUnavailable)
            assert not issubclass(RedisOutOfMemory, RedisCommandError)
            for _ in range(8):  # more than the breaker's threshold
                with pytest.raises(RedisOutOfMemory):
                    await ex.command("SET", b"t:{k}", b"v", timeout=1.0)
            lone = ex.script(WRITE, [b"t:{k}"], [b"v"], 1.0)
            batched = await asyncio.gather(
                lone,
                ex.script(WRITE, [b"t:{j}"], [b"v"], 1.0),
                ex.get(b"t:{old}", 1.0),
                return_exceptions=True,
            )
            assert isinstance(batched[0], RedisOutOfMemory)
            assert isinstance(batched[1], RedisOutOfMemory)
            assert batched[2] == b"v"  # reads still work, in the same batch
            results = await ex.commands([("SET", b"t:{a}", b"1"), ("DEL", b"t:{old}")], 1.0)
            assert isinstance(results[0], RedisOutOfMemory)
            assert results[1] == 1  # deletes still work
            # The server answered every time: the breaker never opened.
            assert await ex.get(b"t:{k}", 1.0) is None
    finally:
        await client.aclose()
