"""``hit``: reading cached values that are all there (every read is a hit).

Cases: one hot key, and 1,000 keys read uniformly at random, each at
concurrency 1 and 50. Variants: raw redis-py (``json.loads(await r.get(k))``),
this library's ``Cache.get``, ``Cache.get_or_load`` and ``@Cache.cached``, and
the peers' equivalents (see :mod:`benchmarks.scenarios._hit_peers`).

The raw variant's keys are built before timing, which flatters it slightly:
the library's variants build theirs (namespace, hash tag) inside the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from typing import Any

from aiocache_patterns import Cache, JsonSerializer, NearCache, client_stats
from benchmarks._report import Goal, ScenarioResult, check_goals
from benchmarks._target import KEY_PREFIX, Target
from benchmarks.scenarios._base import Bound, Case, RunContext, VariantSpec, measure_cases
from benchmarks.scenarios._hit_peers import PEER_VARIANTS
from benchmarks.scenarios._items import ITEMS, KEYS, TTL, VALUES

__all__ = ["SCENARIO", "HitScenario"]

RAW = "raw redis-py"
GET = "Cache.get"
GET_OR_LOAD = "Cache.get_or_load"
CACHED = "@Cache.cached"
CASHEWS_DECORATOR = "cashews @cache"
NEAR = "Cache.get (near)"
NEAR_FLOOR = "near floor"

#: (operations per variant per round, measured rounds) at concurrency 1 and at 50.
#: Concurrency 1 gets many short rounds: on this noisy VM the paired median of
#: 60 short rounds settles to about ±2%, that of 20 long ones does not.
FULL = ((200, 61), (2500, 21))
QUICK = ((100, 9), (500, 5))

GOALS = [
    Goal("keys1000-c50", GET, RAW, 3.0),
    Goal("hot-c50", GET, CASHEWS_DECORATOR, 1.0),
    Goal("hot-c50", CACHED, CASHEWS_DECORATOR, 1.0),
    Goal("hot-c1", GET, RAW, 0.95),
    Goal("hot-c1", GET_OR_LOAD, RAW, 0.95),
    Goal("keys1000-c1", GET, RAW, 0.95),
    Goal("keys1000-c1", GET_OR_LOAD, RAW, 0.95),
    # The near cache (issue #18): hits from process memory. The floor beside it is
    # the same callers awaiting a dict lookup and the same JSON decode (a copy per
    # caller, for isolation): nothing of ours.
    Goal("hot-c50", NEAR, RAW, 20.0),
    Goal("keys1000-c50", NEAR, RAW, 15.0),
    Goal("hot-c1", NEAR, RAW, 10.0),
    Goal("hot-c50", NEAR, NEAR_FLOOR, 1 / 1.2),
    Goal("keys1000-c50", NEAR, NEAR_FLOOR, 1 / 1.2),
    Goal("hot-c1", NEAR, NEAR_FLOOR, 1 / 1.2),
]


async def _load(i: int) -> dict[str, Any]:
    return VALUES[i]


@contextlib.asynccontextmanager
async def _raw(target: Target) -> AsyncIterator[Bound]:
    client = target.client()
    keys = [f"{KEY_PREFIX}:raw:{k}" for k in KEYS]
    try:
        async with client.pipeline(transaction=False) as pipe:
            for key, value in zip(keys, VALUES, strict=True):
                pipe.set(key, json.dumps(value), ex=TTL)
            await pipe.execute()

        async def op(i: int) -> Any:
            return json.loads(await client.get(keys[i]))

        yield Bound(op)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def _library(target: Target, how: str) -> AsyncIterator[Bound]:
    client = target.client()
    cache = Cache(client, namespace=KEY_PREFIX, ttl=TTL)
    try:
        await cache.set_many(dict(zip(KEYS, VALUES, strict=True)))
        if how == GET:

            async def op(i: int) -> Any:
                return await cache.get(KEYS[i])

        elif how == GET_OR_LOAD:

            async def op(i: int) -> Any:
                return await cache.get_or_load(KEYS[i], lambda: _load(i))

        else:

            @cache.cached(key="item:{i}")
            async def op(i: int) -> Any:
                return await _load(i)

        def counters() -> dict[str, int]:
            return {"round_trips": client_stats(client).round_trips, "loads": cache.stats.loads}

        yield Bound(op, counters)
    finally:
        await cache.aclose()
        await client.aclose()


@contextlib.asynccontextmanager
async def _near(target: Target) -> AsyncIterator[Bound]:
    client = target.client()
    cache = Cache(client, namespace=KEY_PREFIX + "-near", ttl=TTL, near=NearCache())
    try:
        await cache.set_many(dict(zip(KEYS, VALUES, strict=True)))
        # Wait for the invalidation stream (a near hit), then fill the near cache. A
        # client without tracking (fakeredis) has no near cache: no near miss either.
        for _ in range(500):
            await cache.get(KEYS[0])
            stats = cache.stats
            if stats.near_hits or not stats.near_misses:
                break
            await asyncio.sleep(0.01)
        await cache.get_many(KEYS)

        async def op(i: int) -> Any:
            return await cache.get(KEYS[i])

        def counters() -> dict[str, int]:
            stats = cache.stats
            return {
                "round_trips": client_stats(client).round_trips,
                "near_misses": stats.near_misses,
            }

        yield Bound(op, counters)
    finally:
        await cache.aclose()
        await client.aclose()


@contextlib.asynccontextmanager
async def _near_floor(target: Target) -> AsyncIterator[Bound]:
    """A dict of the same envelopes and the same decode, awaited like a call: the floor."""
    del target
    loads = JsonSerializer().loads
    envelopes = {k: bytes(26) + json.dumps(v).encode() for k, v in zip(KEYS, VALUES, strict=True)}

    async def op(i: int) -> Any:
        return loads(envelopes[KEYS[i]][26:])

    yield Bound(op)


def _library_spec(name: str) -> VariantSpec:
    return VariantSpec(name, "library", lambda target: _library(target, name))


VARIANTS = [
    VariantSpec(RAW, "raw", _raw),
    _library_spec(GET),
    _library_spec(GET_OR_LOAD),
    _library_spec(CACHED),
    VariantSpec(NEAR, "library", _near),
    VariantSpec(NEAR_FLOOR, "raw", _near_floor),
    *PEER_VARIANTS,
]


def _cases(c1: tuple[int, int], c50: tuple[int, int]) -> list[Case]:
    rng = random.Random(20240601)
    uniform = [rng.randrange(ITEMS) for _ in range(max(c1[0], c50[0]))]
    return [
        Case("hot-c1", "one hot key, concurrency 1", 1, [0] * c1[0], c1[1]),
        Case("hot-c50", "one hot key, concurrency 50", 50, [0] * c50[0], c50[1]),
        Case("keys1000-c1", "1,000 keys, concurrency 1", 1, uniform[: c1[0]], c1[1]),
        Case("keys1000-c50", "1,000 keys, concurrency 50", 50, uniform[: c50[0]], c50[1]),
    ]


class HitScenario:
    name = "hit"
    description = "cache reads that all hit: one hot key and 1,000 uniform keys, c=1 and c=50"

    async def run(self, ctx: RunContext) -> ScenarioResult:
        c1, c50 = QUICK if ctx.quick else FULL
        if ctx.ops:
            c1, c50 = (ctx.ops, c1[1]), (ctx.ops, c50[1])
        cases = await measure_cases(self.name, ctx, VARIANTS, _cases(c1, c50), VALUES, RAW)
        result = ScenarioResult(
            self.name, self.description, RAW, {v.name: v.group for v in VARIANTS}, cases
        )
        result.goals = check_goals(cases, GOALS, ctx.target.speed_figure)
        loads = sum(o.per_op.get("loads", 0.0) for c in cases for o in c.outcomes)
        if loads:
            result.notes.append("a library variant called its loader: some reads were not hits")
        return result


SCENARIO = HitScenario()
