"""RateLimiter against a full Redis (maxmemory reached, noeviction): an OOM reply
is a degraded Redis, like a timeout. The limiter follows ``fail_open``; a refused
write applies nothing, on any of several rates."""

from __future__ import annotations

import logging
from typing import get_args

import pytest
import redis.asyncio as aioredis

from aiocache_patterns import Algorithm, Rate, RateLimiter
from tests._servers import RedisProcess, redis_full

ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)


@pytest.mark.parametrize("fail_open", [True, False])
async def test_a_full_redis_follows_fail_open_and_applies_nothing(
    private_server: RedisProcess, fail_open: bool, caplog: pytest.LogCaptureFixture
) -> None:
    client = aioredis.Redis(port=private_server.port)
    try:
        for algorithm in ALGORITHMS:
            limiter = RateLimiter(
                client,
                rates=[Rate(5, 60), Rate(10, 3600)],
                algorithm=algorithm,
                fail_open=fail_open,
                namespace=algorithm,
            )
            assert (await limiter.hit("used")).allowed  # state on every rate already
            keys_before = sorted(await client.keys("*"))
            async with redis_full(client):
                for key in ("fresh", "used"):
                    result = await limiter.hit(key)
                    assert result.degraded, (algorithm, key)
                    assert result.allowed is fail_open, (algorithm, key)
                    assert result.headers() == ({} if fail_open else {"Retry-After": "1"})
                peek = await limiter.peek("used")  # reads still work
                assert (peek.degraded, peek.remaining) == (False, 4), algorithm
            # nothing was written, on either rate: the refused hits left no trace
            assert sorted(await client.keys("*")) == keys_before, algorithm
            assert (await limiter.peek("used")).remaining == 4, algorithm
            assert (await limiter.peek("fresh")).remaining == 5, algorithm
            stats = limiter.stats
            assert stats.errors == 2
            assert (stats.allowed, stats.denied) == ((3, 0) if fail_open else (1, 2))
    finally:
        await client.aclose()
    # visible: logged, saying which way the limiter decided
    lines = [r.getMessage() for r in caplog.records if r.name == "aiocache_patterns.ratelimit"]
    assert lines
    assert all("full" in line and "maxmemory" in line for line in lines), lines
    expected = "ALLOWING hits" if fail_open else "denying hits"
    assert all(expected in line for line in lines), lines
    levels = {r.levelno for r in caplog.records if r.name == "aiocache_patterns.ratelimit"}
    assert levels == {logging.WARNING}
