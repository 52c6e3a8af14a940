"""Cache-aside behaviour, on fakeredis, Redis and Redis Cluster."""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis import Redis as SyncRedis

from aiocache_patterns import (
    Cache,
    MsgpackSerializer,
    PickleSerializer,
    SerializationError,
)
from tests._backends import Backend
from tests._helpers import all_keys, ttls_ms


class FakeDB:
    """The seed's "database": counts reads so tests can see the cache working."""

    def __init__(self) -> None:
        self.posts: dict[int, dict[str, Any]] = {1: {"id": 1, "title": "Hello"}}
        self.reads = 0

    async def fetch_post(self, post_id: int) -> dict[str, Any] | None:
        self.reads += 1
        await asyncio.sleep(0.001)
        return self.posts.get(post_id)

    async def update_post(self, post_id: int, title: str) -> None:
        self.posts[post_id] = {"id": post_id, "title": title}


async def test_seed_get_post_update_post_flow(redis: Any) -> None:
    db = FakeDB()
    cache = Cache(redis, namespace="blog", ttl=3600)

    @cache.cached(key="post:{post_id}")
    async def get_post(post_id: int) -> dict[str, Any] | None:
        return await db.fetch_post(post_id)

    async def update_post(post_id: int, title: str) -> None:
        await db.update_post(post_id, title)
        assert await get_post.invalidate(post_id=post_id)

    assert await get_post(1) == {"id": 1, "title": "Hello"}
    assert await get_post(1) == {"id": 1, "title": "Hello"}
    assert db.reads == 1
    await update_post(1, "Edited")
    assert await get_post(1) == {"id": 1, "title": "Edited"}
    assert db.reads == 2
    assert await get_post(post_id=1) == {"id": 1, "title": "Edited"}
    assert db.reads == 2
    # A missing post is cached as None too: the database is not asked again.
    assert await get_post(99) is None
    assert await get_post(99) is None
    assert db.reads == 3
    assert not await get_post.invalidate(post_id=12345)


async def test_every_key_has_a_ttl_no_longer_than_asked(redis: Any) -> None:
    cache = Cache(redis, namespace="ttl", ttl=60)
    await cache.set("default", 1)
    await cache.set("short", 2, ttl=5)
    await cache.set("td", 3, ttl=timedelta(seconds=7.5))
    await cache.set_many({"m1": 1, "m2": 2}, ttl=9)

    async def load() -> int:
        return 4

    await cache.get_or_load("loaded", load, ttl=11)
    await cache.write_through("written", 5, _noop_writer, ttl=13)
    expected = {
        "default": 60,
        "short": 5,
        "td": 7.5,
        "m1": 9,
        "m2": 9,
        "loaded": 11,
        "written": 13,
    }
    ttls = await ttls_ms(redis)
    assert len(ttls) == len(expected)
    for name, ttl in expected.items():
        pttl = ttls[b"ttl:{" + name.encode() + b"}"]
        assert 0 < pttl <= ttl * 1000, (name, pttl)
        assert pttl > ttl * 1000 - 5000, (name, pttl)


async def _noop_writer(value: Any) -> None:
    return None


async def test_none_is_cached_and_distinguishable_from_a_miss(redis: Any) -> None:
    cache = Cache(redis, namespace="n")
    missing = object()
    assert await cache.get("k", missing) is missing
    await cache.set("k", None)
    assert await cache.get("k", missing) is None
    calls = 0

    async def loader() -> Any:
        nonlocal calls
        calls += 1
        return None

    assert await cache.get_or_load("l", loader) is None
    assert await cache.get_or_load("l", loader) is None
    assert calls == 1
    assert cache.stats.hits == 2


async def test_get_many_returns_exactly_the_present_keys(redis: Any) -> None:
    cache = Cache(redis, namespace="many")
    await cache.set_many({f"k{i}": {"i": i} for i in range(50)})
    keys = [f"k{i}" for i in range(60)]
    found = await cache.get_many(keys)
    assert found == {f"k{i}": {"i": i} for i in range(50)}
    assert cache.stats.hits == 50
    assert cache.stats.misses == 10
    assert await cache.get_many([]) == {}
    # bytes keys come back as the caller gave them
    assert await cache.get_many([b"k1", "k1"]) == {b"k1": {"i": 1}, "k1": {"i": 1}}


