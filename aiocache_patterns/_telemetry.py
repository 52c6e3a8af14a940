"""OpenTelemetry metrics and traces, through the API only (the optional extra ``otel``).

Without ``opentelemetry-api`` installed, or with the API and no SDK, nothing
here costs anything on a hot path:

* the counters a hot path bumps anyway (a cache's hits and misses, a rate
  limiter's decisions, an executor's round trips) are *observed* when a reader
  collects (observable instruments), never recorded call by call;
* the few measurements that are recorded as they happen (a load's duration, a
  lock's wait, a batch's size) are guarded by one flag, ``TELEMETRY.metrics_on``,
  which is true only when a real SDK meter provider may listen;
* spans are off unless switched on, globally (``configure_telemetry(tracing=True)``)
  or per object (``tracing=True``).

The instrument names and attributes are a contract (docs/operations.md):

* ``aiocache_patterns.cache.requests``, counter [namespace, result]
* ``aiocache_patterns.cache.load.duration``, histogram, s [namespace, outcome]
* ``aiocache_patterns.ratelimit.decisions``, counter [namespace, algorithm, result]
* ``aiocache_patterns.lock.wait.duration``, histogram, s [kind, outcome]
* ``aiocache_patterns.redis.round_trips``, counter [kind]
* ``aiocache_patterns.redis.batch.size``, histogram [kind] (mget, pipeline, single)
* ``aiocache_patterns.breaker.state``, gauge [node]

This module is a basic (no Redis, no pattern): the patterns hand it what to
observe (a counters object and how to read it) and call its recorders.
"""

from __future__ import annotations

import functools
import threading
import types
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Final, TypeVar

try:  # the optional extra ``otel``
    from opentelemetry import metrics as _otel_metrics
    from opentelemetry import trace as _otel_trace

    HAVE_API = True
except ImportError:  # pragma: no cover - CI runs a stage without the API
    HAVE_API = False

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import TracerProvider

__all__ = [
    "CACHE_REQUESTS",
    "LOAD_DURATION",
    "TELEMETRY",
    "configure_telemetry",
    "db_attributes",
]

T = TypeVar("T")

#: The instrumentation scope's name (the meter's and the tracer's).
SCOPE: Final = "aiocache_patterns"

CACHE_REQUESTS: Final = "aiocache_patterns.cache.requests"
LOAD_DURATION: Final = "aiocache_patterns.cache.load.duration"
RATELIMIT_DECISIONS: Final = "aiocache_patterns.ratelimit.decisions"
LOCK_WAIT: Final = "aiocache_patterns.lock.wait.duration"
ROUND_TRIPS: Final = "aiocache_patterns.redis.round_trips"
BATCH_SIZE: Final = "aiocache_patterns.redis.batch.size"
BREAKER_STATE: Final = "aiocache_patterns.breaker.state"

#: Bucket boundaries the histograms advise (an SDK's default ones, 0 to 10,000, suit
#: milliseconds, not seconds): 0.5 ms to 10 s; batches of 1 to 1,024 (the largest: 1,000).
SECONDS_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)  # fmt: skip
SIZE_BUCKETS: Final = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)

#: ``(attribute, value)`` pairs, sorted: a hashable attribute set.
AttrKey = tuple[tuple[str, str], ...]
#: Reads a counters object: ``[(attributes, cumulative value), ...]``.
Reader = Callable[[Any], Iterable[tuple[AttrKey, int]]]

#: Attribute sets of the recorded instruments, built once (a dict per call costs).
BATCH_KINDS: Final = {kind: {"kind": kind} for kind in ("mget", "pipeline", "single")}

_PROXY_PROVIDERS: Final = frozenset(
    {"_ProxyMeterProvider", "NoOpMeterProvider", "_ProxyTracerProvider", "NoOpTracerProvider"}
)


class _Traceable:
    """What a traceable object asked for: its tracing flag and spans; where it talks to."""

    __slots__ = ("_attributes", "client", "flag", "namespace", "spans")

    def __init__(self, flag: bool | None, spans: dict[str, str], client: Any, namespace: str):
        self.flag = flag
        self.spans = spans
        self.client = client
        self.namespace = namespace
        self._attributes: dict[str, Any] | None = None

    @property
    def attributes(self) -> dict[str, Any]:
        """The spans' attributes, worked out the first time tracing is switched on."""
        if self._attributes is None:
            self._attributes = {
                **db_attributes(self.client),
                "aiocache_patterns.namespace": self.namespace,
            }
        return self._attributes


