"""One warning, at first use, when the server's eviction policy can drop keys a
pattern cannot lose; silence when it cannot tell (CONFIG refused) or need not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import fakeredis
import pytest
import redis.asyncio as aioredis

from aiocache_patterns import Leaderboard, RateLimiter
from aiocache_patterns._redis import eviction
from tests._servers import private_redis, redis_server_binary

pytestmark = pytest.mark.skipif(redis_server_binary() is None, reason="needs redis-server")


@asynccontextmanager
async def server(*args: str) -> AsyncIterator[aioredis.Redis]:
    async with private_redis(*args) as process:
        client = aioredis.Redis(port=process.port)
        try:
            yield client
        finally:
            await client.aclose()


async def settled() -> None:
    """Wait (bounded) until every background check has finished."""
    deadline = time.monotonic() + 5
    while eviction._tasks:
        assert time.monotonic() < deadline, "the eviction check never finished"
        await asyncio.sleep(0.01)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aiocache_patterns.eviction"]


async def test_an_unsafe_policy_is_reported_once_per_client_and_pattern(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with server("--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru") as client:
        for _ in range(3):  # several limiters, many hits: one warning
            limiter = RateLimiter(client, limit=5, window=60)
            assert (await limiter.hit("k")).allowed
        await settled()
        (line,) = warnings(caplog)
        assert "allkeys-lru" in line
        assert "rate limiter" in line
        assert "noeviction" in line

        board: Leaderboard[str] = Leaderboard(client, "scores")
        await board.submit("a", 1)
        await board.submit("b", 2)
        await settled()
        assert len(warnings(caplog)) == 2
        assert "leaderboard" in warnings(caplog)[1]


async def test_volatile_policies_keep_plain_boards_but_not_keys_with_a_ttl(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with server("--maxmemory", "100mb", "--maxmemory-policy", "volatile-lru") as client:
        plain: Leaderboard[str] = Leaderboard(client, "plain")
        await plain.submit("a", 1)  # no TTL on its keys: volatile-* never evicts them
        await settled()
        assert warnings(caplog) == []
        daily: Leaderboard[str] = Leaderboard(client, "daily", period="daily")
        await daily.submit("a", 1)  # its keys have a TTL
        limiter = RateLimiter(client, limit=5, window=60)  # so have these
        await limiter.hit("k")
        await settled()
        found = warnings(caplog)
        assert len(found) == 2
        assert any("periodic leaderboard" in line for line in found)
        assert any("rate limiter" in line for line in found)
        assert all("volatile-lru" in line for line in found)


@pytest.mark.parametrize(
    "args",
    [
        ("--maxmemory", "100mb", "--maxmemory-policy", "noeviction"),
        ("--maxmemory", "0", "--maxmemory-policy", "allkeys-lru"),  # no limit: no eviction
    ],
    ids=["noeviction", "no-maxmemory"],
)
async def test_safe_settings_say_nothing(
    args: tuple[str, ...], caplog: pytest.LogCaptureFixture
) -> None:
    async with server(*args) as client:
        await RateLimiter(client, limit=5, window=60).hit("k")
        await Leaderboard(client, "scores", period="daily").submit("a", 1)
        await settled()
    assert warnings(caplog) == []


async def test_config_refused_by_acl_says_nothing_and_fails_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with server("--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru") as admin:
        await admin.acl_setuser(
            "app",
            enabled=True,
            passwords=["+secret"],
            keys=["*"],
            channels=["*"],
            commands=["+@all", "-config"],
        )
        client = aioredis.Redis(
            port=admin.connection_pool.connection_kwargs["port"], username="app", password="secret"
        )
        try:
            assert (await RateLimiter(client, limit=5, window=60).hit("k")).allowed
            await settled()
        finally:
            await client.aclose()
    assert warnings(caplog) == []


async def test_a_server_without_config_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    client = fakeredis.FakeAsyncRedis()
    assert (await RateLimiter(client, limit=5, window=60).hit("k")).allowed
    await settled()
    assert warnings(caplog) == []
    await client.aclose()
