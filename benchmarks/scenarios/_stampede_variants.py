"""The contenders of the ``stampede`` scenario, shared by the scenario and its worker processes.

Every variant is a cached read ``await call(key)`` in front of the same
counted loader (:class:`CountedLoader`: sleeps ``seconds``, returns
:func:`value_for` of the key, records when it ran). Each variant opens its own
client with its library's defaults (pool size included): the seed's naive
GET-then-SETEX on a default ``redis.asyncio.Redis()`` (pool of 100, raises
past it), this library's :class:`~aiocache_patterns.Cache` with each
strategy, cashews' ``@cache(lock=True)`` and ``@cache.early``, aiocache's
``cached_stampede``. Keys all start with ``KEY_PREFIX``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal

from aiocache_patterns import Cache
from benchmarks._optional import optional_module
from benchmarks._target import KEY_PREFIX, Target

__all__ = [
    "AIOCACHE",
    "CASHEWS_EARLY",
    "CASHEWS_LOCK",
    "COLD_VARIANTS",
    "FLOOR",
    "HOT_VARIANTS",
    "LIB_DEFAULT",
    "LIB_NO_LOCK",
    "LIB_REFRESH",
    "LIB_STALE",
    "NAIVE",
    "VARIANTS",
    "Burst",
    "Call",
    "CountedLoader",
    "Settings",
    "VariantSpec",
    "burst",
    "value_for",
]

FLOOR = "asyncio floor (no Redis)"
NAIVE = "naive GET/SETEX"
LIB_DEFAULT = "library defaults"
LIB_NO_LOCK = "library recompute_lock=False"
LIB_REFRESH = "library refresh_after"
LIB_STALE = "library stale_ttl"
CASHEWS_LOCK = "cashews @cache(lock=True)"
CASHEWS_EARLY = "cashews @cache.early"
AIOCACHE = "aiocache cached_stampede"

NAMESPACE = f"{KEY_PREFIX}:stampede"

Group = Literal["raw", "library", "peer"]
#: A cached read of one key: ``await call(key)`` returns the key's value.
Call = Callable[[str], Awaitable[Any]]


def value_for(key: str) -> dict[str, Any]:
    """What the loader returns for ``key`` (a small JSON document)."""
    return {"key": key, "title": f"post {key}", "tags": ["bench", "stampede"], "views": 42}


@dataclass
class CountedLoader:
    """The expensive call every variant protects: counts its calls and records when they ran."""

    seconds: float
    calls: int = 0
    #: (started, ended) in ``time.time()`` seconds, one per finished call.
    spans: list[tuple[float, float]] = field(default_factory=list)

    async def __call__(self, key: str) -> dict[str, Any]:
        self.calls += 1
        started = time.time()
        await asyncio.sleep(self.seconds)
        self.spans.append((started, time.time()))
        return value_for(key)

    def reset(self) -> None:
        self.calls = 0
        self.spans = []


@dataclass(frozen=True)
class Settings:
    """How the variants cache: ``ttl`` seconds; the hot-key strategies derive from it."""

    ttl: float
    loader_s: float

    @property
    def refresh_after(self) -> float:
        """Early enough that a refresh lands two loads' time before expiry."""
        early = self.ttl - 2 * self.loader_s
        return early if early > 0 else self.ttl / 2

    @property
    def stale_ttl(self) -> float:
        return self.ttl


Opener = Callable[[Target, CountedLoader, Settings], AbstractAsyncContextManager[Call]]


@dataclass(frozen=True)
class VariantSpec:
    name: str
    group: Group
    open: Opener
    #: A distribution that must be installed (peers), else the variant is skipped.
    requires: str | None = None
    #: Connects by URL itself, so it cannot use the embedded fakeredis.
    needs_url: bool = False
    #: How the variant is configured, for the notes.
    detail: str = ""


# -- the seed's naive code ------------------------------------------------------------