class _Sources:
    """Live counters objects of one observable instrument, plus the totals of dead ones.

    A counter must never go down: when an owner (a Cache, say) is collected,
    its last values move to ``retired`` and keep counting in the sums.
    Collection runs on the SDK's reader thread, so every change takes a lock.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._live: dict[int, tuple[Any, Reader]] = {}
        self._retired: dict[AttrKey, int] = {}

    def add(self, owner: object, counters: object, read: Reader) -> None:
        key = id(counters)
        with self._lock:
            self._live[key] = (counters, read)
        weakref.finalize(owner, self._retire, key)

    def _retire(self, key: int) -> None:
        with self._lock:
            found = self._live.pop(key, None)
            if found is not None:
                counters, read = found
                for attrs, value in read(counters):
                    self._retired[attrs] = self._retired.get(attrs, 0) + value

    def totals(self) -> dict[AttrKey, int]:
        with self._lock:
            sums = dict(self._retired)
            live = list(self._live.values())
        for counters, read in live:
            for attrs, value in read(counters):
                sums[attrs] = sums.get(attrs, 0) + value
        return sums


class _Gauges:
    """Live objects of an observable gauge: each read gives ``(attributes, value)``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: weakref.WeakKeyDictionary[Any, Callable[[Any], tuple[AttrKey, float]]] = (
            weakref.WeakKeyDictionary()
        )

    def add(self, owner: object, read: Callable[[Any], tuple[AttrKey, float]]) -> None:
        with self._lock:
            self._live[owner] = read

    def values(self) -> dict[AttrKey, float]:
        found: dict[AttrKey, float] = {}
        with self._lock:
            live = list(self._live.items())
        for owner, read in live:
            attrs, value = read(owner)
            found[attrs] = max(found.get(attrs, value), value)  # several clients, one node
        return found


