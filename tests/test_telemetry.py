"""OpenTelemetry: the instruments' names and attributes (a contract), what they count,
and spans, on every backend; an SDK's in-memory reader and exporter stand in for a
collector."""

from __future__ import annotations

import asyncio
import gc
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aiocache_patterns import (
    Cache,
    Idempotency,
    Leaderboard,
    Lock,
    RateLimiter,
    Semaphore,
    configure_telemetry,
)
from aiocache_patterns._telemetry import TELEMETRY
from tests._servers import free_port

_names = itertools.count()


def _ns(prefix: str) -> str:
    """A namespace no other test uses: the instruments sum every object of a namespace."""
    return f"otel-{prefix}-{next(_names)}"


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    configure_telemetry(meter_provider=MeterProvider(metric_readers=[reader]))
    yield reader
    TELEMETRY.reset()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    configure_telemetry(tracer_provider=provider)
    yield exporter
    TELEMETRY.reset()


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    found: list[Any] = []
    if data is None:
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "aiocache_patterns"
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


def _values(reader: InMemoryMetricReader, name: str, **match: str) -> dict[str, float]:
    """``{result or outcome or kind: value}`` of the points whose attributes include ``match``."""
    values: dict[str, float] = {}
    for point in _points(reader, name):
        attributes = dict(point.attributes)
        if all(attributes.get(k) == v for k, v in match.items()):
            rest = {k: v for k, v in attributes.items() if k not in match}
            label = ",".join(f"{v}" for _, v in sorted(rest.items()))
            if isinstance(point, NumberDataPoint):
                values[label] = point.value
            else:
                assert isinstance(point, HistogramDataPoint)
                values[label] = point.count
    return values


# -- metrics ---------------------------------------------------------------------


async def test_cache_requests_count_hits_misses_stale_and_errors(
    redis: Any, reader: InMemoryMetricReader
) -> None:
    ns = _ns("cache")
    cache = Cache(redis, namespace=ns, ttl=60)
    await cache.set("a", 1)
    assert await cache.get("a") == 1
    assert await cache.get("b") is None
    assert await cache.get_or_load("c", _value(3)) == 3

    async def broken() -> int:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        await cache.get_or_load("d", broken)
    counts = _values(reader, "aiocache_patterns.cache.requests", namespace=ns)
    stats = cache.stats
    assert counts == {"hit": 1, "miss": 3, "stale": 0, "error": 1}
    assert (stats.hits, stats.misses, stats.errors) == (1, 3, 1)
    # A second cache of the same namespace adds to the same series.
    other = Cache(redis, namespace=ns, ttl=60)
    assert await other.get("a") == 1
    assert _values(reader, "aiocache_patterns.cache.requests", namespace=ns)["hit"] == 2


async def test_a_collected_cache_keeps_counting_in_the_totals(
    redis: Any, reader: InMemoryMetricReader
) -> None:
    """A counter never goes down: a cache that is garbage collected leaves its counts."""
    ns = _ns("gone")
    cache = Cache(redis, namespace=ns, ttl=60)
    await cache.set("a", 1)
    await cache.get("a")
    await cache.get("zzz")
    del cache
    gc.collect()
    assert _values(reader, "aiocache_patterns.cache.requests", namespace=ns) == {
        "hit": 1,
        "miss": 1,
        "stale": 0,
        "error": 0,
    }


def _value(value: Any) -> Any:
    async def load() -> Any:
        return value

    return load


async def test_cache_load_duration_by_outcome(redis: Any, reader: InMemoryMetricReader) -> None:
    ns = _ns("load")
    cache = Cache(redis, namespace=ns, ttl=60)

    async def slow() -> int:
        await asyncio.sleep(0.02)
        return 1

    async def broken() -> int:
        raise ValueError("nope")

    await cache.get_or_load("a", slow)
    with pytest.raises(ValueError, match="nope"):
        await cache.get_or_load("b", broken)
    points = {
        dict(p.attributes)["outcome"]: p
        for p in _points(reader, "aiocache_patterns.cache.load.duration")
        if dict(p.attributes)["namespace"] == ns
    }
    assert set(points) == {"success", "error"}
    assert points["success"].count == 1
    assert 0.015 <= points["success"].sum < 5  # seconds, not milliseconds
    assert points["error"].count == 1
    # Buckets for seconds (an SDK's defaults, 0 to 10,000, suit milliseconds).
    assert points["success"].explicit_bounds[:3] == (0.0005, 0.001, 0.0025)


