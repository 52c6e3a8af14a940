"""Tag invalidation: versions per tag, every process, on fakeredis, Redis and Cluster."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest

from aiocache_patterns import Cache, RedisUnavailable
from aiocache_patterns._redis.executor import executor_for
from tests._backends import Backend, all_keys
from tests._helpers import ttls_ms


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Run this test's cyclic garbage finalizers now (see tests/cache/test_faults.py)."""
    yield
    gc.collect()


def counting(value: Any = "v") -> Any:
    calls = []

    async def loader() -> Any:
        calls.append(1)
        return f"{value}{len(calls)}"

    loader.calls = calls  # type: ignore[attr-defined]
    return loader


async def test_invalidate_tags_drops_every_entry_with_the_tag(redis: Any) -> None:
    cache = Cache(redis, namespace="tg", ttl=60)
    await cache.set("a", 1, tags=("user:42", "posts"))
    await cache.set("b", 2, tags=("user:42",))
    await cache.set("c", 3, tags=("user:43", "posts"))
    await cache.set("d", 4)
    assert await cache.get_many(["a", "b", "c", "d"]) == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert await cache.invalidate_tags("user:42") == 1
    assert await cache.get("a", "MISS") == "MISS"
    assert await cache.get("b", "MISS") == "MISS"
    assert await cache.get_many(["a", "b", "c", "d"]) == {"c": 3, "d": 4}
    await cache.invalidate_tags("posts")
    assert await cache.get_many(["a", "b", "c", "d"]) == {"d": 4}
    assert await cache.invalidate_tags("never-used") == 0


async def test_get_or_load_with_tags_reloads_after_invalidation(redis: Any) -> None:
    cache = Cache(redis, namespace="tg", ttl=60)
    loader = counting()
    assert await cache.get_or_load("k", loader, tags=("t1", "t2")) == "v1"
    assert await cache.get_or_load("k", loader, tags=("t1", "t2")) == "v1"
    assert await cache.get("k") == "v1"  # a plain read checks the entry's tags too
    await cache.invalidate_tags("t2")
    assert await cache.get("k", "MISS") == "MISS"
    assert await cache.get_or_load("k", loader, tags=("t1", "t2")) == "v2"
    assert await cache.get_or_load("k", loader, tags=("t2", "t1", "t1")) == "v2"  # a set
    assert len(loader.calls) == 2


async def test_other_processes_see_the_invalidation(backend: Backend) -> None:
    one = Cache(await backend.client(), namespace="tg", ttl=60)
    two = Cache(await backend.client(decode_responses=True), namespace="tg", ttl=60)
    loader = counting()
    assert await one.get_or_load("k", loader, tags=("user:1",)) == "v1"
    assert await two.get_or_load("k", loader, tags=("user:1",)) == "v1"
    assert await two.get("k") == "v1"
    await two.invalidate_tags("user:1")
    assert await one.get("k", "MISS") == "MISS"
    assert await one.get_or_load("k", loader, tags=("user:1",)) == "v2"
    assert await two.get_or_load("k", loader, tags=("user:1",)) == "v2"
    await one.invalidate_tags("user:1")
    assert await two.get_many(["k"]) == {}


async def test_decorator_tag_templates(redis: Any) -> None:
    cache = Cache(redis, namespace="tg", ttl=60)
    loads: list[int] = []

    @cache.cached(key="post:{post_id}", tags=("user:{author_id}", "posts"))
    async def get_post(post_id: int, author_id: int) -> dict[str, int]:
        loads.append(post_id)
        return {"id": post_id, "author": author_id}

    assert get_post.tags_for(1, 42) == ["user:42", "posts"]
    assert await get_post(1, 42) == {"id": 1, "author": 42}
    assert await get_post(2, 43) == {"id": 2, "author": 43}
    assert await get_post(1, 42) == {"id": 1, "author": 42}
    assert loads == [1, 2]
    await cache.invalidate_tags(*get_post.tags_for(1, 42)[:1])
    assert await get_post(1, 42) == {"id": 1, "author": 42}
    assert await get_post(2, 43) == {"id": 2, "author": 43}
    assert loads == [1, 2, 1]
    await cache.invalidate_tags("posts")
    await get_post(1, 42)
    await get_post(2, 43)
    assert loads == [1, 2, 1, 1, 2]


