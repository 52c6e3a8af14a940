"""The peers' cache reads for the ``hit`` scenario: cashews, aiocache, redis-infra.

Each is set up the way its documentation shows, with its own defaults (pool
size, serializer), under its own keys, populated before timing. cashews and
aiocache connect from a URL themselves, so they cannot run on fakeredis;
redis-infra takes a client and runs everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from benchmarks._optional import optional_module
from benchmarks._target import KEY_PREFIX, Target
from benchmarks.scenarios._base import Bound, VariantSpec
from benchmarks.scenarios._items import ITEMS, KEYS, TTL, VALUES

__all__ = ["PEER_VARIANTS"]


def _module(name: str) -> Any:
    module = optional_module(name)
    if module is None:
        raise ImportError(f"{name} is not importable")
    return module


async def _warm(fn: Callable[[int], Awaitable[Any]]) -> None:
    """Call ``fn(i)`` once per item (a decorator's first call stores the value)."""
    for start in range(0, ITEMS, 100):
        await asyncio.gather(*(fn(i) for i in range(start, min(start + 100, ITEMS))))


class _Calls:
    """Counts calls of a decorated function: after warming, every call is a miss."""

    def __init__(self) -> None:
        self.count = 0

    def counters(self) -> dict[str, int]:
        return {"loads": self.count}


# -- cashews -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _cashews(target: Target, decorator: bool) -> AsyncIterator[Bound]:
    cashews = _module("cashews")
    cache = cashews.Cache()  # our own instance, not the global one built at import
    assert target.url is not None
    cache.setup(target.url)
    await cache.init()
    values = VALUES
    try:
        if decorator:
            calls = _Calls()

            @cache(ttl=TTL, key=f"{KEY_PREFIX}:cashews-fn:item:{{i}}")  # type: ignore[untyped-decorator]
            async def item(i: int) -> Any:
                calls.count += 1
                return values[i]

            await _warm(item)
            op: Callable[[int], Awaitable[Any]] = item
            yield Bound(op, calls.counters)
        else:
            keys = [f"{KEY_PREFIX}:cashews:item:{i}" for i in range(ITEMS)]
            await cache.set_many(dict(zip(keys, values, strict=True)), expire=TTL)

            async def get(i: int) -> Any:
                return await cache.get(keys[i])

            yield Bound(get)
    finally:
        await cache.close()


# -- aiocache -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _aiocache(target: Target, decorator: bool) -> AsyncIterator[Bound]:
    aiocache = _module("aiocache")
    serializers = _module("aiocache.serializers")
    assert target.url is not None
    kwargs = target.aiocache_kwargs()
    values = VALUES
    if decorator:
        calls = _Calls()
        deco = aiocache.cached(
            ttl=TTL,
            cache=aiocache.Cache.REDIS,
            key_builder=lambda fn, i: f"item:{i}",
            namespace=f"{KEY_PREFIX}:aiocache-fn:",
            serializer=serializers.JsonSerializer(),
            **kwargs,
        )

        async def raw_item(i: int) -> Any:
            calls.count += 1
            return values[i]

        item: Callable[[int], Awaitable[Any]] = deco(raw_item)
        try:
            await _warm(item)
            yield Bound(item, calls.counters)
        finally:
            await deco.cache.close()
        return
    cache = aiocache.Cache(
        aiocache.Cache.REDIS,
        namespace=f"{KEY_PREFIX}:aiocache:",
        serializer=serializers.JsonSerializer(),
        **kwargs,
    )
    try:
        keys = KEYS
        await cache.multi_set(list(zip(keys, values, strict=True)), ttl=TTL)

        async def get(i: int) -> Any:
            return await cache.get(keys[i])

        yield Bound(get)
    finally:
        await cache.close()


# -- redis-infra -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _redis_infra(target: Target, get_or_set: bool) -> AsyncIterator[Bound]:
    redis_infra = _module("redis_infra")
    client = target.client()
    try:
        cache = redis_infra.AsyncCache(
            client, namespace=f"{KEY_PREFIX}:redis-infra", default_ttl=TTL
        )
        values = VALUES
        keys = KEYS
        for start in range(0, ITEMS, 100):
            await asyncio.gather(
                *(cache.set(keys[i], values[i]) for i in range(start, min(start + 100, ITEMS)))
            )
        calls = _Calls()

        async def load(i: int) -> Any:
            calls.count += 1
            return values[i]

        if get_or_set:

            async def op(i: int) -> Any:
                return await cache.get_or_set(keys[i], lambda: load(i))

            yield Bound(op, calls.counters)
        else:

            async def get(i: int) -> Any:
                return await cache.get(keys[i])

            yield Bound(get)
    finally:
        await client.aclose()


def _spec(
    name: str, dist: str, opener: Callable[[Target, bool], Any], flag: bool, url: bool
) -> VariantSpec:
    return VariantSpec(name, "peer", lambda t: opener(t, flag), requires=dist, needs_url=url)


PEER_VARIANTS: Sequence[VariantSpec] = (
    _spec("cashews get", "cashews", _cashews, False, True),
    _spec("cashews @cache", "cashews", _cashews, True, True),
    _spec("aiocache get", "aiocache", _aiocache, False, True),
    _spec("aiocache @cached", "aiocache", _aiocache, True, True),
    _spec("redis-infra get", "redis-infra", _redis_infra, False, False),
    _spec("redis-infra get_or_set", "redis-infra", _redis_infra, True, False),
)