async def test_get_many_is_one_round_trip(redis: Any) -> None:
    from aiocache_patterns._redis.executor import executor_for

    cache = Cache(redis, namespace="rt")
    await cache.set_many({f"k{i}": i for i in range(100)})
    executor = executor_for(redis)
    before = executor.round_trips
    found = await cache.get_many(f"k{i}" for i in range(100))
    assert len(found) == 100
    assert executor.round_trips - before == 1


async def test_corrupt_bytes_yield_a_fresh_load(
    redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cache = Cache(redis, namespace="c")
    await redis.set(b"c:{k}", b"\x00garbage\xff")
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        return "fresh"

    with caplog.at_level(logging.WARNING, logger="aiocache_patterns"):
        assert await cache.get("k") is None
        assert await cache.get_or_load("k", loader) == "fresh"
    assert calls == 1
    assert cache.stats.decode_errors == 2
    assert sum("cannot be decoded" in r.getMessage() for r in caplog.records) == 1
    # overwritten: the next read is a hit
    assert await cache.get("k") == "fresh"
    assert await redis.get(b"c:{k}") != b"\x00garbage\xff"


async def test_thousand_concurrent_misses_make_one_load(backend: Backend) -> None:
    client = await backend.client()  # a default pool: redis-py raises past 100 connections
    cache = Cache(client, namespace="stampede")
    calls = 0

    async def loader() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return {"v": 1}

    results = await asyncio.gather(
        *(cache.get_or_load("hot", loader) for _ in range(1000)), return_exceptions=True
    )
    assert calls == 1
    assert results == [{"v": 1}] * 1000
    assert cache.stats.errors == 0
    assert cache.stats.loads == 1
    assert cache.stats.coalesced == 999


async def test_ten_thousand_concurrent_reads_on_a_default_pool(redis: Any) -> None:
    cache = Cache(redis, namespace="big")
    await cache.set_many({f"k{i}": i for i in range(100)})

    async def read(i: int) -> Any:
        if i % 2:
            return await cache.get(f"k{i % 100}")

        async def loader() -> int:
            return i % 100

        return await cache.get_or_load(f"k{i % 100}", loader)

    results = await asyncio.gather(*(read(i) for i in range(10_000)), return_exceptions=True)
    assert results == [i % 100 for i in range(10_000)]
    assert cache.stats.errors == 0


async def test_cancelling_one_of_ten_waiters(redis: Any) -> None:
    cache = Cache(redis, namespace="cancel")
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "value"

    tasks = [asyncio.create_task(cache.get_or_load("k", loader)) for _ in range(10)]
    await asyncio.sleep(0.02)
    tasks[0].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == ["value"] * 9
    assert calls == 1
    assert await cache.get("k") == "value"


async def test_loader_errors_reach_every_waiter_and_are_not_cached(redis: Any) -> None:
    cache = Cache(redis, namespace="err")
    calls = 0

    async def failing() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise LookupError("db down")

    results = await asyncio.gather(
        *(cache.get_or_load("k", failing) for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(r, LookupError) for r in results)
    assert calls == 1
    assert await all_keys(redis) == []

    async def ok() -> str:
        return "ok"

    assert await cache.get_or_load("k", ok) == "ok"


async def test_decode_responses_client_works_the_same(redis_decoded: Any) -> None:
    cache = Cache(redis_decoded, namespace="dec", serializer=MsgpackSerializer())
    value = {"bin": b"\xff\x00", "s": "é", "n": [1, 2.5, None]}
    await cache.set("k", value)
    assert await cache.get("k") == value
    assert await cache.get_many(["k", "absent"]) == {"k": value}
    assert await cache.delete("k", "absent") == 1
    assert await cache.get("k") is None


async def test_write_through_writes_source_first(redis: Any) -> None:
    cache = Cache(redis, namespace="wt")
    db: dict[str, Any] = {}

    async def writer(value: Any) -> None:
        db["k"] = value

    await cache.write_through("k", {"v": 1}, writer)
    assert db == {"k": {"v": 1}}
    assert await cache.get("k") == {"v": 1}

    async def failing_writer(value: Any) -> None:
        raise RuntimeError("constraint violated")

    with pytest.raises(RuntimeError, match="constraint"):
        await cache.write_through("k", {"v": 2}, failing_writer)
    assert await cache.get("k") == {"v": 1}  # the cache is as it was

    called = False

    async def spy(value: Any) -> None:
        nonlocal called
        called = True

    with pytest.raises(SerializationError):
        await cache.write_through("k", {1, 2}, spy)
    assert not called  # a value the cache cannot hold is refused before the write


async def test_delete_counts_and_invalidates(redis: Any) -> None:
    cache = Cache(redis, namespace="del")
    await cache.set_many({"a": 1, "b": 2, "c": 3})
    assert await cache.delete("a", "b", "zzz") == 2
    assert await cache.delete() == 0
    assert await cache.get_many(["a", "b", "c"]) == {"c": 3}


async def test_invalidation_during_a_load_is_not_undone(redis: Any) -> None:
    """A load that started before an invalidation must not write its older value after it."""
    cache = Cache(redis, namespace="race")
    gate = asyncio.Event()
    reading = asyncio.Event()

    async def slow_old_read() -> str:
        reading.set()
        await gate.wait()
        return "old"

    task = asyncio.create_task(cache.get_or_load("k", slow_old_read))
    await reading.wait()  # the load has started (a fixed sleep lost the race on a busy machine)
    await cache.write_through("k", "new", _noop_writer)
    gate.set()
    assert await task == "old"  # the caller gets what it loaded...
    assert await cache.get("k") == "new"  # ...but the cache keeps the newer write


async def test_cached_decorator_keys_and_signature(redis: Any) -> None:
    cache = Cache(redis, namespace="dec")
    calls: list[tuple[int, str]] = []

    @cache.cached()
    async def compute(a: int, b: str = "x") -> str:
        calls.append((a, b))
        return f"{a}{b}"

    assert await compute(1) == "1x"
    assert await compute(1, "x") == "1x"
    assert await compute(a=1, b="x") == "1x"
    assert await compute(1, "y") == "1y"
    assert calls == [(1, "x"), (1, "y")]
    assert compute.__name__ == "compute"
    assert await compute.invalidate(1)
    assert await compute(1) == "1x"
    assert len(calls) == 3

    class Obj:
        pass

    @cache.cached()
    async def takes_object(o: Obj) -> int:
        return 1

    with pytest.raises(TypeError, match="pass key="):
        await takes_object(Obj())

    with pytest.raises(TypeError, match="unexpected keyword"):
        await compute(1, c=2)  # type: ignore[call-arg]


def test_cached_decorator_bad_definitions(redis: Any) -> None:
    cache = Cache(redis, namespace="bad")
    with pytest.raises(ValueError, match="not a parameter"):

        @cache.cached(key="post:{nope}")
        async def f(post_id: int) -> int:
            return post_id

    with pytest.raises(ValueError, match="must name parameters"):

        @cache.cached(key="post:{}")
        async def g(post_id: int) -> int:
            return post_id

    with pytest.raises(TypeError, match="async function"):

        @cache.cached()  # type: ignore[arg-type]
        def h(post_id: int) -> int:
            return post_id

    with pytest.raises(ValueError, match="ttl"):
        cache.cached(ttl=0)


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), 0.0001, timedelta(0)])
def test_bad_ttl_is_refused_at_construction(redis: Any, ttl: Any) -> None:
    with pytest.raises(ValueError, match="ttl"):
        Cache(redis, ttl=ttl)