async def test_a_load_overtaken_by_an_invalidation_is_not_readable(redis: Any) -> None:
    cache = Cache(redis, namespace="tg", ttl=60)
    other = Cache(redis, namespace="tg", ttl=60)
    version = 0

    async def loader() -> int:
        nonlocal version
        version += 1
        seen = version
        if seen == 1:  # the source changes while we read it, and says so
            await other.invalidate_tags("t")
        return seen

    assert await cache.get_or_load("k", loader, tags=("t",)) == 1  # returned, but stale
    assert await other.get("k", "MISS") == "MISS"
    assert await cache.get_or_load("k", loader, tags=("t",)) == 2
    assert await other.get_or_load("k", loader, tags=("t",)) == 2


async def test_a_missing_version_never_revives_an_old_entry(redis: Any) -> None:
    """Version keys may expire or be evicted: an entry that names a version that is
    gone stays invalid, even after the tag has a version again."""
    cache = Cache(redis, namespace="tg", ttl=60)
    await cache.set("k", "old", tags=("t",))
    old_entry = await redis.get(b"tg:{k}")
    assert old_entry is not None
    (version_key,) = [k for k in await all_keys(redis) if b"#t:" in k]
    await redis.delete(version_key)  # as if evicted
    assert await cache.get("k", "MISS") == "MISS"
    await cache.set("other", "x", tags=("t",))  # the tag gets a version again
    assert await cache.get("other") == "x"
    await redis.set(b"tg:{k}", old_entry, px=60_000)  # the old bytes, put back
    assert await cache.get("k", "MISS") == "MISS"
    assert await cache.get_or_load("k", counting(), tags=("t",)) == "v1"


async def test_every_key_has_a_ttl_and_versions_outlive_entries(redis: Any) -> None:
    cache = Cache(redis, namespace="tg", ttl=5, stale_ttl=5)
    await cache.set("short", 1, tags=("t",), ttl=1)
    await cache.get_or_load("long", counting(), ttl=100, tags=("t", "u"))

    @cache.cached(key="f:{x}", tags=("t",), ttl=lambda r: 200)
    async def f(x: int) -> int:
        return x

    await f(1)
    ttls = await ttls_ms(redis)
    assert ttls
    assert all(ttl > 0 for ttl in ttls.values()), ttls
    versions = {k: v for k, v in ttls.items() if b"#t:" in k}
    assert len(versions) == 2
    await asyncio.sleep(0.05)  # the version's TTL after a callable ttl is raised in the background
    ttls = await ttls_ms(redis)
    assert ttls[b"tg:{#t:t}"] >= ttls[b"tg:{" + f.key_for(1).encode() + b"}"] - 1000
    assert ttls[b"tg:{#t:u}"] >= ttls[b"tg:{long}"] - 1000


async def test_a_tagged_hit_is_one_round_trip_per_node(redis: Any) -> None:
    cache = Cache(redis, namespace="tg", ttl=60)
    await cache.get_or_load("k", counting(), tags=("a", "b"))
    executor = executor_for(redis)
    before = executor.round_trips
    assert await cache.get_or_load("k", counting(), tags=("a", "b")) == "v1"
    # One pipeline per node: the entry's node and the version keys' nodes.
    assert executor.round_trips - before == (1 if not executor.is_cluster else 3) or (
        executor.is_cluster and 1 <= executor.round_trips - before <= 3
    )


async def test_concurrent_tagged_hits_share_round_trips(redis: Any) -> None:
    cache = Cache(redis, namespace="tg", ttl=60)
    for i in range(20):
        await cache.set(f"k{i}", i, tags=("a", f"u{i % 3}"))
    executor = executor_for(redis)
    before = executor.round_trips
    results = await asyncio.gather(
        *(cache.get_or_load(f"k{i}", counting(), tags=("a", f"u{i % 3}")) for i in range(20))
    )
    assert results == list(range(20))
    assert executor.round_trips - before <= 3  # one batch: one pipeline per node


async def test_read_with_other_tags_is_a_miss(redis: Any) -> None:
    cache = Cache(redis, namespace="tg", ttl=60)
    await cache.set("k", "untagged")
    loader = counting()
    # Stored without tags: not protected by "t", so a read with "t" loads.
    assert await cache.get_or_load("k", loader, tags=("t",)) == "v1"
    assert await cache.get_or_load("k", loader, tags=("t", "u")) == "v2"
    assert await cache.get_or_load("k", loader) == "v2"  # a plain read: the tags still hold
    await cache.invalidate_tags("u")
    assert await cache.get_or_load("k", loader) == "v3"


