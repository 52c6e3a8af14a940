"""Timing helpers shared by every scenario.

A *run* drives one variant for N operations with C worker tasks and times it.
Variants are *interleaved* in rounds (A B C, B C A, C A B, ...; rotated so
none always runs first): the first round is a
warm-up and is discarded, and each variant is reported by its median round, so
a burst of noise on this small machine hits every variant alike instead of
one. Ratios are paired: variant / baseline within each round, then the median.
Latency percentiles pool every measured round. On a noisy virtual machine,
many short rounds beat a few long ones: noise comes in bursts shorter than a
second, and the paired median washes them out.

Every result is checked against the expected value; a variant that raises or
returns wrong data is *failed* (and dropped from later rounds), never fast.
"""

from __future__ import annotations

import gc
import itertools
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

__all__ = [
    "Contender",
    "Op",
    "Outcome",
    "Sample",
    "interleave",
    "percentile",
    "run_ops",
    "skipped",
]

#: One operation: ``await op(i)`` for item ``i`` returns the value read.
Op = Callable[[int], Awaitable[Any]]
#: A snapshot of a variant's own counters (round trips, loader calls...).
Counters = Callable[[], Mapping[str, int]]
Status = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True)
class Contender:
    """A variant ready to run: its operation, and optionally its counters."""

    name: str
    op: Op
    counters: Counters | None = None


@dataclass
class Sample:
    """One timed run of one variant."""

    ops: int
    seconds: float
    latencies: list[float]  # seconds, sorted; successful operations only
    cpu_seconds: float = 0.0  # this process's CPU time during the run
    errors: int = 0
    wrong: int = 0
    problem: str | None = None
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    @property
    def failed(self) -> bool:
        return self.errors > 0 or self.wrong > 0


@dataclass(frozen=True)
class Outcome:
    """What a variant scored in one case: median round, paired ratio, pooled latencies."""

    name: str
    status: Status
    note: str = ""
    ops_per_s: float | None = None
    ratio: float | None = None  # median of the per-round ratios to the baseline
    ratio_iqr: tuple[float, float] | None = None  # their interquartile range
    p50_us: float | None = None
    p99_us: float | None = None
    cpu_us: float | None = None  # client CPU per operation (median over rounds)
    round_ops_per_s: tuple[float, ...] = ()
    per_op: dict[str, float] = field(default_factory=dict)  # counters per operation


def skipped(name: str, note: str) -> Outcome:
    return Outcome(name, "skipped", note)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    rank = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


async def run_ops(
    op: Op, indices: Sequence[int], expected: Sequence[Any], concurrency: int
) -> Sample:
    """``op(i)`` for every ``i`` in ``indices``, by ``concurrency`` worker tasks."""
    total = len(indices)
    counter = itertools.count()
    latencies: list[float] = []
    record = latencies.append
    errors = wrong = 0
    problem: str | None = None
    perf = time.perf_counter

    async def worker() -> None:
        nonlocal errors, wrong, problem
        while (n := next(counter)) < total:
            i = indices[n]
            started = perf()
            try:
                value = await op(i)
            except Exception as exc:
                errors += 1
                problem = problem or f"raised {type(exc).__name__}: {exc}"
                continue
            record(perf() - started)
            if value != expected[i]:
                wrong += 1
                problem = problem or f"item {i}: read {value!r:.80}, expected {expected[i]!r:.80}"

    cpu_started = time.process_time()
    started = perf()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    seconds = perf() - started
    cpu_seconds = time.process_time() - cpu_started
    latencies.sort()
    return Sample(total, seconds, latencies, cpu_seconds, errors, wrong, problem)


async def interleave(
    contenders: Sequence[Contender],
    *,
    indices: Sequence[int],
    expected: Sequence[Any],
    concurrency: int,
    rounds: int,
    baseline: str,
    on_run: Callable[[str, int], None] = lambda name, round_no: None,
) -> list[Outcome]:
    """Run every contender in turn, ``rounds`` times after one warm-up round."""
    samples: dict[str, list[Sample]] = {c.name: [] for c in contenders}
    failures: dict[str, Sample] = {}
    for round_no in range(rounds + 1):
        shift = round_no % len(contenders) if contenders else 0
        for contender in [*contenders[shift:], *contenders[:shift]]:  # no fixed first place
            if contender.name in failures:
                on_run(contender.name, round_no)
                continue
            sample = await _timed(contender, indices, expected, concurrency)
            if sample.failed:
                failures[contender.name] = sample
            elif round_no > 0:
                samples[contender.name].append(sample)
            on_run(contender.name, round_no)
    base = samples.get(baseline, []) if baseline not in failures else []
    return [
        _failed(c.name, failures[c.name])
        if c.name in failures
        else _summary(c.name, samples[c.name], base)
        for c in contenders
    ]


async def _timed(
    contender: Contender, indices: Sequence[int], expected: Sequence[Any], concurrency: int
) -> Sample:
    gc.collect()
    before = dict(contender.counters()) if contender.counters else {}
    sample = await run_ops(contender.op, indices, expected, concurrency)
    if contender.counters:
        after = contender.counters()
        sample.counters = {k: after[k] - before.get(k, 0) for k in after}
    return sample


def _failed(name: str, sample: Sample) -> Outcome:
    counts = f"{sample.errors} errors, {sample.wrong} wrong values in {sample.ops} ops"
    return Outcome(name, "failed", f"FAILED ({counts}); first: {sample.problem}")


def _summary(name: str, samples: list[Sample], base: list[Sample]) -> Outcome:
    median = sorted(samples, key=lambda s: s.ops_per_s)[(len(samples) - 1) // 2]
    ratio = iqr = None
    if len(base) == len(samples) and samples:
        ratios = [s.ops_per_s / b.ops_per_s for s, b in zip(samples, base, strict=True)]
        ratio = statistics.median(ratios)
        if len(ratios) > 1:
            q1, _, q3 = statistics.quantiles(ratios, n=4)
            iqr = (q1, q3)
    latencies = sorted(itertools.chain.from_iterable(s.latencies for s in samples))
    return Outcome(
        name,
        "ok",
        ops_per_s=median.ops_per_s,
        ratio=ratio,
        ratio_iqr=iqr,
        p50_us=percentile(latencies, 0.50) * 1e6,
        p99_us=percentile(latencies, 0.99) * 1e6,
        cpu_us=statistics.median(s.cpu_seconds / s.ops for s in samples) * 1e6,
        round_ops_per_s=tuple(s.ops_per_s for s in samples),
        per_op={k: v / median.ops for k, v in median.counters.items()},
    )
