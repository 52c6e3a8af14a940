"""Cache under faults: Redis down, slow, stalled, killed mid-load; cancellations; bad bytes.

What DESIGN.md invariants 6-9 promise, checked against real failures:

* Redis down or slow: reads fail open to the loader within the operation
  timeout (redis-py's own retries included), errors are counted, writes are
  skipped, invalidations raise ``RedisUnavailable``;
* a dead server is not hammered (circuit breaker), and recovery needs no help;
* a reply that arrives late is never handed to the wrong caller;
* cancelling callers loses nobody else's result and leaks no work;
* undecodable bytes are a counted, logged miss, overwritten by the next load.

Faults that need a real server (a proxy in front of it, or a server to kill)
run on a private ``redis-server`` on a free loopback port (``tests/_servers.py``),
not on the shared test database, which other test runs flush at any moment;
they are marked ``real_only``. "Down" runs on every kind of client: fakeredis
(``FakeServer.connected = False``), redis-py on a port nothing listens on,
redis-py on a server killed under it, and a RedisCluster client on a dead port.
Hit/miss decoding runs on the ``backend`` fixture (fakeredis, Redis, Cluster).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import fakeredis
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisClusterException, RedisError

from aiocache_patterns import (
    Cache,
    CachePatternsError,
    CircuitOpen,
    JsonSerializer,
    PickleSerializer,
    RedisUnavailable,
)
from aiocache_patterns._redis.executor import executor_for
from aiocache_patterns.keys import KeyT
from tests._backends import Client, all_keys, in_ci
from tests._proxy import FaultProxy
from tests._servers import RedisProcess, free_port, private_redis, redis_server_binary

ClientT = TypeVar("ClientT", aioredis.Redis, aioredis.RedisCluster)

MISS: Any = object()
TIMEOUT = 0.3
#: Where the test is not about the timeout itself: fewer seconds spent waiting on dead servers.
SHORT_TIMEOUT = 0.15
#: Generous bound for "within the timeout" on a noisy 2-core machine; a call that
#: waited for redis-py's default retries (seconds) or for the slow reply is far above.
BOUND = 1.5
ENVELOPE_MAGIC = b"\xac\x01"


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Run finalizers of this test's cyclic garbage (dead tasks, sockets) now.

    Left for later, a collection can land inside pytest's ``ast.parse`` while it
    formats a failure, and CPython 3.11.7 then dies with "SystemError: AST
    constructor recursion depth mismatch" (python/cpython#106905): INTERNALERROR,
    the session aborted and the failure never shown.
    """
    yield
    gc.collect()


class Loader:
    """An async loader that counts its calls."""

    def __init__(self, value: Any, delay: float = 0.0) -> None:
        self.value = value
        self.delay = delay
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.value