async def test_stale_values_of_invalidated_tags_are_never_served(redis: Any) -> None:
    now = [1000.0]
    cache = Cache(redis, namespace="tg", ttl=1, stale_ttl=60, clock=lambda: now[0])
    assert await cache.get_or_load("k", counting(), tags=("t",)) == "v1"
    now[0] += 2  # stale, within the grace

    async def failing() -> str:
        raise RuntimeError("source down")

    assert await cache.get_or_load("k", failing, tags=("t",)) == "v1"  # stale-if-error
    await cache.invalidate_tags("t")
    with pytest.raises(RuntimeError, match="source down"):
        await cache.get_or_load("k", failing, tags=("t",))


async def test_concurrent_misses_share_one_load(redis: Any) -> None:
    cache = Cache(redis, namespace="tg", ttl=60)
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "v"

    results = await asyncio.gather(
        *(cache.get_or_load("k", loader, tags=("t",)) for _ in range(50))
    )
    assert results == ["v"] * 50
    assert calls == 1


@pytest.mark.parametrize(
    ("tags", "error"),
    [
        ("single", TypeError),
        ((1,), TypeError),
        (("",), ValueError),
        (("x" * 2000,), ValueError),
        ([f"t{i}" for i in range(65)], ValueError),
    ],
)
async def test_bad_tags_are_refused(redis: Any, tags: Any, error: type[Exception]) -> None:
    cache = Cache(redis, namespace="tg")
    with pytest.raises(error, match="tag"):
        await cache.set("k", 1, tags=tags)
    with pytest.raises(error, match="tag"):
        await cache.get_or_load("k", counting(), tags=tags)
    if not isinstance(tags, str):
        with pytest.raises(error, match="tag"):
            await cache.invalidate_tags(*tags)
    with pytest.raises(TypeError, match="tag"):
        cache.cached(key="k:{x}", tags="single")(_f)
    assert await all_keys(redis) == []


async def _f(x: int) -> int:
    return x


async def test_a_tag_never_reaches_a_user_key(redis: Any) -> None:
    cache = Cache(redis, namespace="tg", ttl=60)
    await cache.set("#t:t", "user value")
    await cache.set("k", 1, tags=("t",))
    assert await cache.get("#t:t") == "user value"
    await cache.invalidate_tags("t")
    assert await cache.get("#t:t") == "user value"


async def test_down_tagged_reads_fail_open_and_invalidation_raises() -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeAsyncRedis(server=server)
    cache = Cache(client, namespace="tg", ttl=60, timeout=0.2)
    await cache.set("k", "v", tags=("t",))
    server.connected = False
    loader = counting()
    assert await cache.get_or_load("k", loader, tags=("t",)) == "v1"
    assert await cache.get("k", "MISS") == "MISS"
    await cache.set("k", "w", tags=("t",))  # skipped, counted
    with pytest.raises(RedisUnavailable):
        await cache.invalidate_tags("t")
    assert cache.stats.errors >= 3
    server.connected = True
    await asyncio.sleep(0.6)  # past the breaker's first cool-down
    assert await cache.get("k") == "v"
    await client.aclose()


async def test_forged_tag_sections_are_misses_and_read_nothing_else(redis: Any) -> None:
    import struct

    from aiocache_patterns.cache._tags import section

    cache = Cache(redis, namespace="tg", ttl=60)
    await redis.set(b"secret", b"s" * 32)
    header = b"\xac\x02" + struct.pack(">ddd", 0.0, 0.0, 1e12)
    foreign = header + section([(b"secret", b"s" * 32)]) + b'"forged"'
    too_many = header + struct.pack(">H", 60_000) + b'"forged"'
    for raw in (foreign, too_many):
        await redis.set(b"tg:{k}", raw)
        assert await cache.get("k", "MISS") == "MISS"
        assert await cache.get_many(["k"]) == {}
        assert await cache.get_or_load("k", counting()) == "v1"
    assert cache.stats.decode_errors >= 1


async def test_callers_after_an_invalidation_do_not_share_an_older_load(redis: Any) -> None:
    cache = Cache(redis, namespace="tg", ttl=60)
    release = asyncio.Event()
    calls = 0

    async def loader() -> int:
        nonlocal calls
        calls += 1
        mine = calls
        if mine == 1:
            await release.wait()  # the source changes while this load runs
        return mine

    first = asyncio.ensure_future(cache.get_or_load("k", loader, tags=("t",)))
    await asyncio.sleep(0.05)
    await cache.invalidate_tags("t")
    second = asyncio.ensure_future(cache.get_or_load("k", loader, tags=("t",)))
    await asyncio.sleep(0.05)
    release.set()
    assert await first == 1  # it was waiting before: it gets the load it joined
    assert await second == 2  # it came after: a load of its own
    assert await cache.get_or_load("k", loader, tags=("t",)) == 2
    assert not cache._loader._tagged_loads  # nothing left behind