async def test_ratelimit_decisions_allowed_denied_degraded(
    redis: Any, reader: InMemoryMetricReader
) -> None:
    ns = _ns("rl")
    limiter = RateLimiter(redis, limit=2, window=60, algorithm="fixed_window", namespace=ns)
    for _ in range(3):
        await limiter.hit("k")
    await limiter.peek("k")  # a peek is no decision
    counts = _values(
        reader, "aiocache_patterns.ratelimit.decisions", namespace=ns, algorithm="fixed_window"
    )
    assert counts == {"allowed": 2, "denied": 1, "degraded": 0}

    dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.2)
    for fail_open in (True, False):
        down = RateLimiter(
            dead, limit=2, window=60, namespace=ns, fail_open=fail_open, timeout=0.3
        )
        result = await down.hit("k")
        assert result.degraded
    counts = _values(
        reader, "aiocache_patterns.ratelimit.decisions", namespace=ns, algorithm="sliding_window"
    )
    # Decided without Redis: counted as degraded only, whichever way fail_open went.
    assert counts == {"allowed": 0, "denied": 0, "degraded": 2}
    await dead.aclose()


async def test_lock_wait_duration_by_kind_and_outcome(
    redis: Any, reader: InMemoryMetricReader
) -> None:
    ns = _ns("lock")
    holder = Lock(redis, "res", namespace=ns, ttl=10)
    assert await holder.acquire()
    assert not await Lock(redis, "res", namespace=ns, blocking_timeout=0.05).acquire()
    waiter = asyncio.ensure_future(Lock(redis, "res", namespace=ns).acquire())
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await holder.release()
    sem = Semaphore(redis, "pool", 1, namespace=ns)
    assert await sem.acquire()
    await sem.release()
    counts = _values(reader, "aiocache_patterns.lock.wait.duration")
    assert counts["lock,acquired"] >= 1
    assert counts["lock,timeout"] >= 1
    assert counts["lock,cancelled"] >= 1
    assert counts["semaphore,acquired"] >= 1


async def test_round_trips_and_batch_sizes_by_kind(
    redis: Any, reader: InMemoryMetricReader
) -> None:
    cache = Cache(redis, namespace=_ns("trips"), ttl=60)
    await cache.set_many({f"k{i}": i for i in range(5)})
    before = _values(reader, "aiocache_patterns.redis.round_trips")
    sizes_before = _values(reader, "aiocache_patterns.redis.batch.size")
    await cache.get("k0")  # a lone caller: one single round trip
    assert await cache.get_many([f"k{i}" for i in range(5)]) == {f"k{i}": i for i in range(5)}
    after = _values(reader, "aiocache_patterns.redis.round_trips")
    sizes = _values(reader, "aiocache_patterns.redis.batch.size")
    assert set(after) == {"mget", "pipeline", "single"}
    assert after["single"] - before.get("single", 0) == 1
    batched = sum(after[k] - before.get(k, 0) for k in ("mget", "pipeline"))
    assert batched >= 1  # one MGET (one per slot on a cluster: a pipeline of them)
    assert sizes["single"] - sizes_before.get("single", 0) == 1  # a batch of one
    assert sum(sizes.get(k, 0) - sizes_before.get(k, 0) for k in ("mget", "pipeline")) >= 1


async def test_breaker_state_gauge_per_node(reader: InMemoryMetricReader) -> None:
    port = free_port()
    dead = aioredis.Redis(port=port, socket_connect_timeout=0.2)
    cache = Cache(dead, namespace=_ns("breaker"), timeout=0.3)
    node = f"localhost:{port}"
    assert _values(reader, "aiocache_patterns.breaker.state", node=node) == {"": 0}
    for _ in range(8):
        await cache.get("a")  # fail-open: misses, and the breaker counts the failures
    assert _values(reader, "aiocache_patterns.breaker.state", node=node) == {"": 2}
    await dead.aclose()


async def test_without_an_sdk_nothing_is_recorded_call_by_call(redis: Any) -> None:
    """The API alone (the global provider is a proxy): the recorders are off."""
    TELEMETRY.reset()
    assert not TELEMETRY.metrics_on
    cache = Cache(redis, namespace=_ns("nosdk"), ttl=60)
    assert await cache.get_or_load("a", _value(1)) == 1
    assert not TELEMETRY.metrics_on