@contextlib.asynccontextmanager
async def _naive(target: Target, loader: CountedLoader, settings: Settings) -> AsyncIterator[Call]:
    client = target.client()  # a default pool: 100 connections, raises past them
    ttl_ms = max(1, round(settings.ttl * 1000))

    async def call(key: str) -> Any:
        rkey = f"{NAMESPACE}:naive:{key}"
        raw = await client.get(rkey)
        if raw is not None:
            return json.loads(raw)
        value = await loader(key)
        await client.psetex(rkey, ttl_ms, json.dumps(value))
        return value

    try:
        yield call
    finally:
        await client.aclose()


# -- a reference: the least asyncio can do ---------------------------------------------------


@contextlib.asynccontextmanager
async def _floor(target: Target, loader: CountedLoader, settings: Settings) -> AsyncIterator[Call]:
    """In-memory single-flight, no Redis, no cancellation safety: a lower bound on latency."""
    values: dict[str, Any] = {}
    flights: dict[str, asyncio.Task[Any]] = {}

    def done(key: str, task: asyncio.Task[Any]) -> None:
        flights.pop(key, None)
        if not task.cancelled() and task.exception() is None:
            values[key] = task.result()

    async def call(key: str) -> Any:
        if key in values:
            return values[key]
        task = flights.get(key)
        if task is None:
            task = flights[key] = asyncio.ensure_future(loader(key))
            task.add_done_callback(lambda t: done(key, t))
        return await task

    yield call


# -- this library ----------------------------------------------------------------------------


def _library(**options: Any) -> Opener:
    @contextlib.asynccontextmanager
    async def open_variant(
        target: Target, loader: CountedLoader, settings: Settings
    ) -> AsyncIterator[Call]:
        client = target.client()
        kwargs = dict(options)
        if kwargs.pop("refresh", False):
            kwargs["refresh_after"] = settings.refresh_after
        if kwargs.pop("stale", False):
            kwargs["stale_ttl"] = settings.stale_ttl
        cache = Cache(client, namespace=NAMESPACE, ttl=settings.ttl, **kwargs)

        async def call(key: str) -> Any:
            return await cache.get_or_load(key, lambda: loader(key))

        try:
            yield call
        finally:
            await cache.aclose()
            await client.aclose()

    return open_variant


# -- peers ---------------------------------------------------------------------------------


def _module(name: str) -> Any:
    module = optional_module(name)
    if module is None:
        raise ImportError(f"{name} is not importable")
    return module


def _cashews(early: bool) -> Opener:
    @contextlib.asynccontextmanager
    async def open_variant(
        target: Target, loader: CountedLoader, settings: Settings
    ) -> AsyncIterator[Call]:
        cashews = _module("cashews")
        cache = cashews.Cache()  # our own instance, with the library's defaults
        assert target.url is not None
        cache.setup(target.url)
        await cache.init()
        if early:
            decorate = cache.early(
                ttl=settings.ttl,
                early_ttl=settings.refresh_after,
                key=f"{NAMESPACE}:cashews-early:{{key}}",
                prefix=f"{NAMESPACE}:early",
            )
        else:
            decorate = cache(ttl=settings.ttl, key=f"{NAMESPACE}:cashews:{{key}}", lock=True)

        async def load(key: str) -> Any:
            return await loader(key)

        call: Call = decorate(load)
        try:
            yield call
        finally:
            await cache.close()

    return open_variant


@contextlib.asynccontextmanager
async def _aiocache(
    target: Target, loader: CountedLoader, settings: Settings
) -> AsyncIterator[Call]:
    aiocache = _module("aiocache")
    serializers = _module("aiocache.serializers")
    assert target.url is not None
    deco = aiocache.cached_stampede(
        ttl=settings.ttl,
        cache=aiocache.Cache.REDIS,
        key_builder=lambda fn, key: f"aiocache:{key}",
        namespace=NAMESPACE,
        serializer=serializers.JsonSerializer(),
        **target.aiocache_kwargs(),
    )

    async def load(key: str) -> Any:
        return await loader(key)

    call: Call = deco(load)
    # aiocache logs a traceback for every failed read (MaxConnectionsError past its pool):
    # thousands per stampede. The errors reach the caller and are counted anyway.
    log = logging.getLogger("aiocache")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield call
    finally:
        log.setLevel(level)
        await deco.cache.close()


