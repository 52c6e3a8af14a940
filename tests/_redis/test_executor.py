"""The executor: shared round trips, isolation of callers, bounds, NOSCRIPT, cancellation."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from aiocache_patterns import Cache
from aiocache_patterns._redis import compat as _compat
from aiocache_patterns._redis.executor import executor_for
from aiocache_patterns._redis.scripts import Script
from aiocache_patterns.errors import RedisCommandError
from tests._backends import Backend, all_keys
from tests._helpers import populate

ECHO = Script("test_echo", b"return {KEYS[1], ARGV[1]}")


async def test_concurrent_gets_share_one_round_trip(redis: Any) -> None:
    keys = await populate(redis, 50)
    ex = executor_for(redis)
    before = ex.round_trips
    values = await asyncio.gather(*(ex.get(k, 1.0) for k in keys))
    assert values == [f"v{i}".encode() for i in range(50)]
    # one MGET for the batch (a cluster sends one pipeline, one request per node); without
    # the ready queue to read, the first caller is sent alone and the others batch behind it
    assert ex.round_trips - before == (1 if _compat.FAST_PATHS else 2)


async def test_a_lone_caller_is_sent_at_once(redis: Any) -> None:
    keys = await populate(redis, 3)
    ex = executor_for(redis)
    before = ex.round_trips
    for i, key in enumerate(keys):
        assert await ex.get(key, 1.0) == f"v{i}".encode()
    assert ex.round_trips - before == 3
    assert ex.pending_tasks == 0  # no task was needed


async def test_hot_key_is_read_once_per_tick(redis: Any) -> None:
    await redis.set(b"t:{hot}", b"x")
    ex = executor_for(redis)
    sent: list[tuple[Any, ...]] = []
    original = ex._pipeline

    async def spying_pipeline(commands: list[tuple[Any, ...]], safe: list[bool]) -> list[Any]:
        sent.extend(commands)
        return await original(commands, safe)

    ex._pipeline = spying_pipeline  # type: ignore[method-assign]
    try:
        values = await asyncio.gather(*(ex.get(b"t:{hot}", 1.0) for _ in range(100)))
    finally:
        del ex._pipeline
    assert values == [b"x"] * 100
    assert sent == [("MGET", b"t:{hot}")]


async def test_one_failing_command_does_not_fail_its_neighbours(redis: Any) -> None:
    await redis.set(b"t:{s}", b"string")
    ex = executor_for(redis)
    results = await asyncio.gather(
        ex.command("INCR", b"t:{n}", timeout=1.0),
        ex.command("LPUSH", b"t:{s}", b"x", timeout=1.0),  # WRONGTYPE
        ex.get(b"t:{s}", 1.0),
        ex.script(ECHO, [b"t:{e}"], [b"arg"], 1.0),
        return_exceptions=True,
    )
    assert results[0] == 1
    assert isinstance(results[1], RedisCommandError)
    assert "WRONGTYPE" in str(results[1])
    assert results[2] == b"string"
    assert results[3] == [b"t:{e}", b"arg"]


async def test_commands_returns_errors_in_place(redis: Any) -> None:
    await redis.set(b"t:{s}", b"string")
    ex = executor_for(redis)
    replies = await ex.commands(
        [("SET", b"t:{a}", b"1"), ("LPUSH", b"t:{s}", b"x"), ("GET", b"t:{a}")], 1.0
    )
    assert replies[0] is True  # redis-py's SET callback applies in a pipeline too
    assert isinstance(replies[1], RedisCommandError)
    assert replies[2] == b"1"


async def test_noscript_is_answered_by_loading(backend: Backend) -> None:
    redis = await backend.client()
    ex = executor_for(redis)
    script = Script("test_noscript", b"return ARGV[1] .. '!'")
    # alone, and in a batch, after the server forgot every script
    for _ in range(2):
        await redis.script_flush()
        assert await ex.script(script, [b"t:{x}"], [b"hi"], 1.0) == b"hi!"
        await redis.script_flush()
        got = await asyncio.gather(
            *(ex.script(script, [b"t:{x}"], [str(i)], 1.0) for i in range(5))
        )
        assert got == [f"{i}!".encode() for i in range(5)]


async def test_decoding_client_still_gets_bytes(redis_decoded: Any) -> None:
    await redis_decoded.set("t:{b}", "é")
    ex = executor_for(redis_decoded)
    assert await ex.get(b"t:{b}", 1.0) == "é".encode()
    values = await asyncio.gather(ex.get(b"t:{b}", 1.0), ex.get(b"t:{none}", 1.0))
    assert list(values) == ["é".encode(), None]


async def test_ten_thousand_concurrent_gets_on_a_default_pool(redis: Any) -> None:
    keys = await populate(redis, 100)
    ex = executor_for(redis)
    results = await asyncio.gather(
        *(ex.get(keys[i % 100], 5.0) for i in range(10_000)), return_exceptions=True
    )
    assert results == [f"v{i % 100}".encode() for i in range(10_000)]
    assert ex.in_flight == 0


async def test_random_cancellations_never_cross_results(redis: Any) -> None:
    """CVE-2023-28858/9 class: a cancelled read must never shift replies between callers."""
    keys = await populate(redis, 200)
    ex = executor_for(redis)
    rng = random.Random(1234)
    for _ in range(10):
        tasks = [asyncio.create_task(ex.get(keys[i % 200], 2.0)) for i in range(400)]
        for _ in range(rng.randrange(1, 5)):
            await asyncio.sleep(0)
            for task in rng.sample(tasks, 40):
                task.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        for i, result in enumerate(done):
            if not isinstance(result, asyncio.CancelledError):
                assert result == f"v{i % 200}".encode(), (i, result)
    # afterwards every connection is in sync: each key reads back its own value
    for i in range(0, 200, 7):
        assert await ex.get(keys[i], 1.0) == f"v{i}".encode()
    await asyncio.sleep(0)
    assert ex.pending_tasks == 0
    assert ex.in_flight == 0


async def test_cancelling_the_caller_that_opened_a_batch(redis: Any) -> None:
    if not _compat.FAST_PATHS:
        pytest.skip("without the ready queue the first caller is sent alone, opening no batch")
    keys = await populate(redis, 10)
    ex = executor_for(redis)
    tasks = [asyncio.create_task(ex.get(k, 1.0)) for k in keys]
    await asyncio.sleep(0)  # every task has queued its GET; the first is yielding
    tasks[0].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == [f"v{i}".encode() for i in range(1, 10)]


@pytest.mark.parametrize("bad", [object(), None, "redis://localhost"])
def test_not_a_client(bad: Any) -> None:
    with pytest.raises(TypeError, match="redis must be"):
        executor_for(bad)


async def test_many_scripts_go_as_pipelines_in_flight_together(redis: Any) -> None:
    """50 callers' scripts: two pipelines of 25 sent side by side, not one of 50."""
    ex = executor_for(redis)
    before = ex.round_trips
    got = await asyncio.gather(*(ex.script(ECHO, [b"t:{e}"], [str(i)], 1.0) for i in range(50)))
    assert got == [[b"t:{e}", str(i).encode()] for i in range(50)]
    alone = 0 if _compat.FAST_PATHS else 1  # without the ready queue, the first goes alone
    assert ex.round_trips - before == 2 + alone
    # GETs are not capped that way: 50 of them are one MGET
    await redis.set(b"t:{g}", b"v")
    before = ex.round_trips
    assert await asyncio.gather(*(ex.get(b"t:{g}", 1.0) for _ in range(50))) == [b"v"] * 50
    assert ex.round_trips - before == 1 + alone


