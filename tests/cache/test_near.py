"""The near cache: hits from process memory, dropped by Redis client tracking.

Each guarantee of docs/near-cache.md is a test here: server-assisted
invalidation (any writer, any kind of change), read-your-writes, the race
between a delayed read reply and an invalidation (closed by the pending-reads
tickets), losing the invalidation stream (empties and bypasses), expiry,
isolation, the bounds, and a backend without tracking (fakeredis: bypassed,
one warning). Behaviour tests run on every backend; fault tests on a private
server behind ``tests/_proxy.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis as sync_redis
import redis.asyncio as aioredis

from aiocache_patterns import Cache, NearCache
from aiocache_patterns._redis.tracking import InvalidationListener
from aiocache_patterns.cache._near import NearStore
from tests._backends import Backend, Client
from tests._proxy import FaultProxy
from tests._servers import RedisProcess, private_redis, redis_server_binary

MISS = object()


def namespace() -> str:
    return f"near-{uuid.uuid4().hex[:10]}"


def near_of(cache: Cache) -> NearStore:
    near = cache._io.near
    assert near is not None, "this cache has no near store"
    return near


async def eventually(check: Callable[[], Awaitable[bool] | bool], within: float = 5.0) -> None:
    start = time.perf_counter()
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.perf_counter() - start > within:
            pytest.fail(f"condition still false after {within}s")
        await asyncio.sleep(0.01)


async def warm(cache: Cache, key: str) -> None:
    """Read ``key`` until the near cache answers it (the stream is up, the copy kept)."""
    near = near_of(cache)

    async def served_near() -> bool:
        before = cache.stats.near_hits
        await cache.get(key)
        return near.active and cache.stats.near_hits > before

    await eventually(served_near)


@pytest.fixture
async def closing() -> AsyncIterator[Callable[[Any], Any]]:
    made: list[Any] = []

    def register(thing: Any) -> Any:
        made.append(thing)
        return thing

    yield register
    for thing in reversed(made):
        await thing.aclose()


@pytest.fixture
async def server() -> AsyncIterator[RedisProcess]:
    if redis_server_binary() is None:
        pytest.skip("redis-server is not on PATH")
    async with private_redis() as process:
        yield process


# -- settings -----------------------------------------------------------------------


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        NearCache(max_entries=0)
    with pytest.raises(TypeError, match="max_bytes"):
        NearCache(max_bytes=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl"):
        NearCache(ttl=-1)
    with pytest.raises(TypeError, match="keep"):
        NearCache(keep=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="near must be a NearCache"):
        Cache(aioredis.Redis(), near=10_000)  # type: ignore[arg-type]


# -- every backend: hits from memory, invalidated by any writer ----------------------------


async def test_hits_from_memory_and_any_change_drops_them(
    backend: Backend, redis: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "aiocache_patterns.cache")
    ns = namespace()
    cache = Cache(redis, namespace=ns, near=NearCache())
    other = Cache(await backend.client(), namespace=ns)  # another process, as far as Redis knows
    raw = await backend.client()
    try:
        await other.set("k", {"v": 1})
        if backend.is_fake:
            # No tracking: bypassed, with one warning, and every read goes to Redis.
            assert cache._io.near is None
            warnings = [r for r in caplog.records if "near cache bypassed" in r.getMessage()]
            assert len(warnings) == 1
            for _ in range(3):
                assert await cache.get("k") == {"v": 1}
            assert cache.stats.near_hits == 0
            await other.set("k", {"v": 2})
            assert await cache.get("k") == {"v": 2}
            return
        await warm(cache, "k")
        hits = cache.stats.near_hits
        assert await cache.get("k") == {"v": 1}
        assert cache.stats.near_hits == hits + 1
        rkey = f"{ns}:{{k}}".encode()

        changes: list[tuple[str, Callable[[], Awaitable[Any]], Any]] = [
            ("set by another cache", lambda: other.set("k", {"v": 2}), {"v": 2}),
            ("DEL by another client", lambda: raw.delete(rkey), MISS),
            ("SET by another client", lambda: other.set("k", {"v": 3}), {"v": 3}),
            ("EXPIRE by another client", lambda: raw.pexpire(rkey, 1), MISS),
        ]
        for what, change, expected in changes:
            if expected is MISS:
                await other.set("k", {"v": "before"})
                await warm(cache, "k")
            await change()

            async def sees(expected: Any = expected) -> bool:
                return bool(await cache.get("k", MISS) == expected)

            await eventually(sees, within=2.0)
            if expected is not MISS:
                await warm(cache, "k")
            assert cache.stats.near_invalidations > 0, what

        # A flush of the whole database empties the near cache too.
        await other.set("k", {"v": 4})
        await warm(cache, "k")
        await backend.flush()

        async def flushed() -> bool:
            return await cache.get("k", MISS) is MISS

        await eventually(flushed, within=2.0)
    finally:
        await cache.aclose()


async def test_expiry_in_redis_drops_the_near_copy(backend: Backend, redis: Client) -> None:
    if backend.is_fake:
        pytest.skip("fakeredis has no client tracking")
    cache = Cache(redis, namespace=namespace(), near=NearCache())
    try:
        await cache.set("short", "v", ttl=0.3)
        await warm(cache, "short")
        await asyncio.sleep(0.35)
        # The near copy is kept only while the envelope is fresh: gone with the entry.
        assert await cache.get("short", MISS) is MISS
        assert len(near_of(cache)) == 0
    finally:
        await cache.aclose()


async def test_read_your_writes_in_this_process(backend: Backend, redis: Client) -> None:
    if backend.is_fake:
        pytest.skip("fakeredis has no client tracking")
    cache = Cache(redis, namespace=namespace(), near=NearCache())

    @cache.cached(key="f:{x}")
    async def f(x: int) -> int:
        return x * 10

    async def writer(value: Any) -> None:
        pass

    try:
        await cache.set("k", 1)
        await warm(cache, "k")
        # No sleep after any write: the next read must see it, not the near copy.
        await cache.set("k", 2)
        assert await cache.get("k") == 2
        await warm(cache, "k")
        await cache.write_through("k", 3, writer)
        assert await cache.get("k") == 3
        await warm(cache, "k")
        await cache.set_many({"k": 4})
        assert await cache.get("k") == 4
        await warm(cache, "k")
        assert await cache.delete("k") == 1
        assert await cache.get("k", MISS) is MISS
        assert await f(1) == 10
        key = f.key_for(1)
        await warm(cache, key)
        assert await f.invalidate(1)
        assert await cache.get(key, MISS) is MISS
        assert await cache.get_many([key]) == {}
    finally:
        await cache.aclose()


async def test_isolation_and_get_many(backend: Backend, redis: Client) -> None:
    if backend.is_fake:
        pytest.skip("fakeredis has no client tracking")
    cache = Cache(redis, namespace=namespace(), near=NearCache())
    try:
        await cache.set_many({"a": {"list": [1]}, "b": {"list": [2]}})
        await warm(cache, "a")
        first = await cache.get("a")
        first["list"].append(99)
        assert await cache.get("a") == {"list": [1]}
        hits = cache.stats.near_hits
        assert await cache.get_many(["a", "b", "c"]) == {"a": {"list": [1]}, "b": {"list": [2]}}
        assert cache.stats.near_hits == hits + 1  # "a" from memory; "b", "c" from Redis
        assert await cache.get_many(["a", "b"]) == {"a": {"list": [1]}, "b": {"list": [2]}}
        assert cache.stats.near_hits == hits + 3
    finally:
        await cache.aclose()


async def test_bounded_by_entries_and_bytes(backend: Backend, redis: Client) -> None:
    if backend.is_fake:
        pytest.skip("fakeredis has no client tracking")
    cache = Cache(redis, namespace=namespace(), near=NearCache(max_entries=10))
    small = Cache(redis, namespace=namespace(), near=NearCache(max_bytes=4096))
    try:
        await cache.set("x", 0)
        await small.set("x", 0)
        await warm(cache, "x")
        await warm(small, "x")
        for i in range(50):
            await cache.set(f"k{i}", i)
            await small.set(f"k{i}", "v" * 500)
        for i in range(50):
            assert await cache.get(f"k{i}") == i
            assert await small.get(f"k{i}") == "v" * 500
        assert len(near_of(cache)) <= 10
        assert cache.stats.near_evictions >= 40
        assert near_of(small).size_bytes <= 4096
        assert small.stats.near_evictions > 0
        # Least recently used goes first: the last ten read are the ones kept.
        hits = cache.stats.near_hits
        for i in range(40, 50):
            await cache.get(f"k{i}")
        assert cache.stats.near_hits == hits + 10
    finally:
        await cache.aclose()
        await small.aclose()


async def test_xfetch_and_refresh_after_behave_as_without(backend: Backend, redis: Client) -> None:
    if backend.is_fake:
        pytest.skip("fakeredis has no client tracking")
    now = [1_000_000.0]
    cache = Cache(
        redis,
        namespace=namespace(),
        refresh_after=5.0,
        near=NearCache(),
        clock=lambda: now[0],
    )
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        return calls

    try:
        assert await cache.get_or_load("k", load) == 1
        await warm(cache, "k")
        assert await cache.get_or_load("k", load) == 1
        now[0] += 6.0  # past refresh_after: a near hit schedules the refresh, like a Redis hit
        assert await cache.get_or_load("k", load) == 1

        async def refreshed() -> bool:
            return await cache.get_or_load("k", load) == 2

        await eventually(refreshed)
        assert cache.stats.refreshes == 1
    finally:
        await cache.aclose()


# -- the race: a read's reply delayed past the invalidation of its key ----------------------


def direct_tracking(monkeypatch: pytest.MonkeyPatch, cache: Cache, port: int) -> None:
    """The cache's invalidation connections go to ``port`` (not through the data proxy)."""
    listener = near_of(cache).listener
    original = InvalidationListener._new_connection

    def connect(kwargs: dict[str, Any]) -> Any:
        return original(listener, {**kwargs, "port": port})

    monkeypatch.setattr(listener, "_new_connection", connect)