async def test_disabled_telemetry_observes_nothing(redis: Any) -> None:
    reader = InMemoryMetricReader()
    configure_telemetry(meter_provider=MeterProvider(metric_readers=[reader]), enabled=False)
    try:
        assert not TELEMETRY.metrics_on
        cache = Cache(redis, namespace=_ns("off"), ttl=60)
        await cache.get_or_load("a", _value(1))
        assert _points(reader, "aiocache_patterns.cache.load.duration") == []
    finally:
        TELEMETRY.reset()


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(TypeError, match="meter_provider"):
        configure_telemetry(meter_provider=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tracer_provider"):
        configure_telemetry(tracer_provider="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tracing"):
        configure_telemetry(tracing="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tracing"):
        Cache(aioredis.Redis(), tracing="on")  # type: ignore[arg-type]


# -- spans -----------------------------------------------------------------------


async def test_spans_are_off_by_default(redis: Any, spans: InMemorySpanExporter) -> None:
    cache = Cache(redis, namespace=_ns("quiet"), ttl=60)
    await cache.get_or_load("a", _value(1))
    assert spans.get_finished_spans() == ()
    assert "get_or_load" not in vars(cache)  # nothing in the way of the class's method


async def test_spans_per_object(redis: Any, spans: InMemorySpanExporter) -> None:
    ns = _ns("traced")
    cache = Cache(redis, namespace=ns, ttl=60, tracing=True)
    await cache.get_or_load("a", _value(1))
    await cache.delete("a")
    limiter = RateLimiter(redis, limit=5, window=60, tracing=True)
    await limiter.hit("k")
    async with Lock(redis, _ns("l"), tracing=True):
        pass
    finished = spans.get_finished_spans()
    names = [s.name for s in finished]
    assert names == [
        "cache.get_or_load",
        "cache.delete",
        "ratelimit.hit",
        "lock.acquire",
        "lock.release",
    ]
    first = finished[0]
    assert first.attributes is not None
    assert first.attributes["db.system"] == "redis"
    assert first.attributes["db.system.name"] == "redis"
    assert first.attributes["aiocache_patterns.namespace"] == ns
    assert first.kind.name == "CLIENT"


async def test_spans_globally_and_an_object_that_opts_out(
    redis: Any, spans: InMemorySpanExporter
) -> None:
    quiet = Cache(redis, namespace=_ns("opt-out"), ttl=60, tracing=False)
    loud = Cache(redis, namespace=_ns("global"), ttl=60)
    configure_telemetry(tracing=True)  # objects built before are switched on too
    await quiet.get("a")
    await loud.get("a")
    assert [s.name for s in spans.get_finished_spans()] == ["cache.get"]
    configure_telemetry(tracing=False)
    await loud.get("a")
    assert len(spans.get_finished_spans()) == 1


async def test_a_failing_operation_marks_its_span(spans: InMemorySpanExporter) -> None:
    dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.2)
    cache = Cache(dead, namespace=_ns("dead"), timeout=0.3, tracing=True)
    with pytest.raises(Exception, match="Redis"):
        await cache.delete("a")  # invalidations always raise
    (span,) = spans.get_finished_spans()
    assert span.status.status_code.name == "ERROR"
    assert any(e.name == "exception" for e in span.events)
    await dead.aclose()


async def test_switching_providers_back_and_forth_counts_once(
    redis: Any, reader: InMemoryMetricReader
) -> None:
    provider = MeterProvider(metric_readers=[second := InMemoryMetricReader()])
    ns = _ns("switch")
    cache = Cache(redis, namespace=ns, ttl=60)
    await cache.set("a", 1)
    await cache.get("a")
    for _ in range(2):
        configure_telemetry(meter_provider=provider)
        TELEMETRY.reset()
    configure_telemetry(meter_provider=provider)
    assert _values(second, "aiocache_patterns.cache.requests", namespace=ns)["hit"] == 1
    assert _values(reader, "aiocache_patterns.cache.requests", namespace=ns)["hit"] == 1


