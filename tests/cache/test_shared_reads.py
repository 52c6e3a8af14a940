"""Callers of ``get_or_load`` that come while a read of the same key is in flight in
this process share that read, and on a miss the load's outcome, with one wake-up
each (the cold-stampede path). What must hold besides speed: a write in between
is never hidden by an older read, the reader's cancellation fails nobody, every
caller still decodes a value of its own on a hit, errors reach everybody.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aiocache_patterns import Cache
from tests._backends import Client


class Gate:
    """Holds the reply of the first GET of a cache's client until opened (others pass)."""

    def __init__(self, cache: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened = asyncio.Event()
        self.reached = asyncio.Event()
        self.calls = 0
        executor = cache._io.executor
        real = executor.get

        async def get(key: bytes, timeout: float) -> bytes | None:
            self.calls += 1
            raw = await real(key, timeout)
            if self.calls == 1:
                self.reached.set()
                await self.opened.wait()
            return raw

        monkeypatch.setattr(executor, "get", get)


async def test_a_caller_after_a_write_does_not_join_an_older_read(
    redis: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = Cache(redis, namespace="shared-reads")
    await cache.set("k", "old")
    gate = Gate(cache, monkeypatch)

    async def load() -> str:
        return "loaded"

    first = asyncio.ensure_future(cache.get_or_load("k", load))
    await gate.reached.wait()  # its GET answered "old"; the reply is held back
    joined = asyncio.ensure_future(cache.get_or_load("k", load))  # shares that read
    await asyncio.sleep(0)
    await cache.set("k", "new")
    # It came after the write: it reads for itself (joining the held read would hang).
    after = await asyncio.wait_for(cache.get_or_load("k", load), 5)
    assert after == "new"
    gate.opened.set()
    assert await first == "old"
    assert await joined == "old"  # it came before the write returned
    assert gate.calls == 2


async def test_cancelling_the_reader_fails_no_joiner(
    redis: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = Cache(redis, namespace="shared-reads")
    gate = Gate(cache, monkeypatch)
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "value"

    first = asyncio.ensure_future(cache.get_or_load("k", load))
    await gate.reached.wait()
    others = [asyncio.ensure_future(cache.get_or_load("k", load)) for _ in range(20)]
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.gather(*others) == ["value"] * 20
    assert calls == 1


async def test_cancelling_the_reader_while_it_loads_fails_no_joiner(
    redis: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = Cache(redis, namespace="shared-reads")
    gate = Gate(cache, monkeypatch)
    calls = 0
    loading = asyncio.Event()

    async def load() -> str:
        nonlocal calls
        calls += 1
        loading.set()
        await asyncio.sleep(0.1)
        return "value"

    first = asyncio.ensure_future(cache.get_or_load("k", load))
    await gate.reached.wait()
    others = [asyncio.ensure_future(cache.get_or_load("k", load)) for _ in range(20)]
    await asyncio.sleep(0)
    gate.opened.set()  # the read misses: `first` leads the load the others share
    await loading.wait()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.gather(*others) == ["value"] * 20
    assert calls == 1  # the load went on for them


async def test_a_shared_hit_is_decoded_per_caller_and_a_shared_miss_loads_once(
    redis: Client,
) -> None:
    cache = Cache(redis, namespace="shared-reads")
    await cache.set("hit", {"list": [1]})
    values = await asyncio.gather(*(cache.get_or_load("hit", _never) for _ in range(30)))
    assert all(v == {"list": [1]} for v in values)
    assert len({id(v) for v in values}) == 30  # a value of its own each
    calls = 0

    async def load() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        return {"n": 1}

    loaded = await asyncio.gather(*(cache.get_or_load("miss", load) for _ in range(300)))
    assert loaded == [{"n": 1}] * 300
    assert calls == 1
    stats = cache.stats
    assert stats.misses == 300
    assert stats.coalesced == 299


async def test_a_loader_error_reaches_every_caller(redis: Client) -> None:
    cache = Cache(redis, namespace="shared-reads")

    async def fail() -> None:
        await asyncio.sleep(0.01)
        raise LookupError("no such row")

    results = await asyncio.gather(
        *(cache.get_or_load("bad", fail) for _ in range(50)), return_exceptions=True
    )
    assert all(isinstance(r, LookupError) for r in results)
    assert await cache.get("bad", None) is None  # never cached


async def _never() -> Any:
    raise AssertionError("a hit must not load")
