"""``tagged``: cache hits on entries with two tags, beside the same hits without tags.

Cases: 1,000 keys read uniformly at random, at concurrency 1 and 50. Variants:
``Cache.get_or_load`` of untagged entries (the baseline), of entries with two
tags (``("bench", "t<i % 7>")``: the entry and both versions in one MGET), and
``@Cache.cached`` without tags and with two tag templates. Target: a tagged
hit at least 0.7x the same untagged one.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

from aiocache_patterns import Cache, client_stats
from benchmarks._report import Goal, ScenarioResult, check_goals
from benchmarks._target import KEY_PREFIX, Target
from benchmarks.scenarios._base import Bound, Case, RunContext, VariantSpec, measure_cases
from benchmarks.scenarios._items import ITEMS, KEYS, TTL, VALUES

__all__ = ["SCENARIO", "TaggedScenario"]

UNTAGGED = "get_or_load (no tags)"
TAGGED = "get_or_load (2 tags)"
CACHED = "@cached (no tags)"
CACHED_TAGGED = "@cached (2 tag templates)"

FULL = ((200, 41), (2500, 15))
QUICK = ((100, 9), (500, 5))

GOALS = [
    Goal("keys1000-c1", TAGGED, UNTAGGED, 0.7),
    Goal("keys1000-c50", TAGGED, UNTAGGED, 0.7),
    Goal("keys1000-c1", CACHED_TAGGED, CACHED, 0.7),
    Goal("keys1000-c50", CACHED_TAGGED, CACHED, 0.7),
]

VARIANT_NAMES = [UNTAGGED, TAGGED, CACHED, CACHED_TAGGED]
TAGS = [("bench", f"t{i % 7}") for i in range(ITEMS)]


async def _load(i: int) -> dict[str, Any]:
    return VALUES[i]


@contextlib.asynccontextmanager
async def _variant(target: Target, how: str) -> AsyncIterator[Bound]:
    client = target.client()
    # A namespace a variant, so each reads only the entries it wrote.
    cache = Cache(client, namespace=f"{KEY_PREFIX}:tagged{VARIANT_NAMES.index(how)}", ttl=TTL)
    try:
        if how == UNTAGGED:
            await cache.set_many(dict(zip(KEYS, VALUES, strict=True)))

            async def op(i: int) -> Any:
                return await cache.get_or_load(KEYS[i], lambda: _load(i))

        elif how == TAGGED:
            for key, value, tags in zip(KEYS, VALUES, TAGS, strict=True):
                await cache.set(key, value, tags=tags)

            async def op(i: int) -> Any:
                return await cache.get_or_load(KEYS[i], lambda: _load(i), tags=TAGS[i])

        elif how == CACHED:

            @cache.cached(key="item:{i}")
            async def plain(i: int, group: int) -> dict[str, Any]:
                return await _load(i)

            for i in range(ITEMS):
                await plain(i, i % 7)

            async def op(i: int) -> Any:
                return await plain(i, i % 7)

        else:

            @cache.cached(key="item:{i}", tags=("bench", "t{group}"))
            async def cached(i: int, group: int) -> dict[str, Any]:
                return await _load(i)

            for i in range(ITEMS):
                await cached(i, i % 7)

            async def op(i: int) -> Any:
                return await cached(i, i % 7)

        def counters() -> dict[str, int]:
            return {"round_trips": client_stats(client).round_trips, "loads": cache.stats.loads}

        loads_before = cache.stats.loads

        def hit_counters() -> dict[str, int]:
            found = counters()
            found["loads"] -= loads_before
            return found

        yield Bound(op, hit_counters)
    finally:
        await cache.aclose()
        await client.aclose()


def _spec(name: str) -> VariantSpec:
    return VariantSpec(name, "library", lambda target: _variant(target, name))


VARIANTS = [_spec(name) for name in VARIANT_NAMES]


def _cases(c1: tuple[int, int], c50: tuple[int, int]) -> list[Case]:
    rng = random.Random(20240601)
    uniform = [rng.randrange(ITEMS) for _ in range(max(c1[0], c50[0]))]
    return [
        Case("keys1000-c1", "1,000 keys, concurrency 1", 1, uniform[: c1[0]], c1[1]),
        Case("keys1000-c50", "1,000 keys, concurrency 50", 50, uniform[: c50[0]], c50[1]),
    ]


class TaggedScenario:
    name = "tagged"
    description = "cache hits on entries with 2 tags beside untagged hits, c=1 and c=50"

    async def run(self, ctx: RunContext) -> ScenarioResult:
        c1, c50 = QUICK if ctx.quick else FULL
        if ctx.ops:
            c1, c50 = (ctx.ops, c1[1]), (ctx.ops, c50[1])
        cases = await measure_cases(self.name, ctx, VARIANTS, _cases(c1, c50), VALUES, UNTAGGED)
        result = ScenarioResult(
            self.name, self.description, UNTAGGED, {v.name: v.group for v in VARIANTS}, cases
        )
        result.goals = check_goals(cases, GOALS, ctx.target.speed_figure)
        return result


SCENARIO = TaggedScenario()