class Telemetry:
    """The process's telemetry state: what to record, where, and the registered sources."""

    def __init__(self) -> None:
        #: Whether measurements recorded call by call are wanted (a real SDK may listen).
        self.metrics_on = False
        #: Whether objects that were not told otherwise make spans.
        self.tracing = False
        self.caches = _Sources()
        self.limiters = _Sources()
        self.executors = _Sources()
        self.breakers = _Gauges()
        #: Objects whose public operations may make spans: ``(tracing flag, spans, attributes)``.
        self._traceable: weakref.WeakKeyDictionary[Any, _Traceable] = weakref.WeakKeyDictionary()
        self._enabled = HAVE_API
        self._meter_provider: MeterProvider | None = None
        self._tracer_provider: TracerProvider | None = None
        self._instruments_for: object = None
        #: The recorded instruments made on each provider (kept: providers are few).
        self._made: dict[int, tuple[object, tuple[Any, Any, Any]]] = {}  # 0: the global one
        self._load_duration: Any = None
        self._lock_wait: Any = None
        self._batch_size: Any = None
        self._tracer: Any = None

    # -- configuration ---------------------------------------------------------------

    def configure(
        self,
        *,
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
        tracing: bool | None = None,
        enabled: bool | None = None,
    ) -> None:
        if tracing is not None:
            if not isinstance(tracing, bool):
                raise TypeError("tracing must be a bool")
            self.tracing = tracing
            for obj, traced in list(self._traceable.items()):
                _apply_tracing(obj, self.tracing if traced.flag is None else traced.flag, traced)
        if enabled is not None:
            if not isinstance(enabled, bool):
                raise TypeError("enabled must be a bool")
            self._enabled = enabled and HAVE_API
        if meter_provider is not None:
            if not callable(getattr(meter_provider, "get_meter", None)):
                raise TypeError("meter_provider must be an OpenTelemetry MeterProvider")
            self._meter_provider = meter_provider
        if tracer_provider is not None:
            if not callable(getattr(tracer_provider, "get_tracer", None)):
                raise TypeError("tracer_provider must be an OpenTelemetry TracerProvider")
            self._tracer_provider = tracer_provider
            self._tracer = None
        self.refresh()

    def reset(self) -> None:
        """Back to the defaults: the global providers, tracing off, enabled (for tests)."""
        self._meter_provider = None
        self._tracer_provider = None
        self._tracer = None
        self._enabled = HAVE_API
        self.configure(tracing=False)

    def refresh(self) -> None:
        """Bind the instruments to the meter provider in force; decide ``metrics_on``.

        Called when something is configured, when a pattern object is built,
        and on every collection (which only a real SDK makes): a global SDK set
        after the objects were built is noticed by its first collection at the latest.
        """
        if not self._enabled:
            self.metrics_on = False
            return
        provider = self._meter_provider or _otel_metrics.get_meter_provider()
        if provider is not self._instruments_for:
            self._instruments_for = provider
            # Once per provider: a second set would report every observation twice.
            # The global provider counts as one: instruments made on the API's proxy
            # are bound by the API itself to the SDK set later.
            slot = id(provider) if self._meter_provider is not None else 0
            made = self._made.get(slot)
            if made is None:
                made = self._made[slot] = (provider, _create_instruments(self, provider))
            self._load_duration, self._lock_wait, self._batch_size = made[1]
        self.metrics_on = type(provider).__name__ not in _PROXY_PROVIDERS

    # -- recording -------------------------------------------------------------------

    def record_load(self, seconds: float, attributes: dict[str, str]) -> None:
        if self.metrics_on:
            self._load_duration.record(seconds, attributes)

    def record_lock_wait(self, seconds: float, attributes: dict[str, str]) -> None:
        if self.metrics_on:
            self._lock_wait.record(seconds, attributes)

    def record_batch(self, size: int, attributes: dict[str, str]) -> None:
        if self.metrics_on:
            self._batch_size.record(size, attributes)

    # -- spans -----------------------------------------------------------------------

    def traceable(
        self, obj: object, flag: object, spans: dict[str, str], client: Any, namespace: str
    ) -> None:
        """Make ``obj``'s methods named in ``spans`` (method: span name) make spans when
        ``flag`` says so (None: the global choice, ``configure_telemetry(tracing=...)``).

        Tracing on puts a wrapper on the object itself; off, the class's method runs as
        it is: an object that makes no spans pays nothing for them.
        """
        if flag is not None and not isinstance(flag, bool):
            raise TypeError(f"tracing must be a bool or None, not {type(flag).__name__}")
        traced = self._traceable[obj] = _Traceable(flag, spans, client, namespace)
        if self.tracing if flag is None else flag:  # (a new object has no wrappers to remove)
            _apply_tracing(obj, True, traced)

    def copied(self, original: object, copy: object) -> None:
        """``copy`` was made with ``copy.copy(original)``: make its spans its own."""
        found = self._traceable.get(original)
        if found is not None:
            for method in found.spans:
                vars(copy).pop(method, None)  # the original's, bound to the original
            self.traceable(copy, found.flag, found.spans, found.client, found.namespace)

    def span(self, name: str, attributes: dict[str, Any]) -> AbstractContextManager[Any]:
        """A CLIENT span around one public operation (a no-op without the API)."""
        if not HAVE_API:
            return nullcontext()
        tracer = self._tracer
        if tracer is None:
            provider = self._tracer_provider or _otel_trace.get_tracer_provider()
            tracer = self._tracer = provider.get_tracer(SCOPE)
            if self._tracer_provider is None and type(provider).__name__ in _PROXY_PROVIDERS:
                self._tracer = None  # a proxy: ask again next time, an SDK may come
        return tracer.start_as_current_span(  # type: ignore[no-any-return]
            name, kind=_otel_trace.SpanKind.CLIENT, attributes=attributes
        )


def _apply_tracing(obj: object, on: bool, traced: _Traceable) -> None:
    for method, name in traced.spans.items():
        if on:
            vars(obj)[method] = _traced(obj, method, name, traced.attributes)
        else:
            vars(obj).pop(method, None)


def _traced(obj: object, method: str, name: str, attributes: dict[str, Any]) -> Callable[..., Any]:
    """``obj.method`` in a span, bound to ``obj`` like the method it stands for.

    Bound, so that ``RateLimiter(...).hit(key)`` keeps its object alive for the
    call (a weak reference would see it collected before the call ran); the
    cycle through the object's ``__dict__`` is the garbage collector's to break.
    """
    function = getattr(type(obj), method)

    async def call(self: object, *args: Any, **kwargs: Any) -> Any:
        with TELEMETRY.span(name, attributes):
            return await function(self, *args, **kwargs)

    functools.update_wrapper(call, function)
    return types.MethodType(call, obj)