def unavailable(reason: str) -> None:
    """Skip, or fail under CI=true, like the backend fixture does."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing real backend is a failure)", False)
    pytest.skip(reason)


async def eventually(check: Callable[[], Awaitable[bool]], within: float) -> float:
    """Poll ``check`` until it is true; return how long that took, fail after ``within``."""
    start = time.perf_counter()
    while not await check():
        if time.perf_counter() - start > within:
            pytest.fail(f"condition still false after {within}s")
        await asyncio.sleep(0.05)
    return time.perf_counter() - start


def works(cache: Cache) -> Callable[[], Awaitable[bool]]:
    """A check that a value written through ``cache`` is read back through it."""
    counter = iter(range(1_000_000))

    async def check() -> bool:
        n = next(counter)
        await cache.set("probe", n)
        return bool(await cache.get("probe", MISS) == n)

    return check


def namespace() -> str:
    return f"faults-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def closing() -> AsyncIterator[Callable[[ClientT], ClientT]]:
    """Register clients to close at teardown."""
    made: list[Client] = []

    def register(client: ClientT) -> ClientT:
        made.append(client)
        return client

    yield register
    for client in reversed(made):
        await client.aclose()


@pytest.fixture
async def server() -> AsyncIterator[RedisProcess]:
    """A private ``redis-server`` (a real standalone server nobody else flushes)."""
    if redis_server_binary() is None:
        unavailable("redis-server is not on PATH")
    async with private_redis() as process:
        yield process


def through(proxy: FaultProxy) -> aioredis.Redis:
    """A client whose every byte goes through ``proxy``."""
    return aioredis.Redis(host="127.0.0.1", port=proxy.port)


# -- Redis down: every kind of client ------------------------------------------

DOWN_KINDS = ("fakeredis", "redis-refused", "redis-killed", "cluster-refused")


@pytest.fixture(params=DOWN_KINDS)
async def down(
    request: pytest.FixtureRequest, closing: Callable[[Client], Client]
) -> AsyncIterator[Client]:
    """A client whose Redis is down. Ids say how."""
    kind: str = request.param
    if kind == "fakeredis":
        server = fakeredis.FakeServer(version=(7,))
        fake: aioredis.Redis = fakeredis.FakeAsyncRedis(server=server)
        closing(fake)
        await fake.ping()
        server.connected = False
        yield fake
    elif kind == "redis-refused":
        yield closing(aioredis.Redis(host="127.0.0.1", port=free_port()))
    elif kind == "redis-killed":
        if redis_server_binary() is None:
            unavailable("redis-server is not on PATH")
        async with private_redis() as process:
            client = closing(aioredis.Redis(host="127.0.0.1", port=process.port))
            await client.ping()  # a pooled connection that is about to die
            process.kill()
            yield client
    else:
        yield closing(aioredis.RedisCluster(host="127.0.0.1", port=free_port()))


async def test_down_get_or_load_serves_the_loader_within_the_timeout(down: Client) -> None:
    cache = Cache(down, timeout=TIMEOUT)
    loader = Loader({"id": 1})

    started = time.perf_counter()
    assert await cache.get_or_load("post:1", loader) == {"id": 1}
    elapsed = time.perf_counter() - started

    # redis-py 8 alone retries a refused connection for seconds.
    assert elapsed < BOUND, f"get_or_load waited {elapsed:.2f}s on a dead Redis"
    assert loader.calls == 1
    stats = cache.stats
    assert stats.errors >= 1
    assert stats.loads == 1
    assert stats.hits == 0


async def test_down_concurrent_misses_still_share_one_load(down: Client) -> None:
    cache = Cache(down, timeout=SHORT_TIMEOUT)
    loader = Loader("value", delay=0.05)

    started = time.perf_counter()
    results = await asyncio.gather(*(cache.get_or_load("hot", loader) for _ in range(50)))

    assert results == ["value"] * 50
    assert loader.calls == 1  # single-flight does not need Redis
    assert time.perf_counter() - started < BOUND
    assert cache.stats.errors >= 1


async def test_down_get_returns_the_default(down: Client) -> None:
    cache = Cache(down, timeout=SHORT_TIMEOUT)

    started = time.perf_counter()
    assert await cache.get("k", MISS) is MISS
    assert await cache.get_many(["a", "b"]) == {}
    assert time.perf_counter() - started < 2 * BOUND
    assert cache.stats.errors == 2
    assert cache.stats.hits == 0


async def test_down_set_is_skipped_and_counted(down: Client) -> None:
    cache = Cache(down, timeout=SHORT_TIMEOUT)

    started = time.perf_counter()
    await cache.set("k", 1)
    await cache.set_many({"a": 1, "b": 2})
    assert time.perf_counter() - started < 2 * BOUND
    assert cache.stats.errors >= 2


async def test_down_delete_raises(down: Client) -> None:
    # fail_open covers reads and cache writes, never invalidation: a lost DEL
    # would leave a stale value in place with nobody knowing.
    cache = Cache(down, timeout=SHORT_TIMEOUT)

    started = time.perf_counter()
    with pytest.raises(RedisUnavailable) as info:
        await cache.delete("k")
    assert time.perf_counter() - started < BOUND
    assert isinstance(info.value, CachePatternsError)
    assert cache.stats.errors == 1


async def test_down_fail_closed_raises_a_library_error(down: Client) -> None:
    cache = Cache(down, timeout=SHORT_TIMEOUT, fail_open=False)
    loader = Loader("value")

    started = time.perf_counter()
    with pytest.raises(RedisUnavailable) as info:
        await cache.get_or_load("k", loader)
    assert time.perf_counter() - started < BOUND
    assert isinstance(info.value, CachePatternsError)
    assert isinstance(info.value, ConnectionError)  # what code unaware of us catches
    with pytest.raises(RedisUnavailable):
        await cache.get("k")


async def test_down_fail_closed_error_chains_the_redis_error(down: Client) -> None:
    # Also when the deadline cut redis-py's retries short: the error it was
    # retrying is the story, "did not answer within 0.15s" alone is not.
    cache = Cache(down, timeout=SHORT_TIMEOUT, fail_open=False)

    with pytest.raises(RedisUnavailable) as info:
        await cache.get_or_load("k", Loader("value"))

    cause = info.value.__cause__
    assert isinstance(cause, (RedisError, RedisClusterException, OSError)), repr(cause)


async def test_circuit_opens_then_closes_on_its_own_fakeredis() -> None:
    server = fakeredis.FakeServer(version=(7,))
    client = fakeredis.FakeAsyncRedis(server=server)
    try:
        cache = Cache(client, timeout=TIMEOUT, fail_open=False)
        server.connected = False
        errors: list[BaseException] = []
        for _ in range(20):
            with pytest.raises(RedisUnavailable) as info:
                await cache.get("k")
            errors.append(info.value)
        # The first failures reach the server; then calls are refused without trying.
        assert not isinstance(errors[0], CircuitOpen)
        assert all(isinstance(e, CircuitOpen) for e in errors[-10:])

        server.connected = True
        await eventually(lambda: _succeeds(cache.get("k", MISS)), within=8.0)
        await cache.set("k", "v")
        assert await cache.get("k") == "v"
    finally:
        await client.aclose()


async def _succeeds(call: Awaitable[Any]) -> bool:
    try:
        await call
    except RedisUnavailable:
        return False
    return True


# -- a dead server is not hammered, and recovery is automatic --------------------


@pytest.mark.real_only
async def test_breaker_stops_hammering_then_recovers(
    server: RedisProcess, closing: Callable[[aioredis.Redis], aioredis.Redis]
) -> None:
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        cache = Cache(closing(through(proxy)), namespace=namespace(), timeout=TIMEOUT)
        await cache.set("warm", 1)
        assert await cache.get("warm") == 1

        proxy.refuse = True
        await proxy.drop_all()
        started = time.perf_counter()
        for i in range(50):
            assert await cache.get_or_load(f"k{i}", Loader(i)) == i
        elapsed = time.perf_counter() - started
        # Without a breaker: at least 50 x 0.3 s = 15 s.
        assert elapsed < 50 * TIMEOUT / 3, f"50 calls on a dead Redis took {elapsed:.2f}s"
        assert cache.stats.errors >= 50

        # Open now: a burst neither waits nor knocks on the server's door.
        attempts = proxy.accepted
        started = time.perf_counter()
        for i in range(100):
            assert await cache.get(f"k{i}", MISS) is MISS
        assert time.perf_counter() - started < TIMEOUT
        assert proxy.accepted - attempts <= 1  # at most one half-open trial

        proxy.refuse = False
        recovered_in = await eventually(works(cache), within=10.0)
        assert recovered_in < 8.0
        assert await cache.get_or_load("after", Loader("fresh")) == "fresh"
        assert await cache.get("after") == "fresh"  # stored again, not just loaded


# -- Redis slow or stalled -------------------------------------------------------


@pytest.mark.real_only
async def test_slow_redis_serves_the_loader_within_the_timeout(
    server: RedisProcess, closing: Callable[[aioredis.Redis], aioredis.Redis]
) -> None:
    latency = 2.0
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        cache = Cache(closing(through(proxy)), namespace=namespace(), timeout=TIMEOUT)
        await cache.set("warm", 1)

        proxy.latency = latency
        loader = Loader("loaded")
        started = time.perf_counter()
        assert await cache.get_or_load("slow", loader) == "loaded"
        elapsed = time.perf_counter() - started
        assert elapsed < BOUND < latency, f"get_or_load waited {elapsed:.2f}s for a slow Redis"
        assert loader.calls == 1
        assert cache.stats.errors >= 1

        proxy.latency = 0.0
        await eventually(works(cache), within=8.0)
        assert await cache.get("warm") == 1


@pytest.mark.real_only
async def test_stall_then_resume_never_crosses_replies(
    server: RedisProcess, closing: Callable[[aioredis.Redis], aioredis.Redis]
) -> None:
    keys = [f"key-{i}" for i in range(20)]
    expected: dict[KeyT, Any] = {k: f"value-of-{k}" for k in keys}
    rng = random.Random(7)

    def check(results: list[Any], order: list[str]) -> None:
        for key, value in zip(order, results, strict=True):
            assert value is MISS or value == expected[key], f"{key} got {value!r}"

    async with FaultProxy("127.0.0.1", server.port) as proxy:
        cache = Cache(closing(through(proxy)), namespace=namespace(), timeout=TIMEOUT)
        await cache.set_many(expected)

        # A stall shorter than the timeout is invisible.
        proxy.stall()
        pending = asyncio.gather(*(cache.get(k, MISS) for k in keys))
        await asyncio.sleep(TIMEOUT / 3)
        proxy.resume()
        assert await pending == [expected[k] for k in keys]
        assert cache.stats.errors == 0

        # A longer one times out (fail open); the late replies arrive after resume.
        proxy.stall()
        started = time.perf_counter()
        assert await asyncio.gather(*(cache.get(k, MISS) for k in keys)) == [MISS] * len(keys)
        assert await cache.get(keys[0], MISS) is MISS  # a lone read, sent unbatched
        assert time.perf_counter() - started < 2 * BOUND
        assert cache.stats.errors >= 1
        proxy.resume()

        # Whatever comes back must belong to the key asked for: shuffled batches
        # and lone reads, while late replies are still in the pipes.
        for _ in range(5):
            order = rng.sample(keys, len(keys))
            check(list(await asyncio.gather(*(cache.get(k, MISS) for k in order))), order)
            key = rng.choice(keys)
            check([await cache.get(key, MISS)], [key])

        async def all_back() -> bool:
            order = rng.sample(keys, len(keys))
            results = list(await asyncio.gather(*(cache.get(k, MISS) for k in order)))
            check(results, order)
            return results == [expected[k] for k in order]

        await eventually(all_back, within=8.0)


# -- Redis killed while a loader runs ----------------------------------------------


@pytest.mark.real_only
async def test_redis_killed_mid_load_every_caller_gets_its_value(
    server: RedisProcess, closing: Callable[[aioredis.Redis], aioredis.Redis]
) -> None:
    cache = Cache(closing(aioredis.Redis(host="127.0.0.1", port=server.port)), timeout=TIMEOUT)
    await cache.set("warm", 1)
    keys = [f"k{i}" for i in range(5)]
    loaders = {k: Loader(f"value-of-{k}", delay=0.1) for k in keys}
    order = [keys[i % len(keys)] for i in range(40)]

    started = time.perf_counter()
    calls = asyncio.gather(*(cache.get_or_load(k, loaders[k]) for k in order))
    await asyncio.sleep(0.03)  # the loaders are running
    server.kill()
    results = await calls

    assert results == [f"value-of-{k}" for k in order]
    assert [loaders[k].calls for k in keys] == [1] * len(keys)
    assert time.perf_counter() - started < BOUND
    assert cache.stats.errors >= 1

    await server.restart()  # same port, empty
    await eventually(works(cache), within=8.0)
    assert await cache.get_or_load("k0", Loader("reloaded")) == "reloaded"
    assert await cache.get("k0") == "reloaded"


@pytest.mark.real_only
async def test_redis_killed_while_another_process_loads(
    server: RedisProcess, closing: Callable[[aioredis.Redis], aioredis.Redis]
) -> None:
    # Two caches on two clients: two processes, as far as the recompute lock knows.
    loading = Cache(closing(aioredis.Redis(host="127.0.0.1", port=server.port)), timeout=TIMEOUT)
    waiting = Cache(closing(aioredis.Redis(host="127.0.0.1", port=server.port)), timeout=TIMEOUT)
    await loading.set("warm", 1)
    await waiting.set("warm", 1)

    holder = asyncio.create_task(loading.get_or_load("k", Loader("from-loading", delay=0.3)))
    await asyncio.sleep(0.05)  # it holds the recompute lock and is loading
    waiter = asyncio.create_task(waiting.get_or_load("k", Loader("from-waiting")))
    await asyncio.sleep(0.05)  # it is waiting for the other process's value
    server.kill()
    killed = time.perf_counter()

    assert await holder == "from-loading"
    # Nobody will publish "filled" now; the waiter must not sit out lock_timeout (5 s).
    assert await waiter in {"from-loading", "from-waiting"}
    assert time.perf_counter() - killed < BOUND
    assert waiting.stats.errors >= 1

    await server.restart()
    await eventually(works(waiting), within=8.0)
    assert await waiting.get_or_load("k", Loader("reloaded")) == "reloaded"
    await loading.aclose()
    await waiting.aclose()


@pytest.mark.real_only
async def test_redis_lost_as_a_waiter_subscribes_still_fails_open(
    server: RedisProcess,
    closing: Callable[[aioredis.Redis], aioredis.Redis],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aiocache_patterns._redis import notify as _notify

    async with FaultProxy("127.0.0.1", server.port) as proxy:
        subscribe = _notify.Notifier._subscribe

        async def subscribe_as_redis_goes_away(
            self: _notify.Notifier, *args: Any, **kwargs: Any
        ) -> None:
            # The fault lands exactly between "the lock is taken" and "wake me up".
            proxy.refuse = True
            await proxy.drop_all()
            await subscribe(self, *args, **kwargs)

        monkeypatch.setattr(_notify.Notifier, "_subscribe", subscribe_as_redis_goes_away)
        loading = Cache(closing(aioredis.Redis(host="127.0.0.1", port=server.port)))
        waiting = Cache(closing(through(proxy)), timeout=TIMEOUT)
        holder = asyncio.create_task(loading.get_or_load("k", Loader("slow", delay=10)))
        await asyncio.sleep(0.05)  # it holds the recompute lock

        started = time.perf_counter()
        try:
            value = await waiting.get_or_load("k", Loader("from-waiting"))
        except Exception as exc:
            raise AssertionError(f"get_or_load raised {exc!r} instead of failing open") from exc
        finally:
            holder.cancel()
            await asyncio.gather(holder, return_exceptions=True)
            await loading.aclose()
        assert value == "from-waiting"
        assert time.perf_counter() - started < BOUND


# -- cancellation ------------------------------------------------------------------


@pytest.mark.real_only
@pytest.mark.parametrize("seed", [1, 2])
async def test_cancelling_callers_mid_batch_loses_and_leaks_nothing(
    server: RedisProcess,
    closing: Callable[[aioredis.Redis], aioredis.Redis],
    seed: int,
) -> None:
    rng = random.Random(seed)
    ns = namespace()
    keys = [f"key-{i}" for i in range(300)]
    expected: dict[KeyT, Any] = {k: [k, len(k)] for k in keys}
    await Cache(
        closing(aioredis.Redis(host="127.0.0.1", port=server.port)), namespace=ns
    ).set_many(expected)

    async with FaultProxy("127.0.0.1", server.port) as proxy:
        client = closing(through(proxy))
        cache = Cache(client, namespace=ns, timeout=5.0)
        executor = executor_for(client)
        proxy.latency = 0.03
        loop = asyncio.get_running_loop()
        cancelled = cancelled_openers = 0

        for _ in range(3):
            # Ten waves of 30 reads: each wave is one batch, opened by its first
            # caller; the opener is always cancelled while its batch is in flight.
            tasks: dict[str, asyncio.Task[Any]] = {}
            openers: set[str] = set()
            for wave in range(10):
                chunk = keys[wave * 30 : (wave + 1) * 30]
                tasks.update((k, asyncio.create_task(cache.get(k, MISS))) for k in chunk)
                openers.add(chunk[0])
                loop.call_later(rng.uniform(0.002, 0.02), tasks[chunk[0]].cancel)
                await asyncio.sleep(0.002)
            others = rng.sample([k for k in keys if k not in openers], 80)
            for key in others:
                loop.call_later(rng.uniform(0.0, 0.08), tasks[key].cancel)
            doomed = openers | set(others)

            results = await asyncio.gather(*tasks.values(), return_exceptions=True)
            for key, result in zip(tasks, results, strict=True):
                if isinstance(result, asyncio.CancelledError):
                    assert key in doomed, f"{key} was cancelled by someone else's cancel"
                    cancelled += 1
                    cancelled_openers += key in openers
                else:
                    assert not isinstance(result, BaseException), f"{key}: {result!r}"
                    assert result == expected[key], f"{key} got {result!r}"
        # Cancellations did land while calls were in flight, openers' included.
        assert cancelled > 50
        assert cancelled_openers >= 10

        # Lone callers (sent at once from their own task, unbatched), cancelled mid-flight.
        for key in keys[:10]:
            lone = asyncio.create_task(cache.get(key, MISS))
            loop.call_later(0.01, lone.cancel)
            await asyncio.wait([lone])
            assert lone.cancelled()

        async def idle() -> bool:
            return executor.pending_tasks == 0 and executor.in_flight == 0

        await eventually(idle, within=3.0)
        assert cache.stats.errors == 0

        proxy.latency = 0.0
        order = rng.sample(keys, len(keys))
        assert await asyncio.gather(*(cache.get(k) for k in order)) == [expected[k] for k in order]
        assert await cache.get(keys[0]) == expected[keys[0]]


@pytest.mark.real_only
async def test_cancelling_the_loading_caller_does_not_fail_the_waiters(
    server: RedisProcess, closing: Callable[[aioredis.Redis], aioredis.Redis]
) -> None:
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        cache = Cache(closing(through(proxy)), namespace=namespace(), timeout=5.0)
        proxy.latency = 0.05
        loader = Loader("value", delay=0.4)

        first = asyncio.create_task(cache.get_or_load("k", loader))

        async def loading() -> bool:
            return loader.calls == 1

        await eventually(loading, within=2.0)  # `first` leads the load
        others = [asyncio.create_task(cache.get_or_load("k", loader)) for _ in range(10)]
        await asyncio.sleep(0.15)  # their reads missed; they wait for the load `first` leads
        assert cache.stats.misses == 11  # and a miss joins the flight at once
        first.cancel()

        assert await asyncio.gather(*others) == ["value"] * 10
        with pytest.raises(asyncio.CancelledError):
            await first
        assert loader.calls == 1
        assert cache.stats.coalesced == 10
        assert await cache.get("k", MISS) == "value"  # the shared load was stored


# -- undecodable values --------------------------------------------------------------

SECRET = b"s" * 32
OTHER_SECRET = b"o" * 32


def _garbage(envelope: bytes) -> bytes:
    return b"\x00\xffnot an envelope at all"


def _truncated_header(envelope: bytes) -> bytes:
    return envelope[:10]


def _truncated_payload(envelope: bytes) -> bytes:
    return envelope[:-3]


def _unchanged(envelope: bytes) -> bytes:
    return envelope


# (name, serializer that wrote the value, corruption, serializer that reads it)
CORRUPTIONS: dict[str, tuple[Callable[[], Any], Callable[[bytes], bytes], Callable[[], Any]]] = {
    "garbage": (JsonSerializer, _garbage, JsonSerializer),
    "truncated-header": (JsonSerializer, _truncated_header, JsonSerializer),
    "truncated-payload": (JsonSerializer, _truncated_payload, JsonSerializer),
    "json-read-as-pickle": (JsonSerializer, _unchanged, lambda: PickleSerializer(SECRET)),
    "pickle-other-secret": (
        lambda: PickleSerializer(OTHER_SECRET),
        _unchanged,
        lambda: PickleSerializer(SECRET),
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
async def test_undecodable_value_is_a_counted_logged_overwritten_miss(
    redis: Client, corruption: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiocache_patterns.cache")
    writer_serializer, corrupt, reader_serializer = CORRUPTIONS[corruption]
    ns = namespace()
    writer = Cache(redis, namespace=ns, serializer=writer_serializer())
    reader = Cache(redis, namespace=ns, serializer=reader_serializer())
    value = {"title": "hello", "tags": ["a", "b", "c"]}

    bad: dict[str, bytes] = {}
    for key in ("first", "second"):
        await writer.set(key, value)
        [rkey] = [k for k in await all_keys(redis, f"{ns}:*") if key.encode() in k]
        good = await redis.get(rkey)
        assert isinstance(good, bytes)
        bad[key] = corrupt(good)
        await redis.set(rkey, bad[key], keepttl=True)

    for _ in range(3):
        assert await reader.get("first", MISS) is MISS
        assert await reader.get("second", MISS) is MISS
    stats = reader.stats
    assert stats.decode_errors == 6
    assert stats.misses == 6
    assert stats.hits == 0

    warnings = [
        r
        for r in caplog.records
        if r.name == "aiocache_patterns.cache" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 2, [r.getMessage() for r in warnings]  # once per key
    assert "first" in warnings[0].getMessage()
    assert "second" in warnings[1].getMessage()

    loader = Loader({"title": "reloaded"})
    assert await reader.get_or_load("first", loader) == {"title": "reloaded"}
    assert loader.calls == 1
    [rkey] = [k for k in await all_keys(redis, f"{ns}:*") if b"first" in k]
    raw = await redis.get(rkey)
    assert isinstance(raw, bytes)
    assert raw != bad["first"]
    assert raw.startswith(ENVELOPE_MAGIC)
    assert await redis.pttl(rkey) > 0
    assert await reader.get("first", MISS) == {"title": "reloaded"}
    assert reader.stats.decode_errors == 7  # the read inside get_or_load
