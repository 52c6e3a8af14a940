"""The fast paths' private reads, detected at start-up, and the public paths without them.

The executor reads asyncio's ready queue (``loop._ready``) and redis-py
connections' stream objects (``_reader``, ``_writer``). These tests check that
the detection holds on the installed redis-py (CI runs them on the oldest and
the newest redis-py the package declares), that with the fast paths turned off
(``AIOCACHE_PATTERNS_FAST_PATHS=0``, or the module flag) the whole hit path runs
on public API alone, and that under uvloop, whose loop exposes no ready queue, a
lone caller is still sent at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection

from aiocache_patterns import Cache, Lock, RateLimiter
from aiocache_patterns._redis import compat as _compat
from aiocache_patterns._redis.direct import Direct
from aiocache_patterns._redis.executor import Executor, executor_for
from tests._backends import Backend, standalone_availability
from tests._helpers import populate


@pytest.fixture
def no_fast_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_compat, "FAST_PATHS", False)


def _count_gathers(ex: Executor) -> list[int]:
    """Count the times a caller waited a loop turn for others to join its batch."""
    calls = [0]
    original = ex._gather_tick

    async def counting(batch: list[Any], mine: list[Any]) -> None:
        calls[0] += 1
        await original(batch, mine)

    ex._gather_tick = counting  # type: ignore[method-assign]
    return calls


def test_the_installed_redis_py_has_what_the_fast_paths_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If this fails after a redis-py upgrade, the library still works (on the public
    paths, tested below), only slower: update _compat.py for the new internals."""
    monkeypatch.setattr(_compat, "FAST_PATHS", True)  # detection, whatever the switch says
    assert _compat.stream_internals_expected(Connection)

    async def check() -> None:
        assert _compat.ready_queue(asyncio.get_running_loop()) is not None
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        try:
            conn = Connection()
            conn._reader, conn._writer = reader, writer
            try:
                assert _compat.has_stream_internals(conn)
            finally:
                conn._reader = conn._writer = None  # not a connection to close
        finally:
            writer.close()
            server.close()

    asyncio.run(check())


def test_what_is_missing_is_detected() -> None:
    class Bare:
        pass

    assert not _compat.stream_internals_expected(Bare)
    assert not _compat.stream_internals_expected(None)
    conn = Connection()  # never connected: no streams
    assert not _compat.has_stream_internals(conn)


def test_the_switch_turns_every_fast_path_off(no_fast_paths: None) -> None:
    assert not _compat.stream_internals_expected(Connection)

    async def check() -> None:
        assert _compat.ready_queue(asyncio.get_running_loop()) is None

    asyncio.run(check())


async def test_the_hit_path_without_fast_paths(backend: Backend, no_fast_paths: None) -> None:
    """Cache, limiter and lock through the public paths: correct, and a lone caller is
    still sent at once (one round trip, no batch, no task)."""
    redis = await backend.client()
    ex = executor_for(redis)
    gathers = _count_gathers(ex)
    cache = Cache(redis, namespace="fb", ttl=60, fail_open=False)
    await cache.set("k", {"v": 1})
    before = ex.round_trips
    for _ in range(5):
        assert await cache.get("k") == {"v": 1}
    assert ex.round_trips - before == 5
    assert gathers == [0]
    assert ex.pending_tasks == 0
    assert ex._ready is None
    if backend.name == "redis":
        direct = ex._direct
        assert isinstance(direct, Direct)
        assert not direct.has_lane
        assert ex.held_connections == 0

    loads = 0

    async def loader() -> str:
        nonlocal loads
        loads += 1
        return "loaded"

    got = await asyncio.gather(*(cache.get_or_load("miss", loader) for _ in range(20)))
    assert got == ["loaded"] * 20
    assert loads == 1
    assert await cache.get_many(["k", "miss", "absent"]) == {"k": {"v": 1}, "miss": "loaded"}
    # concurrent callers still share round trips
    keys = await populate(redis, 50)
    before = ex.round_trips
    values = await asyncio.gather(*(ex.get(k, 1.0) for k in keys))
    assert values == [f"v{i}".encode() for i in range(50)]
    assert ex.round_trips - before <= 2

    limiter = RateLimiter(redis, limit=3, window=60)
    results = await asyncio.gather(*(limiter.hit("u") for _ in range(5)))
    assert sum(r.allowed for r in results) == 3
    lock = Lock(redis, "fb", ttl=5)
    async with lock as lease:
        assert lease.fencing_token > 0
        assert await lock.locked()
    assert not await lock.locked()


# -- uvloop -------------------------------------------------------------------------


def _uvloop() -> Any:
    return pytest.importorskip("uvloop")


def _uvloop_clients() -> list[Callable[[], Any]]:
    makers: list[Callable[[], Any]] = [lambda: fakeredis.FakeAsyncRedis(version=(7,))]
    url = standalone_availability().url
    if url is not None:
        makers.append(lambda: aioredis.Redis.from_url(url))
    return makers


@pytest.mark.parametrize("which", ["fakeredis", "redis"])
def test_under_uvloop_a_lone_caller_is_sent_at_once(which: str) -> None:
    uvloop = _uvloop()
    makers = _uvloop_clients()
    if which == "redis" and len(makers) < 2:
        pytest.skip("no standalone Redis")
    make = makers[0] if which == "fakeredis" else makers[1]

    async def main() -> None:
        assert _compat.ready_queue(asyncio.get_running_loop()) is None  # uvloop has none
        client = make()
        try:
            await client.flushdb()
            ex = executor_for(client)
            gathers = _count_gathers(ex)
            cache = Cache(client, namespace="uv", ttl=60, fail_open=False)
            await cache.set("k", "v")
            before = ex.round_trips
            for _ in range(10):
                assert await cache.get("k") == "v"
            assert ex.round_trips - before == 10
            assert gathers == [0]  # nobody waited a loop turn for company
            assert ex.pending_tasks == 0
            # concurrent callers batch behind the first one's round trip
            keys = [f"uv:{i}".encode() for i in range(100)]
            await client.mset({k: k for k in keys})
            before = ex.round_trips
            got = await asyncio.gather(*(ex.get(k, 2.0) for k in keys))
            assert got == keys
            assert ex.round_trips - before <= 3
            limiter = RateLimiter(client, limit=10, window=60)
            hits = await asyncio.gather(*(limiter.hit("u") for _ in range(30)))
            assert sum(h.allowed for h in hits) == 10
            async with Lock(client, "uv", ttl=5) as lease:
                assert lease.fencing_token > 0
            await client.flushdb()
        finally:
            await client.aclose()

    uvloop.run(main())