def _create_instruments(self: Telemetry, provider: MeterProvider) -> tuple[Any, Any, Any]:
    """Make the instruments on ``provider``'s meter: the recorded ones are returned."""
    meter = provider.get_meter(SCOPE)

    def observe(sources: _Sources) -> Callable[[CallbackOptions], Iterator[Observation]]:
        def callback(options: CallbackOptions) -> Iterator[Observation]:
            from opentelemetry.metrics import Observation

            self.refresh()  # an SDK is collecting: record the rest too from now on
            for attrs, value in sources.totals().items():
                yield Observation(value, dict(attrs))

        return callback

    def observe_breakers(options: CallbackOptions) -> Iterator[Observation]:
        from opentelemetry.metrics import Observation

        self.refresh()
        for attrs, value in self.breakers.values().items():
            yield Observation(value, dict(attrs))

    meter.create_observable_counter(
        CACHE_REQUESTS,
        callbacks=[observe(self.caches)],
        unit="{request}",
        description="Cache reads by result: hit, miss, stale (served), error",
    )
    meter.create_observable_counter(
        RATELIMIT_DECISIONS,
        callbacks=[observe(self.limiters)],
        unit="{decision}",
        description="Rate-limit hits by result: allowed, denied, degraded (decided without Redis)",
    )
    meter.create_observable_counter(
        ROUND_TRIPS,
        callbacks=[observe(self.executors)],
        unit="{round_trip}",
        description="Round trips to Redis by kind: mget, pipeline (batches), single",
    )
    meter.create_observable_gauge(
        BREAKER_STATE,
        callbacks=[observe_breakers],
        unit="1",
        description="Circuit breaker state per node: 0 closed, 1 half-open, 2 open",
    )
    return (
        meter.create_histogram(
            LOAD_DURATION,
            unit="s",
            description="Loader calls of a cache, by outcome",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        ),
        meter.create_histogram(
            LOCK_WAIT,
            unit="s",
            description="Time to acquire a lock or semaphore, by outcome",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        ),
        meter.create_histogram(
            BATCH_SIZE,
            unit="{operation}",
            description="Operations per batched round trip, by kind",
            explicit_bucket_boundaries_advisory=SIZE_BUCKETS,
        ),
    )


#: The process's telemetry state.
TELEMETRY: Final = Telemetry()


def configure_telemetry(
    *,
    meter_provider: MeterProvider | None = None,
    tracer_provider: TracerProvider | None = None,
    tracing: bool | None = None,
    enabled: bool | None = None,
) -> None:
    """Choose where the library's OpenTelemetry metrics and spans go, and whether spans are made.

    Nothing needs calling for metrics: with ``opentelemetry-api`` installed
    (the ``otel`` extra), the instruments report to the global meter provider
    once an SDK sets one (``opentelemetry.metrics.set_meter_provider``).

    Args:
        meter_provider: report metrics to this provider instead of the global one.
        tracer_provider: make spans with this provider instead of the global one.
        tracing: make a span for every public operation that reaches Redis, on
            every object not built with ``tracing=False`` (off by default;
            ``tracing=True`` on one object switches it on there only).
        enabled: ``False`` turns every instrument off (nothing observed or recorded).

    >>> configure_telemetry(tracing=True)  # doctest: +SKIP
    """
    TELEMETRY.configure(
        meter_provider=meter_provider,
        tracer_provider=tracer_provider,
        tracing=tracing,
        enabled=enabled,
    )


def attrs(**values: str) -> AttrKey:
    """A hashable attribute set."""
    return tuple(sorted(values.items()))


def db_attributes(client: Any) -> dict[str, Any]:
    """The standard database attributes of a span on ``client`` (OpenTelemetry semconv)."""
    found: dict[str, Any] = {"db.system": "redis", "db.system.name": "redis"}
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if isinstance(kwargs, dict):
        host, port = kwargs.get("host"), kwargs.get("port")
        if isinstance(host, str):
            found["server.address"] = host
        if isinstance(port, int):
            found["server.port"] = port
        db = kwargs.get("db")
        if isinstance(db, int):
            found["db.namespace"] = str(db)
    return found


def node_name(client: Any) -> str:
    """The ``node`` attribute of a client's breaker: ``host:port``, or the client's type."""
    attributes = db_attributes(client)
    if "server.address" in attributes:
        return f"{attributes['server.address']}:{attributes.get('server.port', '')}"
    nodes = getattr(client, "startup_nodes", None)
    if isinstance(nodes, list) and nodes:
        node = nodes[0]
        return f"{getattr(node, 'host', '?')}:{getattr(node, 'port', '?')}"
    return type(client).__name__
