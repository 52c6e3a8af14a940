"""Hostile input: keys and values built to break naive code, for every pattern.

Each gets a clear error or a safe result, never a crash, and never a
corrupted neighbour.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

import pytest

from aiocache_patterns import (
    Cache,
    Idempotency,
    JsonSerializer,
    Lock,
    PickleSerializer,
    RateLimiter,
    SerializationError,
)
from aiocache_patterns.cache._entry import pack
from tests._helpers import all_keys

HOSTILE_KEYS: list[str | bytes] = [
    "nul\x00byte",
    "new\nline\r\n",
    "{braces}",
    "}starts-with-close",
    "{}",
    "'); redis.call('FLUSHALL'); --",
    "]]..redis.call('FLUSHALL')..[[",
    "%s%d%n",
    "\u202e\U0001f600 unicode",
    b"\xff\xfe\x00raw bytes",
    "k" * 1_000_000,
]


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=lambda k: repr(k)[:20])
async def test_cache_keys_round_trip_without_touching_neighbours(
    redis: Any, key: str | bytes
) -> None:
    cache = Cache(redis, namespace="hostile")
    await cache.set("neighbour", "intact")
    await cache.set(key, {"v": "hostile"})
    assert await cache.get(key) == {"v": "hostile"}
    assert await cache.get("neighbour") == "intact"  # nothing was flushed or overwritten
    assert await cache.delete(key) == 1
    assert await cache.get(key) is None
    assert await cache.get("neighbour") == "intact"


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=lambda k: repr(k)[:20])
async def test_idempotency_keys_and_fingerprints(redis: Any, key: str | bytes) -> None:
    await redis.set(b"sentinel", b"1")
    idem = Idempotency(redis, namespace="hostile", ttl=60)
    calls: list[int] = []

    async def op(fence: int) -> str:
        calls.append(fence)
        return "ran"

    assert await idem.run(key, key, op) == "ran"
    assert await idem.run(key, key, op) == "ran"
    assert await idem.run("neighbour", key, op) == "ran"
    assert len(calls) == 2
    assert await redis.get(b"sentinel") == b"1"
    assert all(len(k) < 300 for k in await all_keys(redis))  # huge keys were hashed


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=lambda k: repr(k)[:20])
async def test_lock_and_limiter_names(redis: Any, key: str | bytes) -> None:
    await redis.set(b"sentinel", b"1")
    async with Lock(redis, key, ttl=5, blocking_timeout=0) as lease:
        assert lease.fencing_token > 0
        assert not await Lock(redis, key, blocking_timeout=0).acquire()
    limiter = RateLimiter(redis, limit=1, window=60)
    assert (await limiter.hit(key)).allowed
    assert not (await limiter.hit(key)).allowed
    assert (await limiter.hit("other")).allowed
    assert await redis.get(b"sentinel") == b"1"
    assert all(len(k) < 300 for k in await all_keys(redis))  # huge names were hashed


async def test_huge_values_get_a_clear_configurable_limit(redis: Any) -> None:
    big = "x" * (100 * 1024 * 1024)  # 100 MB
    cache = Cache(redis, namespace="big")
    with pytest.raises(ValueError, match="max_value_bytes"):
        await cache.set("k", big)
    with pytest.raises(ValueError, match="max_value_bytes"):
        await cache.set_many({"a": 1, "k": big})
    assert await cache.get_many(["a", "k"]) == {}  # all-or-nothing: nothing was written

    async def loader() -> str:
        return big

    with pytest.raises(ValueError, match="max_value_bytes"):
        await cache.get_or_load("k", loader)
    small_limit = Cache(redis, namespace="small", max_value_bytes=64)
    await small_limit.set("ok", "x" * 10)
    with pytest.raises(ValueError, match="64"):
        await small_limit.set("k", "x" * 100)


@pytest.mark.parametrize(
    "stored",
    [
        b"",
        b"\xac",
        b"\xac\x01",
        pack(b'{"a":', created=0, delta=0, fresh_until=math.inf),  # truncated JSON
        pack(b'{"a":1}', created=0, delta=0, fresh_until=math.inf)[:20],  # truncated header
        b"\xac\x02" + b"\x00" * 24 + b"{}",  # a future envelope version
        b"plain text someone SET by hand",
    ],
    ids=repr,
)
async def test_undecodable_entries_are_misses(redis: Any, stored: bytes) -> None:
    cache = Cache(redis, namespace="bad")
    await redis.set(b"bad:{k}", stored)
    assert await cache.get("k", "MISS") == "MISS"
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        return "fresh"

    assert await cache.get_or_load("k", loader) == "fresh"
    assert calls == 1
    assert await cache.get("k") == "fresh"  # overwritten
    assert cache.stats.decode_errors >= 1


async def test_forged_pickles_are_refused(redis: Any) -> None:
    secret = secrets.token_bytes(32)
    cache = Cache(redis, namespace="pk", serializer=PickleSerializer(secret))
    import pickle

    class Boom:
        def __reduce__(self) -> Any:
            return (pytest.fail, ("the forged pickle was unpickled",))

    for forged in (
        pickle.dumps(Boom()),  # unsigned
        b"\x00" * 32 + pickle.dumps(Boom()),  # a made-up signature
        PickleSerializer(secrets.token_bytes(32)).dumps("other key"),
    ):
        await redis.set(b"pk:{k}", pack(forged, created=0, delta=0, fresh_until=math.inf))
        assert await cache.get("k", "MISS") == "MISS"
    assert cache.stats.decode_errors == 3


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, {"x": math.nan}])
async def test_non_finite_numbers(redis: Any, value: Any) -> None:
    with pytest.raises(SerializationError):
        await Cache(redis, namespace="nf").set("k", value)
    with pytest.raises(SerializationError):
        JsonSerializer().dumps(value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, 0.0])
def test_non_finite_durations(redis: Any, bad: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        Lock(redis, "x", ttl=bad)
    with pytest.raises(ValueError, match="window"):
        RateLimiter(redis, limit=1, window=bad)
    with pytest.raises(ValueError, match="ttl"):
        Cache(redis, ttl=bad)