async def test_leaderboard_spans_and_a_pinned_copy_has_its_own(
    redis: Any, spans: InMemorySpanExporter
) -> None:
    board = Leaderboard(redis, _ns("board"), period="daily", tracing=True)
    await board.submit("ann", 3)
    await board.top(3)
    pinned = board.at(0)  # a copy of the board, pinned to 1970-01-01
    assert await pinned.size() == 0
    assert [s.name for s in spans.get_finished_spans()] == [
        "leaderboard.submit",
        "leaderboard.top",
        "leaderboard.size",
    ]
    assert await board.size() == 1  # the copy's wrappers did not answer for the board


_GLOBAL_SDK_LATE = """
import asyncio, logging, sys
import fakeredis
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from aiocache_patterns import Cache
from aiocache_patterns._telemetry import TELEMETRY

warnings = []
logging.getLogger("opentelemetry").addHandler(logging.Handler())
logging.getLogger("opentelemetry").handlers[-1].emit = warnings.append

async def main():
    cache = Cache(fakeredis.FakeAsyncRedis(), namespace="late", ttl=60)
    await cache.get_or_load("a", lambda: asyncio.sleep(0, 1))  # before any SDK
    assert not TELEMETRY.metrics_on
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    Cache(fakeredis.FakeAsyncRedis(), namespace="other")  # noticed when an object is built
    assert TELEMETRY.metrics_on
    await cache.get_or_load("b", lambda: asyncio.sleep(0, 2))
    await cache.get("a")
    points = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    key = (m.name, tuple(sorted(p.attributes.items())))
                    assert key not in points, key  # each series once
                    points[key] = getattr(p, "value", None) or getattr(p, "count", None)
    hit = ("aiocache_patterns.cache.requests", (("namespace", "late"), ("result", "hit")))
    miss = ("aiocache_patterns.cache.requests", (("namespace", "late"), ("result", "miss")))
    load = (
        "aiocache_patterns.cache.load.duration",
        (("namespace", "late"), ("outcome", "success")),
    )
    assert points[hit] == 1, points
    assert points[miss] == 2, points  # counted before the SDK too
    assert points[load] == 1, points  # recorded once the SDK was there
    assert not warnings, [w.getMessage() for w in warnings]
    print("ok")

asyncio.run(main())
"""


def test_a_global_sdk_set_late_gets_every_series_once() -> None:
    """The API's proxy binds the instruments to the SDK set later: no second set."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _GLOBAL_SDK_LATE], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


_WITHOUT_THE_API = """
import asyncio, sys
sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
import fakeredis
from aiocache_patterns import Cache, Lock, RateLimiter, configure_telemetry
from aiocache_patterns._telemetry import HAVE_API, TELEMETRY

async def main():
    assert not HAVE_API
    configure_telemetry(tracing=True, enabled=True)
    redis = fakeredis.FakeAsyncRedis()
    cache = Cache(redis, namespace="noapi", ttl=60)
    assert await cache.get_or_load("a", lambda: asyncio.sleep(0, 1)) == 1
    assert await cache.get("a") == 1
    assert (await RateLimiter(redis, limit=1, window=1).hit("k")).allowed
    async with Lock(redis, "l"):
        pass
    assert not TELEMETRY.metrics_on
    print("ok")

asyncio.run(main())
"""


def test_without_the_api_everything_works_and_records_nothing() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_THE_API], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


async def test_a_traced_temporary_object_lives_through_its_call(
    redis: Any, spans: InMemorySpanExporter
) -> None:
    result = await RateLimiter(redis, limit=1, window=60, namespace=_ns("tmp"), tracing=True).hit(
        "k"
    )
    assert result.allowed
    assert [s.name for s in spans.get_finished_spans()] == ["ratelimit.hit"]


async def test_idempotency_spans(redis: Any, spans: InMemorySpanExporter) -> None:
    ns = _ns("idem")
    idem = Idempotency(redis, namespace=ns, tracing=True)

    async def operation(fence: int) -> int:
        return fence

    fence = await idem.run("k", "fp", operation)
    assert await idem.run("k", "fp", operation) == fence  # a replay: start only
    names = [s.name for s in spans.get_finished_spans()]
    assert names == [
        "idempotency.start",
        "idempotency.complete",
        "idempotency.run",
        "idempotency.start",
        "idempotency.run",
    ]
    assert all(
        s.attributes is not None and s.attributes["aiocache_patterns.namespace"] == ns
        for s in spans.get_finished_spans()
    )
    assert "run" in vars(idem)
    assert "run" not in vars(Idempotency(redis, namespace=ns))  # off: no wrapper
