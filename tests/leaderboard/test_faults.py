"""Leaderboard against a full Redis (maxmemory reached, noeviction): a write that
adds data is refused whole (``RedisOutOfMemory``, a ``RedisUnavailable``) with
nothing half-applied; removals and reads still work."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from aiocache_patterns import Leaderboard, LeaderboardEntry, RedisOutOfMemory
from tests._servers import RedisProcess, redis_full


async def _state(client: Any) -> dict[bytes, Any]:
    """Every key's type and content: what a half-applied write would change."""
    found: dict[bytes, Any] = {}
    for key in sorted(await client.keys("*")):
        kind = await client.type(key)
        if kind == b"zset":
            found[key] = await client.zrange(key, 0, -1, withscores=True)
        elif kind == b"hash":
            found[key] = await client.hgetall(key)
        else:
            found[key] = await client.get(key)
    return found


@pytest.mark.parametrize("rank_style", ["position", "dense"])
async def test_a_full_redis_refuses_writes_whole_and_still_reads_and_removes(
    private_server: RedisProcess, rank_style: Any
) -> None:
    client = aioredis.Redis(port=private_server.port)
    try:
        board: Leaderboard[str] = Leaderboard(client, "full", rank_style=rank_style)
        await board.submit_many({"a": 10, "b": 20, "c": 30})
        before = await _state(client)
        async with redis_full(client):
            for write in (
                board.submit("a", 99),  # an existing member, a new score
                board.submit("new", 5),
                board.submit_many({"x": 1, "y": 2}),
                board.increment("b", 1),
            ):
                with pytest.raises(RedisOutOfMemory):
                    await write
            assert await _state(client) == before  # nothing half-applied
            assert await board.rank("a") == LeaderboardEntry("a", 10, 3)
            assert [e.member for e in await board.top(3)] == ["c", "b", "a"]
            assert await board.remove("c") is True  # a delete frees memory: allowed
        assert await board.size() == 2
        assert await board.submit("a", 99) is True  # room again
    finally:
        await client.aclose()