async def test_a_reply_overtaken_by_an_invalidation_is_not_kept(
    server: RedisProcess, closing: Callable[[Any], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        ns = namespace()
        cache = closing(
            Cache(
                closing(aioredis.Redis(port=proxy.port)),
                namespace=ns,
                timeout=5.0,
                near=NearCache(),
            )
        )
        direct_tracking(monkeypatch, cache, server.port)
        writer = Cache(closing(aioredis.Redis(port=server.port)), namespace=ns)
        await writer.set("k", "old")
        await writer.set("warm-up", 0)
        await warm(cache, "warm-up")
        await cache.delete("warm-up")
        for round_ in range(3):
            await writer.set("k", f"old{round_}")
            await eventually(lambda: len(near_of(cache)) == 0)
            proxy.latency = 0.3  # replies on the data connection now arrive late
            read = asyncio.ensure_future(cache.get("k"))
            await asyncio.sleep(0.1)  # the GET ran on the server and its reply is on its way
            invalidations = cache.stats.near_invalidations
            await writer.set("k", f"new{round_}")  # its invalidation arrives first
            assert await read == f"old{round_}"  # the read's own answer is what it read
            proxy.latency = 0
            # ...but it was not kept: the next read goes to Redis and sees the new value.
            assert await cache.get("k") == f"new{round_}"
            assert near_of(cache).active
            assert cache.stats.near_invalidations == invalidations  # nothing was kept to drop


async def test_losing_the_stream_empties_and_bypasses(
    server: RedisProcess, closing: Callable[[Any], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FaultProxy("127.0.0.1", server.port) as tracking_proxy:
        ns = namespace()
        cache = closing(
            Cache(closing(aioredis.Redis(port=server.port)), namespace=ns, near=NearCache())
        )
        direct_tracking(monkeypatch, cache, tracking_proxy.port)
        writer = Cache(closing(aioredis.Redis(port=server.port)), namespace=ns)
        near = near_of(cache)
        await writer.set("k", 1)
        await warm(cache, "k")
        established = near.listener.established

        # Cut: the stream is gone, and it cannot come back for now.
        tracking_proxy.refuse = True
        await tracking_proxy.drop_all()
        await eventually(lambda: not near.active, within=2.0)
        assert len(near) == 0
        # A change nobody tells us about: every read in the gap goes to Redis.
        await writer.set("k", 2)
        hits = cache.stats.near_hits
        for _ in range(5):
            assert await cache.get("k") == 2
        assert cache.stats.near_hits == hits

        # Back: tracking is established again, and the near cache serves again.
        tracking_proxy.refuse = False
        await eventually(lambda: near.active, within=5.0)
        assert near.listener.established > established
        await warm(cache, "k")
        assert await cache.get("k") == 2


async def test_a_silent_stream_is_noticed(
    server: RedisProcess, closing: Callable[[Any], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FaultProxy("127.0.0.1", server.port) as tracking_proxy:
        ns = namespace()
        cache = closing(
            Cache(closing(aioredis.Redis(port=server.port)), namespace=ns, near=NearCache())
        )
        direct_tracking(monkeypatch, cache, tracking_proxy.port)
        near = near_of(cache)
        monkeypatch.setattr(near.listener, "_heartbeat", 0.1)
        await cache.set("k", 1)
        await warm(cache, "k")
        tracking_proxy.stall()  # no error, no bytes: only the heartbeat can tell
        await eventually(lambda: not near.active, within=3.0)
        assert len(near) == 0
        tracking_proxy.resume()


async def test_a_server_that_refuses_tracking_is_bypassed(
    server: RedisProcess, closing: Callable[[Any], Any], caplog: pytest.LogCaptureFixture
) -> None:
    admin = closing(aioredis.Redis(port=server.port))
    await admin.execute_command("ACL", "SETUSER", "default", "-client|tracking")
    cache = closing(
        Cache(closing(aioredis.Redis(port=server.port)), namespace=namespace(), near=NearCache())
    )
    near = near_of(cache)
    await cache.set("k", 1)
    for _ in range(3):
        assert await cache.get("k") == 1
    await eventually(lambda: near.listener.refused is not None)
    assert not near.active
    assert await cache.get("k") == 1
    assert cache.stats.near_hits == 0
    assert any("refuses client tracking" in r.getMessage() for r in caplog.records)


async def test_read_your_writes_while_invalidations_are_slow(
    server: RedisProcess, closing: Callable[[Any], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FaultProxy("127.0.0.1", server.port) as tracking_proxy:
        cache = closing(
            Cache(
                closing(aioredis.Redis(port=server.port)), namespace=namespace(), near=NearCache()
            )
        )
        direct_tracking(monkeypatch, cache, tracking_proxy.port)

        async def writer(value: Any) -> None:
            pass

        writes: list[Callable[[int], Awaitable[Any]]] = [
            lambda n: cache.set("k", n),
            lambda n: cache.write_through("k", n, writer),
            lambda n: cache.set_many({"k": n}),
        ]
        await cache.set("k", 0)
        await warm(cache, "k")
        tracking_proxy.latency = 0.3  # Redis's own invalidations now arrive late
        for n, write in enumerate(writes * 2, start=1):
            await warm(cache, "k")
            reads = [asyncio.ensure_future(cache.get("k")) for _ in range(5)]  # in flight
            await write(n)
            assert await cache.get("k") == n
            await asyncio.gather(*reads)
            assert await cache.get("k") == n  # the reads that raced the write kept nothing old
        await warm(cache, "k")
        assert await cache.delete("k") == 1
        assert await cache.get("k", MISS) is MISS


async def test_a_change_of_the_cluster_masters_flushes(
    backend: Backend, redis: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not isinstance(redis, aioredis.RedisCluster):
        pytest.skip("cluster only")
    cache = Cache(redis, namespace=namespace(), near=NearCache())
    try:
        near = near_of(cache)
        monkeypatch.setattr(near.listener, "_heartbeat", 0.1)
        await cache.set("k", 1)
        await warm(cache, "k")
        established = near.listener.established
        primaries = redis.get_primaries()
        # The cluster now says it has one primary fewer (a failover, as far as we know).
        monkeypatch.setattr(redis, "get_primaries", lambda: primaries[1:])
        await eventually(lambda: near.listener.established > established, within=5.0)
        assert cache.stats.near_invalidations >= 1  # the copy of "k" was dropped
        monkeypatch.setattr(redis, "get_primaries", lambda: primaries)
        await eventually(lambda: near.listener.established > established + 1, within=5.0)
        await warm(cache, "k")
    finally:
        await cache.aclose()


async def test_only_plain_envelopes_are_kept(backend: Backend, redis: Client) -> None:
    if backend.is_fake:
        pytest.skip("fakeredis has no client tracking")
    ns = namespace()
    cache = Cache(redis, namespace=ns, near=NearCache())
    try:
        await cache.set("k", 1)
        await warm(cache, "k")
        # Bytes the cache did not write (another program's value) are a miss, never kept.
        await redis.set(f"{ns}:{{foreign}}".encode(), b"not an envelope")
        for _ in range(3):
            assert await cache.get("foreign", MISS) is MISS
        assert len(near_of(cache)) == 1
        # The hook: a store that refuses a form (an entry validated against other keys)
        # serves it from Redis every time.
        near_of(cache).keepable = lambda raw: False
        await cache.set("k", 2)
        hits = cache.stats.near_hits
        for _ in range(3):
            assert await cache.get("k") == 2
        assert cache.stats.near_hits == hits
    finally:
        await cache.aclose()


async def test_the_local_ttl_cap_and_the_keep_predicate(backend: Backend, redis: Client) -> None:
    if backend.is_fake:
        pytest.skip("fakeredis has no client tracking")
    ns = namespace()
    capped = Cache(redis, namespace=ns, near=NearCache(ttl=0.2))
    picky = Cache(redis, namespace=ns, near=NearCache(keep=lambda rkey: b"hot" in rkey))
    try:
        await capped.set("k", 1, ttl=3600)
        await warm(capped, "k")
        await asyncio.sleep(0.25)
        misses = capped.stats.near_misses
        assert await capped.get("k") == 1  # still in Redis, but no longer kept near
        assert capped.stats.near_misses == misses + 1

        await picky.set_many({"hot:1": 1, "cold:1": 2})
        await warm(picky, "hot:1")
        hits = picky.stats.near_hits
        for _ in range(3):
            assert await picky.get("cold:1") == 2
        assert picky.stats.near_hits == hits
        assert len(near_of(picky)) == 1
    finally:
        await capped.aclose()
        await picky.aclose()


# -- tags: a tagged entry is never a near copy ----------------------------------------


async def test_tag_invalidation_reaches_a_near_cache(
    backend: Backend, redis: Client, closing: Callable[[Any], Any]
) -> None:
    if backend.is_fake:
        pytest.skip("fakeredis has no client tracking")
    ns = namespace()
    cache = closing(Cache(redis, namespace=ns, near=NearCache()))
    other = Cache(await backend.client(), namespace=ns)  # another process
    await cache.set("plain", 0)
    await warm(cache, "plain")  # the stream is up: copies are kept from here on
    await other.set("k", "old", tags=("user:1",))
    loads = 0

    async def load() -> str:
        nonlocal loads
        loads += 1
        return f"new{loads}"

    for _ in range(3):  # read through every path, more than once
        assert await cache.get("k") == "old"
        assert await cache.get_many(["k"]) == {"k": "old"}
        assert await cache.get_or_load("k", load, tags=("user:1",)) == "old"
    assert near_of(cache).lookup(cache._keys.key("k")) is None  # not kept near
    assert await other.invalidate_tags("user:1") == 1
    assert await cache.get("k") is None
    assert await cache.get_many(["k"]) == {}
    assert await cache.get_or_load("k", load, tags=("user:1",)) == "new1"
    assert await cache.get_or_load("k", load) == "new1"
    assert loads == 1


# -- a reader that runs before the listener ------------------------------------------


async def test_an_invalidation_waiting_unread_is_never_answered_from_memory(
    backend: Backend, redis: Client, closing: Callable[[Any], Any]
) -> None:
    """A process that was not scheduled while Redis sent an invalidation (busy, or
    stalled) may run its reading task before the listener's: the copy must not be
    served once the invalidation arrived, parsed or not."""
    if backend.is_fake:
        pytest.skip("fakeredis has no client tracking")
    assert backend.url is not None
    ns = namespace()
    cache = closing(Cache(redis, namespace=ns, near=NearCache()))
    await cache.set("k", "old")
    await warm(cache, "k")
    rkey = cache._keys.key("k")
    sync: Any = (
        sync_redis.RedisCluster.from_url(backend.url)
        if backend.is_cluster
        else sync_redis.Redis.from_url(backend.url)
    )
    try:
        for _ in range(3):
            await cache.set("k", "old")
            await warm(cache, "k")
            # Blocking calls: the event loop (and so the listener) cannot run until the
            # next await, and the invalidation is in the socket well before it.
            sync.delete(rkey)
            time.sleep(0.05)  # noqa: ASYNC251 (the point: a loop that cannot run)
            assert await cache.get("k") is None
            assert await cache.get_many(["k"]) == {}
    finally:
        sync.close()