VARIANTS: dict[str, VariantSpec] = {
    v.name: v
    for v in (
        VariantSpec(
            FLOOR,
            "raw",
            _floor,
            detail=(
                "a latency reference, not a cache: one shared task per key in process "
                "memory, no Redis, no cancellation safety; the least asyncio pays to start "
                "N callers and wake them with one result (loads once per process)"
            ),
        ),
        VariantSpec(NAIVE, "raw", _naive, detail="GET; on None: loader, PSETEX; default pool"),
        VariantSpec(LIB_DEFAULT, "library", _library(), detail="Cache(client, ttl=...)"),
        VariantSpec(
            LIB_NO_LOCK,
            "library",
            _library(recompute_lock=False),
            detail="single-flight per process only",
        ),
        VariantSpec(
            LIB_REFRESH,
            "library",
            _library(refresh=True, beta=0.0),
            detail="refresh_after=TTL - 2 loads, beta=0 (background refresh alone)",
        ),
        VariantSpec(
            LIB_STALE,
            "library",
            _library(stale=True, beta=0.0),
            detail="stale_ttl=TTL, beta=0 (stale-while-revalidate alone)",
        ),
        VariantSpec(
            CASHEWS_LOCK,
            "peer",
            _cashews(early=False),
            requires="cashews",
            needs_url=True,
            detail="@cache(ttl=..., lock=True); own pool (10, blocking)",
        ),
        VariantSpec(
            CASHEWS_EARLY,
            "peer",
            _cashews(early=True),
            requires="cashews",
            needs_url=True,
            detail="@cache.early(ttl=..., early_ttl=TTL - 2 loads)",
        ),
        VariantSpec(
            AIOCACHE,
            "peer",
            _aiocache,
            requires="aiocache",
            needs_url=True,
            detail="cached_stampede(ttl=..., lease=2); redis-py default pool (100)",
        ),
    )
}

COLD_VARIANTS: Sequence[str] = (
    FLOOR,
    NAIVE,
    LIB_DEFAULT,
    LIB_NO_LOCK,
    CASHEWS_LOCK,
    CASHEWS_EARLY,
    AIOCACHE,
)
HOT_VARIANTS: Sequence[str] = (
    NAIVE,
    LIB_DEFAULT,
    LIB_REFRESH,
    LIB_STALE,
    CASHEWS_LOCK,
    CASHEWS_EARLY,
    AIOCACHE,
)


# -- one stampede ---------------------------------------------------------------------------


@dataclass
class Burst:
    """What ``n`` concurrent calls of one key gave: latencies (ms, successes), failures."""

    latencies_ms: list[float]
    errors: int = 0
    wrong: int = 0
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "latencies_ms": [round(x, 3) for x in self.latencies_ms],
            "errors": self.errors,
            "wrong": self.wrong,
            "problem": self.problem,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Burst:
        return cls(
            [float(x) for x in data["latencies_ms"]],
            int(data["errors"]),
            int(data["wrong"]),
            data.get("problem"),
        )


async def burst(call: Call, key: str, n: int) -> Burst:
    """``n`` calls of ``call(key)`` started together; each one timed from its own start."""
    expected = value_for(key)
    out = Burst([])
    perf = time.perf_counter

    async def one() -> None:
        started = perf()
        try:
            value = await call(key)
        except Exception as exc:
            out.errors += 1
            out.problem = out.problem or f"raised {type(exc).__name__}: {exc}"[:200]
            return
        out.latencies_ms.append((perf() - started) * 1000)
        if value != expected:
            out.wrong += 1
            out.problem = out.problem or f"read {value!r:.80}, expected {expected!r:.80}"

    await asyncio.gather(*(one() for _ in range(n)))
    out.latencies_ms.sort()
    return out