@pytest.mark.parametrize("ttl", ["10", True, None, [1]])
def test_ttl_of_the_wrong_type(redis: Any, ttl: Any) -> None:
    with pytest.raises(TypeError, match="ttl"):
        Cache(redis, ttl=ttl)


async def test_bad_arguments_name_themselves(redis: Any) -> None:
    cache = Cache(redis, namespace="args")

    async def loader() -> int:
        return 1

    with pytest.raises(ValueError, match="ttl"):
        await cache.set("k", 1, ttl=0)
    with pytest.raises(ValueError, match="ttl"):
        await cache.get_or_load("k", loader, ttl=-5)
    with pytest.raises(TypeError, match="loader must be callable"):
        await cache.get_or_load("k", "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="loader must be an async function"):
        await cache.get_or_load("k", lambda: 1)  # type: ignore[arg-type,return-value]
    with pytest.raises(SerializationError, match="not JSON-serializable"):
        await cache.set("k", {1, 2, 3})
    with pytest.raises(TypeError, match="key must be str or bytes"):
        await cache.get(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key must be str or bytes"):
        await cache.set(None, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key must not be empty"):
        await cache.get("")
    with pytest.raises(TypeError, match="writer must be callable"):
        await cache.write_through("k", 1, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="keys must be an iterable"):
        await cache.get_many("abc")
    with pytest.raises(TypeError, match="mapping must be a mapping"):
        await cache.set_many([("a", 1)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_value_bytes"):
        await Cache(redis, max_value_bytes=10).set("k", "x" * 100)
    assert await all_keys(redis) == []  # nothing was written by any of that


def test_constructor_checks(redis: Any) -> None:
    with pytest.raises(TypeError, match="redis must be"):
        Cache(object())
    with pytest.raises(TypeError, match="synchronous"):
        Cache(SyncRedis())
    with pytest.raises(TypeError, match="serializer"):
        Cache(redis, serializer=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fail_open"):
        Cache(redis, fail_open="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        Cache(redis, timeout=0)
    with pytest.raises(ValueError, match="namespace"):
        Cache(redis, namespace="a{b}")


async def test_huge_and_binary_keys(redis: Any) -> None:
    cache = Cache(redis, namespace="keys")
    huge = "k" * 1_000_000
    await cache.set(huge, "big key")
    assert await cache.get(huge) == "big key"
    weird = b"\x00\n{}}{ \xff"
    await cache.set(weird, "weird")
    assert await cache.get(weird) == "weird"
    assert await cache.get(huge + "x") is None
    assert all(len(k) < 200 for k in await all_keys(redis))


async def test_signed_pickle_cache_round_trips(redis: Any) -> None:
    secret = secrets.token_bytes(32)
    cache = Cache(redis, namespace="pk", serializer=PickleSerializer(secret))
    await cache.set("k", {"a": (1, 2), "b": {3}})
    assert await cache.get("k") == {"a": (1, 2), "b": {3}}
    forger = Cache(redis, namespace="pk", serializer=PickleSerializer(secrets.token_bytes(32)))
    await forger.set("k", "forged")
    assert await cache.get("k") is None  # refused, counted, a miss
    assert cache.stats.decode_errors == 1


async def test_stats_count_each_case(redis: Any) -> None:
    cache = Cache(redis, namespace="stats")

    async def loader() -> int:
        await asyncio.sleep(0.01)
        return 1

    await asyncio.gather(*(cache.get_or_load("k", loader) for _ in range(3)))
    await cache.get("k")
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.loads, stats.coalesced) == (1, 3, 1, 2)
    with pytest.raises(AttributeError):
        stats.hits = 5  # type: ignore[misc]


async def test_async_with_and_aclose(redis: Any) -> None:
    async with Cache(redis, namespace="ctx") as cache:
        await cache.set("k", 1)
        assert await cache.get("k") == 1


async def test_expired_entries_are_misses(redis: Any) -> None:
    cache = Cache(redis, namespace="exp", ttl=0.05)
    await cache.set("k", 1)
    assert await cache.get("k") == 1
    await asyncio.sleep(0.1)
    assert await cache.get("k") is None


def test_default_pool_really_is_bounded() -> None:
    """The premise of the 10,000-caller tests: redis-py's default pool raises past 100."""
    pool = aioredis.Redis().connection_pool
    assert pool.max_connections == 100
