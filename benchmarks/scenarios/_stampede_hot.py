"""The hot key of the ``stampede`` scenario: steady load across several expiries.

``callers`` tasks read one key in a loop for ``duration`` seconds; the key
was filled just before (that first load is not counted), and its TTL is a
fraction of the duration, so it expires (or is refreshed) several times.

Who waited for a loader: loads that overlap in time are one *refresh* (the
naive code's 50 loads of one expiry are one); a read *waited for* a refresh
if it spent at least ``WAITED_FRACTION`` of a load's time inside that
refresh's span. That alone would also count reads that were merely slow
while a refresh ran in the background, as when this process is descheduled
on a shared machine; so a monitor task watches the event loop, and a slow
read that overlaps a stall of the loop (``STALL`` or longer) is not counted
as a wait. Slow reads no refresh explains are counted apart ("other slow
reads"): stalls, or the variant's own slowness.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

from benchmarks._measure import percentile
from benchmarks.scenarios._stampede_variants import Call, CountedLoader, value_for

__all__ = ["STALL", "WAITED_FRACTION", "HotResult", "steady_load"]

#: A read that spent this fraction of a load's time inside a refresh waited for it.
WAITED_FRACTION = 0.8
#: The event loop late by this much (seconds) is a stall of this process.
STALL = 0.04
_TICK = 0.005


@dataclass(frozen=True)
class HotResult:
    reads: int
    seconds: float
    loads: int
    refreshes: int  # loads that overlap in time count as one refresh
    waited: int  # reads that waited for a loader
    max_waited_per_refresh: int  # the most reads that waited for one refresh
    other_slow: int  # reads as slow as a wait that no refresh explains
    stalls: int  # event-loop stalls of this process during the load
    errors: int
    wrong: int
    problem: str | None
    p50_ms: float
    p99_ms: float

    @property
    def reads_per_s(self) -> float:
        return self.reads / self.seconds if self.seconds > 0 else 0.0


async def steady_load(
    call: Call, loader: CountedLoader, key: str, callers: int, duration: float
) -> HotResult:
    """Fill ``key``, then read it with ``callers`` tasks in a loop for ``duration`` seconds."""
    expected = value_for(key)
    await call(key)  # the first fill: not part of the measurement
    loader.reset()
    reads: list[tuple[float, float]] = []  # (started, ended) in time.time() seconds
    stalls: list[tuple[float, float]] = []
    errors = wrong = 0
    problem: str | None = None
    stop = time.time() + duration

    async def reader() -> None:
        nonlocal errors, wrong, problem
        while (started := time.time()) < stop:
            try:
                value = await call(key)
            except Exception as exc:
                errors += 1
                problem = problem or f"raised {type(exc).__name__}: {exc}"[:200]
                await asyncio.sleep(0.001)  # an error is fast: do not spin on it
                continue
            reads.append((started, time.time()))
            if value != expected:
                wrong += 1
                problem = problem or f"read {value!r:.80}, expected {expected!r:.80}"

    async def monitor() -> None:
        while (before := time.time()) < stop:
            await asyncio.sleep(_TICK)
            late = time.time() - before - _TICK
            if late >= STALL:
                stalls.append((before + _TICK, before + _TICK + late))

    started = time.perf_counter()
    await asyncio.gather(monitor(), *(reader() for _ in range(callers)))
    seconds = time.perf_counter() - started
    return _summarise(reads, stalls, loader, seconds, errors, wrong, problem)


def _refreshes(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Loads that overlap in time make one refresh: its (start, end)."""
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return min(a[1], b[1]) - max(a[0], b[0])


def _summarise(
    reads: list[tuple[float, float]],
    stalls: list[tuple[float, float]],
    loader: CountedLoader,
    seconds: float,
    errors: int,
    wrong: int,
    problem: str | None,
) -> HotResult:
    threshold = WAITED_FRACTION * loader.seconds
    refreshes = _refreshes(loader.spans)
    per_refresh: Counter[int] = Counter()
    waited = other = 0
    for read in reads:
        if read[1] - read[0] < threshold:
            continue
        stalled = any(_overlap(read, s) > 0 for s in stalls)
        index = next((i for i, r in enumerate(refreshes) if _overlap(read, r) >= threshold), None)
        if index is None or stalled:
            other += 1
        else:
            waited += 1
            per_refresh[index] += 1
    latencies = sorted((end - start) * 1000 for start, end in reads)
    return HotResult(
        reads=len(reads),
        seconds=seconds,
        loads=loader.calls,
        refreshes=len(refreshes),
        waited=waited,
        max_waited_per_refresh=max(per_refresh.values(), default=0),
        other_slow=other,
        stalls=len(stalls),
        errors=errors,
        wrong=wrong,
        problem=problem,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
    )