async def test_a_key_of_another_type_reads_as_a_miss_alone_or_batched(redis: Any) -> None:
    """MGET answers nil for a key that holds a list; a lone GET gets WRONGTYPE. One
    behaviour for both: a key of the wrong type holds no cache entry."""
    await redis.rpush(b"t:{wt}list", b"x")
    await redis.set(b"t:{wt}str", b"s")
    ex = executor_for(redis)
    assert await ex.get(b"t:{wt}list", 1.0) is None  # alone
    alone_and_batched = await asyncio.gather(
        ex.get(b"t:{wt}list", 1.0), ex.get(b"t:{wt}str", 1.0), ex.get(b"t:{wt}list", 1.0)
    )
    assert list(alone_and_batched) == [None, b"s", None]
    assert await ex.get_many([b"t:{wt}list", b"t:{wt}str"], 1.0) == [None, b"s"]
    # other commands still say what is wrong
    with pytest.raises(RedisCommandError, match="WRONGTYPE"):
        await ex.command("GET", b"t:{wt}list", timeout=1.0)


async def test_a_cache_reads_a_key_of_another_type_as_a_miss(redis: Any) -> None:
    cache = Cache(redis, namespace="wt", fail_open=False)
    await cache.set("k", "v")
    (rkey,) = await all_keys(redis)  # the entry's Redis key, whatever its layout
    await redis.delete(rkey)
    await redis.rpush(rkey, b"x")  # now a list: no cache entry
    missing = object()
    assert await cache.get("k", missing) is missing
    got = await asyncio.gather(cache.get("k", missing), cache.get("k", missing))
    assert list(got) == [missing, missing]
    assert await cache.get_many(["k"]) == {}


async def test_concurrent_get_many_share_one_batch(redis: Any) -> None:
    """Each get_many is one op in the batch: its keys merge into the batch's MGETs
    with the single GETs (repeats read once), and it gets its values in order."""
    ex = executor_for(redis)
    keys = [f"t:{{gm{i}}}".encode() for i in range(6)]
    for i, key in enumerate(keys):
        await redis.set(key, f"v{i}")
    await redis.hset(b"t:{gmhash}", b"f", b"x")
    before = ex.round_trips
    results = await asyncio.gather(
        ex.get_many([keys[0], keys[1], b"t:{gmabsent}"], 1.0),
        ex.get_many([keys[1], keys[2], keys[1]], 1.0),
        ex.get(keys[3], 1.0),
        ex.get_many([keys[4], b"t:{gmhash}", keys[5]], 1.0),
        ex.get_many([], 1.0),
    )
    assert list(results) == [
        [b"v0", b"v1", None],
        [b"v1", b"v2", b"v1"],
        b"v3",
        [b"v4", None, b"v5"],  # another type reads as a miss
        [],
    ]
    alone = 0 if _compat.FAST_PATHS else 1  # without the ready queue, the first goes alone
    assert ex.round_trips - before <= (3 if ex.is_cluster else 1) + alone
    # Alone, too (one MGET on a server; one pipeline per node on a cluster).
    assert await ex.get_many([keys[5], keys[0]], 1.0) == [b"v5", b"v0"]
