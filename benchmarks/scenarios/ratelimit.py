"""``ratelimit``: rate-limit decisions per second, and over-admission under a burst.

Cases, every variant on its own client, interleaved in rounds:

* ``keys1000-c50``: 1,000 keys hit uniformly at random by 50 tasks, under a
  limit never reached (1,000,000 per minute): every decision is "allowed";
* ``hot-c50``: one key already over its limit (100 per week), 50 tasks:
  every decision is "denied", which is what an attacked endpoint sees;
* ``burst-c1000``: 1,000 concurrent hits on a fresh key limited to 100 (a new
  key each round): the ``admitted/op`` column is the share admitted, 0.100
  when exactly the limit got through; over-admission is checked in every round.

Variants: one raw redis-py ``INCR`` per decision (the floor of any client-side
limiter, the ratio baseline), the seed's ``INCR`` then ``EXPIRE`` (two awaited
commands, not atomic), :class:`~aiocache_patterns.RateLimiter` with each of its
algorithms, and ``limits`` (its async Redis storage on redis-py) with each of
its strategies: ``FixedWindow`` (≈ ``fixed_window``), ``MovingWindow`` (≈
``sliding_log``), ``SlidingWindowCounter`` (≈ ``sliding_window``).

The non-library clients get a pool of 1,000 connections so that the burst
measures atomicity, not pool exhaustion: with redis-py's default pool (100)
their 1,000 concurrent hits raise ``MaxConnectionsError`` 900 times. The
library uses a default client: it bounds its own round trips.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import get_args

from aiocache_patterns import Algorithm, RateLimiter, client_stats
from benchmarks._measure import Outcome
from benchmarks._optional import optional_module
from benchmarks._report import Goal, ScenarioResult, check_goals
from benchmarks._target import KEY_PREFIX, Target
from benchmarks.scenarios._base import (
    Bound,
    Case,
    Group,
    RunContext,
    VariantSpec,
    measure_cases,
)

__all__ = ["SCENARIO", "RateLimitScenario"]

RAW = "raw redis-py INCR"
SEED = "naive INCR+EXPIRE"
ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)
#: Exact algorithms admit exactly the limit; the weighted counter at most the limit.
EXACT: frozenset[str] = frozenset({"fixed_window", "sliding_log", "token_bucket", "gcra"})
#: limits' strategy (class in limits.aio.strategies) -> the library's matching algorithm.
LIMITS_STRATEGIES = {
    "FixedWindowRateLimiter": "fixed_window",
    "MovingWindowRateLimiter": "sliding_log",
    "SlidingWindowCounterRateLimiter": "sliding_window",
}


def library_name(algorithm: str) -> str:
    return f"RateLimiter {algorithm}"


def limits_name(strategy: str) -> str:
    return f"limits {strategy.removesuffix('RateLimiter')}"


KEYS = 1000
#: keys1000: a limit never reached within a run.
OPEN_LIMIT, OPEN_WINDOW = 1_000_000, 60
#: hot and burst: 100 per week, so a token bucket or GCRA refills one unit per 100 minutes
#: and the hot key stays over its limit for the whole run.
LIMIT, WINDOW = 100, 7 * 86400
BURST_HITS = 1000
#: The item indices: 0..999 the open keys, then the hot key, then the burst.
HOT = KEYS
BURST = KEYS + 1
EXPECTED: list[bool | None] = [*([True] * KEYS), False, None]
#: Pool of the non-library clients: room for the whole burst.
WIDE_POOL = BURST_HITS

#: (operations per variant per round, measured rounds) of the c=50 cases; bursts per variant.
FULL = ((2500, 21), 21)
QUICK = ((500, 5), 5)

GOALS = [
    Goal(case, library_name(ours), limits_name(theirs), 2.0)
    for case in ("keys1000-c50", "hot-c50")
    for theirs, ours in LIMITS_STRATEGIES.items()
]

#: One decision: the key, allowed or not.
Decide = Callable[[str], Awaitable[bool]]


@dataclass
class Burst:
    """Admissions of one variant in each burst (one fresh key per burst)."""

    calls: int = 0
    admitted: Counter[int] = field(default_factory=Counter)

    def per_burst(self) -> list[int]:
        bursts = self.calls // BURST_HITS
        return [self.admitted[b] for b in range(bursts)]


@contextlib.asynccontextmanager
async def _bound(
    open_decide: Decide, hot_decide: Decide, burst_decide: Decide, run: str, burst: Burst
) -> AsyncIterator[Bound]:
    """The operation over the three workloads, with the hot key filled beforehand."""
    keys = [f"{run}:user:{i}" for i in range(KEYS)]
    hot = f"{run}:hot"
    for _ in range(LIMIT):
        await hot_decide(hot)

    async def op(i: int) -> bool | None:
        if i < KEYS:
            return await open_decide(keys[i])
        if i == HOT:
            return await hot_decide(hot)
        n = burst.calls
        burst.calls += 1
        if await burst_decide(f"{run}:burst:{n // BURST_HITS}"):
            burst.admitted[n // BURST_HITS] += 1
        return None

    yield Bound(op)


# -- the variants --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _raw(target: Target, run: str, burst: Burst) -> AsyncIterator[Bound]:
    client = target.client(max_connections=WIDE_POOL)
    prefix = f"{KEY_PREFIX}:raw:"

    def decide(limit: int) -> Decide:
        async def incr(key: str) -> bool:
            count: int = await client.incr(prefix + key)
            return count <= limit

        return incr

    try:
        async with _bound(decide(OPEN_LIMIT), decide(LIMIT), decide(LIMIT), run, burst) as b:
            yield b
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def _seed(target: Target, run: str, burst: Burst) -> AsyncIterator[Bound]:
    client = target.client(max_connections=WIDE_POOL)
    prefix = f"{KEY_PREFIX}:seed:"

    def decide(limit: int, window: int) -> Decide:
        async def is_allowed(key: str) -> bool:
            # The seed's is_limited(), inverted: two round trips, not atomic; a
            # process that dies between them leaves a counter without expiry.
            count: int = await client.incr(prefix + key)
            await client.expire(prefix + key, window)
            return count <= limit

        return is_allowed

    try:
        hot = decide(LIMIT, WINDOW)
        async with _bound(decide(OPEN_LIMIT, OPEN_WINDOW), hot, hot, run, burst) as b:
            yield b
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def _library(
    target: Target, algorithm: Algorithm, run: str, burst: Burst
) -> AsyncIterator[Bound]:
    client = target.client()
    namespace = f"{KEY_PREFIX}:rl"

    def decide(limit: int, window: int) -> Decide:
        limiter = RateLimiter(client, limit, window, algorithm=algorithm, namespace=namespace)

        async def hit(key: str) -> bool:
            return (await limiter.hit(key)).allowed

        return hit

    try:
        hot = decide(LIMIT, WINDOW)
        async with _bound(decide(OPEN_LIMIT, OPEN_WINDOW), hot, hot, run, burst) as b:

            def counters() -> dict[str, int]:
                return {"round_trips": client_stats(client).round_trips}

            yield Bound(b.op, counters)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def _limits(target: Target, strategy: str, run: str, burst: Burst) -> AsyncIterator[Bound]:
    limits = optional_module("limits")
    storages = optional_module("limits.aio.storage")
    strategies = optional_module("limits.aio.strategies")
    if limits is None or storages is None or strategies is None:
        raise ImportError("limits is not importable")
    assert target.url is not None
    storage = storages.RedisStorage(
        f"async+{target.url}",
        implementation="redispy",  # redis-py's asyncio client, like ours
        # one prefix per strategy: limits' strategies share key names across types
        key_prefix=f"{KEY_PREFIX}:limits-{strategy}",
        max_connections=WIDE_POOL,
    )
    limiter = getattr(strategies, strategy)(storage)

    def decide(limit: int, window: int) -> Decide:
        item = limits.RateLimitItemPerSecond(limit, window)

        async def hit(key: str) -> bool:
            allowed: bool = await limiter.hit(item, key)
            return allowed

        return hit

    try:
        hot = decide(LIMIT, WINDOW)
        async with _bound(decide(OPEN_LIMIT, OPEN_WINDOW), hot, hot, run, burst) as b:
            yield b
    finally:
        await storage.bridge.storage.aclose()


Opener = Callable[[Target, Burst], AbstractAsyncContextManager[Bound]]


def _variants(run: str, bursts: dict[str, Burst]) -> list[VariantSpec]:
    """The variants of one run; each records its bursts in ``bursts[name]``."""

    def spec(name: str, group: Group, opener: Opener) -> VariantSpec:
        burst = bursts.setdefault(name, Burst())
        peer = group == "peer"  # limits: connects by URL itself
        return VariantSpec(
            name,
            group,
            lambda target: opener(target, burst),
            requires="limits" if peer else None,
            needs_url=peer,
        )

    specs = [
        spec(RAW, "raw", lambda t, b: _raw(t, run, b)),
        spec(SEED, "raw", lambda t, b: _seed(t, run, b)),
    ]
    specs += [spec(library_name(a), "library", _library_opener(a, run)) for a in ALGORITHMS]
    specs += [spec(limits_name(s), "peer", _limits_opener(s, run)) for s in LIMITS_STRATEGIES]
    return specs


def _library_opener(algorithm: Algorithm, run: str) -> Opener:
    return lambda target, burst: _library(target, algorithm, run, burst)


def _limits_opener(strategy: str, run: str) -> Opener:
    return lambda target, burst: _limits(target, strategy, run, burst)


def _cases(c50: tuple[int, int], bursts: int) -> list[Case]:
    rng = random.Random(20240601)
    uniform = [rng.randrange(KEYS) for _ in range(c50[0])]
    return [
        Case("keys1000-c50", "1,000 keys, all allowed, concurrency 50", 50, uniform, c50[1]),
        Case(
            "hot-c50",
            "one key over its limit, all denied, concurrency 50",
            50,
            [HOT] * c50[0],
            c50[1],
        ),
        Case(
            "burst-c1000",
            f"{BURST_HITS:,} concurrent hits, limit {LIMIT} (admitted/op: share admitted)",
            BURST_HITS,
            [BURST] * BURST_HITS,
            bursts,
        ),
    ]


def _admission(
    result: ScenarioResult, bursts: Mapping[str, Burst], groups: Mapping[str, str]
) -> None:
    """Check every burst of every variant; a library variant over the limit fails."""
    case = next(c for c in result.cases if c.name == "burst-c1000")
    outcomes: list[Outcome] = []
    for outcome in case.outcomes:
        counts = bursts[outcome.name].per_burst()
        if outcome.status != "ok" or not counts:
            outcomes.append(outcome)
            continue
        low, high = min(counts), max(counts)
        spread = f"{low}" if low == high else f"{low}-{high}"
        line = f"admitted {spread} of {BURST_HITS:,} (limit {LIMIT}), {len(counts)} bursts"
        algorithm = outcome.name.removeprefix("RateLimiter ")
        over = high > LIMIT
        short = groups.get(outcome.name) == "library" and algorithm in EXACT and low < LIMIT
        if over or short:
            line = f"{'OVER-ADMITTED' if over else 'UNDER-ADMITTED'}: {line}"
            result.notes.append(f"{outcome.name}: {line}")
            if groups.get(outcome.name) != "raw":
                outcome = dataclasses.replace(outcome, status="failed", note=line)
                outcomes.append(outcome)
                continue
        outcomes.append(dataclasses.replace(outcome, note=line))
    case.outcomes = outcomes


class RateLimitScenario:
    name = "ratelimit"
    description = (
        "rate-limit decisions/s at concurrency 50 (allowed, denied) and admissions "
        "of a 1,000-hit burst, per algorithm, vs limits and the seed"
    )

    async def run(self, ctx: RunContext) -> ScenarioResult:
        c50, bursts_per_variant = QUICK if ctx.quick else FULL
        if ctx.ops:
            c50 = (ctx.ops, c50[1])
        run = secrets.token_hex(4)  # fresh keys: nothing left from an earlier run counts
        bursts: dict[str, Burst] = {}
        variants = _variants(run, bursts)
        groups = {v.name: v.group for v in variants}
        cases = await measure_cases(
            self.name, ctx, variants, _cases(c50, bursts_per_variant), EXPECTED, RAW
        )
        result = ScenarioResult(self.name, self.description, RAW, dict(groups), cases)
        _admission(result, bursts, groups)
        result.goals = check_goals(cases, GOALS, ctx.target.speed_figure)
        return result


SCENARIO = RateLimitScenario()
