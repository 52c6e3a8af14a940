"""``lock``: hand-off under contention, and uncontended acquire/release, with exclusion checked.

Contention: W workers each take the lock N times (a tiny critical section),
all at once. A *hand-off* is the time from one worker starting its release to
another worker holding the lock; *changes* counts how often the holder
changed (W x N - 1 at best: no worker barges back in ahead of the queue);
*overlaps* counts two holders at once (must be 0). Uncontended: one worker
acquires and releases in a loop.

Variants: this library's ``Lock``; redis-py's asyncio ``Lock`` as it comes
(polls every 100 ms) and tuned (``sleep=0.01``); cashews' ``cache.lock``
(when installed). Each runs on its own client, variants interleaved over
several repeats; the median repeat is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from aiocache_patterns import Lock
from benchmarks._optional import missing_note, optional_module, version_of
from benchmarks._report import Chart, Goal, GoalCheck, ScenarioResult, Table
from benchmarks._target import EMBEDDED_NOTE, KEY_PREFIX, Target
from benchmarks.scenarios._base import RunContext

__all__ = ["SCENARIO", "LockScenario"]

LIBRARY = "aiocache_patterns Lock"
REDIS_PY = "redis-py Lock (default)"
REDIS_PY_TUNED = "redis-py Lock (sleep=0.01)"
CASHEWS = "cashews cache.lock"

#: (workers, acquisitions each, uncontended cycles, repeats)
FULL = (20, 10, 300, 3)
QUICK = (10, 5, 100, 3)  # three repeats: a median and a spread, even quick

MakeLock = Callable[[str], AbstractAsyncContextManager[Any]]


@dataclass
class Contention:
    acquisitions: int
    changes: int
    overlaps: int
    handoff_p50_ms: float
    handoff_p99_ms: float
    seconds: float


@contextlib.asynccontextmanager
async def _library(target: Target) -> AsyncIterator[MakeLock]:
    client = target.client()
    try:
        yield lambda name: Lock(
            client, name, ttl=30, blocking_timeout=120, namespace=f"{KEY_PREFIX}:lock"
        )
    finally:
        await client.aclose()


def _redis_py(sleep: float) -> Callable[[Target], AbstractAsyncContextManager[MakeLock]]:
    @contextlib.asynccontextmanager
    async def open_variant(target: Target) -> AsyncIterator[MakeLock]:
        client = target.client()
        try:
            yield lambda name: client.lock(
                f"{KEY_PREFIX}:rlock:{name}", timeout=30, sleep=sleep, blocking_timeout=120
            )
        finally:
            await client.aclose()

    return open_variant


@contextlib.asynccontextmanager
async def _cashews(target: Target) -> AsyncIterator[MakeLock]:
    cashews: Any = optional_module("cashews")
    cache = cashews.Cache()
    cache.setup(target.url)
    try:
        yield lambda name: cache.lock(f"{KEY_PREFIX}:clock:{name}", expire=30)
    finally:
        await cache.close()


VARIANTS: list[
    tuple[str, Callable[[Target], AbstractAsyncContextManager[MakeLock]], str | None]
] = [
    (LIBRARY, _library, None),
    (REDIS_PY, _redis_py(0.1), None),
    (REDIS_PY_TUNED, _redis_py(0.01), None),
    (CASHEWS, _cashews, "cashews"),
]
GROUPS = {LIBRARY: "library", REDIS_PY: "raw", REDIS_PY_TUNED: "raw", CASHEWS: "peer"}


async def _contend(make: MakeLock, name: str, workers: int, each: int) -> Contention:
    holder: int | None = None
    overlaps = 0
    order: list[int] = []
    handoffs: list[float] = []
    last: tuple[int, float] | None = None  # (worker, when its release started)

    async def worker(me: int) -> None:
        nonlocal holder, overlaps, last
        for _ in range(each):
            async with make(name):
                now = time.perf_counter()
                if holder is not None:
                    overlaps += 1
                holder = me
                if last is not None and last[0] != me:
                    handoffs.append(now - last[1])
                order.append(me)
                await asyncio.sleep(0)
                holder = None
                last = (me, time.perf_counter())

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(workers)))
    seconds = time.perf_counter() - started
    changes = sum(1 for a, b in itertools.pairwise(order) if a != b)
    handoffs.sort()
    p99 = handoffs[min(len(handoffs) - 1, int(len(handoffs) * 0.99))] if handoffs else 0.0
    return Contention(
        len(order),
        changes,
        overlaps,
        statistics.median(handoffs) * 1000 if handoffs else 0.0,
        p99 * 1000,
        seconds,
    )


async def _uncontended(make: MakeLock, name: str, cycles: int) -> float:
    started = time.perf_counter()
    for _ in range(cycles):
        async with make(name):
            pass
    return cycles / (time.perf_counter() - started)


class LockScenario:
    name = "lock"
    description = "lock hand-off under 20-way contention, and uncontended acquire/release"

    async def run(self, ctx: RunContext) -> ScenarioResult:
        workers, each, cycles, repeats = QUICK if ctx.quick else FULL
        if ctx.rounds:
            repeats = ctx.rounds
        skips: dict[str, str] = {}
        runs: dict[str, list[Contention]] = {}
        rates: dict[str, list[float]] = {}
        async with contextlib.AsyncExitStack() as stack:
            opened: list[tuple[str, MakeLock]] = []
            for name, open_variant, requires in VARIANTS:
                if requires is not None and version_of(requires) is None:
                    skips[name] = f"skipped: {missing_note(requires)}"
                elif requires is not None and ctx.target.url is None:
                    skips[name] = f"skipped: needs a Redis URL ({EMBEDDED_NOTE})"
                else:
                    opened.append(
                        (name, await stack.enter_async_context(open_variant(ctx.target)))
                    )
            ctx.progress.start(self.name, repeats * len(opened) * 2)
            for repeat in range(repeats):
                for index, (name, make) in enumerate(opened):
                    ctx.progress.step(f"repeat {repeat + 1}/{repeats}: {name}, contended")
                    lock_name = f"r{repeat}v{index}"
                    runs.setdefault(name, []).append(
                        await _contend(make, lock_name, workers, each)
                    )
                    ctx.progress.step(f"repeat {repeat + 1}/{repeats}: {name}, uncontended")
                    rates.setdefault(name, []).append(
                        await _uncontended(make, f"u{lock_name}", cycles)
                    )
        return self._result(ctx, workers, each, runs, rates, skips)

    def _result(
        self,
        ctx: RunContext,
        workers: int,
        each: int,
        runs: dict[str, list[Contention]],
        rates: dict[str, list[float]],
        skips: dict[str, str],
    ) -> ScenarioResult:
        result = ScenarioResult(self.name, self.description, REDIS_PY, GROUPS, [])
        repeats = max((len(found) for found in runs.values()), default=0)
        median: dict[str, Contention] = {
            name: sorted(found, key=lambda c: c.handoff_p50_ms)[len(found) // 2]
            for name, found in runs.items()
        }
        rows = []
        for name, *_ in VARIANTS:
            if name in skips:
                rows.append([name] + ["—"] * 6 + [skips[name]])
                continue
            c = median[name]
            rows.append(
                [
                    name,
                    f"{c.handoff_p50_ms:.3f}",
                    f"{c.handoff_p99_ms:.2f}",
                    f"{c.changes} / {c.acquisitions - 1}",
                    str(sum(r.overlaps for r in runs[name])),
                    f"{c.acquisitions / c.seconds:,.0f}",
                    f"{statistics.median(rates[name]):,.0f}",
                    "",
                ]
            )
        result.tables.append(
            Table(
                f"{workers} workers x {each} acquisitions (median of {repeats} repeats)",
                [
                    "variant",
                    "hand-off p50 ms",
                    "hand-off p99 ms",
                    "holder changes",
                    "overlaps (all runs)",
                    "acquisitions/s",
                    "uncontended cycles/s",
                    "note",
                ],
                rows,
            )
        )
        result.charts.append(
            Chart(
                "median cross-worker hand-off (ms, log scale)",
                "",
                "ms",
                {name: [(0.0, c.handoff_p50_ms)] for name, c in median.items()},
                kind="bar",
                log_y=True,
            )
        )
        for name, found in runs.items():
            if sum(r.overlaps for r in found) and GROUPS[name] != "peer":
                result.errors.append(f"{name}: two holders at once")
        result.goals = self._goals(ctx, workers, each, median, runs)
        return result

    def _goals(
        self,
        ctx: RunContext,
        workers: int,
        each: int,
        median: dict[str, Contention],
        runs: dict[str, list[Contention]],
    ) -> list[GoalCheck]:
        checks: list[GoalCheck] = []
        ours = median.get(LIBRARY)
        if ours is None:
            return checks
        speed = ctx.target.speed_figure
        for versus, minimum in ((CASHEWS, 6.0), (REDIS_PY_TUNED, 15.0), (REDIS_PY, 200.0)):
            theirs = median.get(versus)
            goal = Goal("contended", LIBRARY, versus, minimum)
            if theirs is None or ours.handoff_p50_ms <= 0:
                checks.append(GoalCheck(goal, None, None, f"hand-off vs {versus}: not measured"))
                continue
            ratio = theirs.handoff_p50_ms / ours.handoff_p50_ms
            met = ratio >= minimum if speed else None
            mark = "✓" if met else ("✗" if met is False else "(not a speed figure)")
            spread = _spread(runs.get(LIBRARY, []), runs.get(versus, []))
            line = (
                f"hand-off {ratio:.1f}x faster than {versus}{spread} "
                f"[target ≥ {minimum:g}x] {mark}"
            )
            checks.append(GoalCheck(goal, ratio, met, line))
        absolute = ours.handoff_p50_ms <= 0.5 if speed else None
        checks.append(
            GoalCheck(
                Goal("contended", LIBRARY, "0.5 ms", 1.0),
                ours.handoff_p50_ms,
                absolute,
                f"median hand-off {ours.handoff_p50_ms:.3f} ms [target ≤ 0.5 ms] "
                + ("✓" if absolute else "✗" if absolute is False else "(not a speed figure)"),
            )
        )
        wanted = 150 * workers * each // 200
        fair = ours.changes >= wanted
        checks.append(
            GoalCheck(
                Goal("contended", LIBRARY, "changes", float(wanted)),
                float(ours.changes),
                fair,
                f"holder changed {ours.changes} times in {ours.acquisitions} acquisitions "
                f"[target ≥ {wanted}] {'✓' if fair else '✗'}",
            )
        )
        return checks


def _spread(ours: list[Contention], theirs: list[Contention]) -> str:
    """`` (repeats: 1.2-2.3x)``: the lowest and highest ratio of one repeat, or ""."""
    ratios = [
        t.handoff_p50_ms / o.handoff_p50_ms
        for o, t in zip(ours, theirs, strict=False)
        if o.handoff_p50_ms > 0
    ]
    if len(ratios) < 2:
        return ""
    return f" (repeats: {min(ratios):.1f}-{max(ratios):.1f}x)"


SCENARIO = LockScenario()
