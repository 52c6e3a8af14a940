"""``otel``: what OpenTelemetry costs a cache hit.

The same ``Cache.get_or_load`` hits (every read a hit) in three telemetry
states, interleaved in one run:

* **no telemetry**: ``configure_telemetry(enabled=False)``, which is what the
  library does without ``opentelemetry-api`` installed (the baseline);
* **otel API, no SDK**: the API installed, the global meter provider the API's
  proxy (no SDK set up): instruments exist and record nothing;
* **otel SDK**: an SDK ``MeterProvider`` whose periodic reader collects every
  second (into an exporter that drops the data): what a service that exports
  its metrics pays.

Targets (issue #20): API at least 0.97 and SDK at least 0.85 times the no-telemetry hit
throughput, in every case. A fourth variant, the SDK with spans on
(``tracing=True``, the SDK's tracer with no processor), is shown for information.

The telemetry state is the process's, so each variant sets its own just
before each of its timed runs (the harness reads a variant's counters right
before it runs it); the raw redis-py variant is the floor, as in ``hit``.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from aiocache_patterns import Cache, client_stats, configure_telemetry
from aiocache_patterns._telemetry import TELEMETRY
from benchmarks._optional import optional_module
from benchmarks._report import Goal, ScenarioResult, check_goals
from benchmarks._target import KEY_PREFIX, Target
from benchmarks.scenarios._base import Bound, Case, RunContext, VariantSpec, measure_cases
from benchmarks.scenarios._items import ITEMS, KEYS, TTL, VALUES

__all__ = ["SCENARIO", "OtelScenario"]

RAW = "raw redis-py"
OFF = "get_or_load, no telemetry"
API = "get_or_load, otel API (no SDK)"
SDK = "get_or_load, otel SDK (metrics)"
SPANS = "get_or_load, otel SDK (metrics + spans)"

#: (operations per variant per round, measured rounds), as in ``hit``.
FULL = ((200, 61), (2500, 21))
QUICK = ((100, 9), (500, 5))

GOALS = [
    Goal(case, variant, OFF, minimum)
    for case in ("hot-c1", "keys1000-c1", "keys1000-c50")
    for variant, minimum in ((API, 0.97), (SDK, 0.85))
]


class _Modes:
    """The SDK provider (made once per run) and a switch to each telemetry state."""

    def __init__(self) -> None:
        self.provider: Any = None
        self.tracer_provider: Any = None
        sdk_metrics = optional_module("opentelemetry.sdk.metrics")
        export = optional_module("opentelemetry.sdk.metrics.export")
        sdk_trace = optional_module("opentelemetry.sdk.trace")
        if sdk_metrics is not None and export is not None and sdk_trace is not None:
            success = export.MetricExportResult.SUCCESS

            class Discard(export.MetricExporter):  # type: ignore[misc,name-defined]
                def export(self, metrics_data: Any, timeout_millis: float = 0, **kw: Any) -> Any:
                    return success

                def force_flush(self, timeout_millis: float = 0) -> bool:
                    return True

                def shutdown(self, timeout_millis: float = 0, **kwargs: Any) -> None:
                    return None

            reader = export.PeriodicExportingMetricReader(Discard(), export_interval_millis=1000)
            self.provider = sdk_metrics.MeterProvider(metric_readers=[reader])
            self.tracer_provider = sdk_trace.TracerProvider()

    def set(self, mode: str) -> None:
        TELEMETRY.reset()
        if mode == OFF:
            configure_telemetry(enabled=False)
        elif mode in (SDK, SPANS):
            configure_telemetry(
                meter_provider=self.provider,
                tracer_provider=self.tracer_provider,
                tracing=mode == SPANS,
            )

    def close(self) -> None:
        TELEMETRY.reset()
        if self.provider is not None:
            self.provider.shutdown()


async def _load(i: int) -> dict[str, Any]:
    return VALUES[i]


@contextlib.asynccontextmanager
async def _raw(target: Target) -> AsyncIterator[Bound]:
    client = target.client()
    keys = [f"{KEY_PREFIX}:oraw:{k}" for k in KEYS]
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


def _library(modes: _Modes, mode: str) -> Callable[[Target], Any]:
    @contextlib.asynccontextmanager
    async def open_variant(target: Target) -> AsyncIterator[Bound]:
        modes.set(mode)
        client = target.client()
        cache = Cache(client, namespace=f"{KEY_PREFIX}:otel", ttl=TTL)
        try:
            await cache.set_many(dict(zip(KEYS, VALUES, strict=True)))

            async def op(i: int) -> Any:
                return await cache.get_or_load(KEYS[i], lambda: _load(i))

            def counters() -> dict[str, int]:
                modes.set(mode)  # read right before (and after) each timed run
                return {
                    "round_trips": client_stats(client).round_trips,
                    "loads": cache.stats.loads,
                }

            yield Bound(op, counters)
        finally:
            await cache.aclose()
            await client.aclose()

    return open_variant


def _variants(modes: _Modes) -> Sequence[VariantSpec]:
    return [
        VariantSpec(RAW, "raw", _raw),
        VariantSpec(OFF, "library", _library(modes, OFF)),
        VariantSpec(API, "library", _library(modes, API), requires="opentelemetry-api"),
        VariantSpec(SDK, "library", _library(modes, SDK), requires="opentelemetry-sdk"),
        VariantSpec(SPANS, "library", _library(modes, SPANS), requires="opentelemetry-sdk"),
    ]


def _cases(c1: tuple[int, int], c50: tuple[int, int]) -> list[Case]:
    rng = random.Random(20240601)
    uniform = [rng.randrange(ITEMS) for _ in range(max(c1[0], c50[0]))]
    return [
        Case("hot-c1", "one hot key, concurrency 1", 1, [0] * c1[0], c1[1]),
        Case("keys1000-c1", "1,000 keys, concurrency 1", 1, uniform[: c1[0]], c1[1]),
        Case("keys1000-c50", "1,000 keys, concurrency 50", 50, uniform[: c50[0]], c50[1]),
    ]


class OtelScenario:
    name = "otel"
    description = "the cost of OpenTelemetry on cache hits: none, the API alone, the SDK"

    async def run(self, ctx: RunContext) -> ScenarioResult:
        c1, c50 = QUICK if ctx.quick else FULL
        if ctx.ops:
            c1, c50 = (ctx.ops, c1[1]), (ctx.ops, c50[1])
        modes = _Modes()
        try:
            variants = _variants(modes)
            cases = await measure_cases(self.name, ctx, variants, _cases(c1, c50), VALUES, RAW)
        finally:
            modes.close()
        result = ScenarioResult(
            self.name, self.description, RAW, {v.name: v.group for v in variants}, cases
        )
        result.goals = check_goals(cases, GOALS, ctx.target.speed_figure)
        loads = sum(o.per_op.get("loads", 0.0) for c in cases for o in c.outcomes)
        if loads:
            result.notes.append("a library variant called its loader: some reads were not hits")
        return result


SCENARIO = OtelScenario()
