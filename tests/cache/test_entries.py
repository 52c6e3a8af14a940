"""Stored entries are trusted no more than they should be (issue 15.4).

Someone with write access to Redis can copy and rewrite entries. With signed
pickle, an entry is bound to its key (namespace included) and its envelope
header: copied under another key, or with its freshness deadline rewritten, it
is refused like a forged one. Whatever the serializer, a stored value larger
than ``max_value_bytes`` is a miss, refused before it is decoded.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from aiocache_patterns import Cache, JsonSerializer, PickleSerializer
from aiocache_patterns.keys import KeyBuilder

MISS: Any = object()
SECRET = b"k" * 32
YEAR_2100 = 4_102_444_800.0
#: Offset of fresh_until in the envelope: magic (2), created (8), delta (8).
FRESH_UNTIL_AT = 18


def rkey(namespace: str, key: str) -> bytes:
    return KeyBuilder(namespace).key(key)


class CountingJson(JsonSerializer):
    """JSON that counts how often it is asked to decode."""

    def __init__(self) -> None:
        super().__init__()
        self.decoded = 0

    def loads(self, data: bytes) -> Any:
        self.decoded += 1
        return super().loads(data)


async def test_a_signed_entry_copied_under_another_key_is_refused(redis: Any) -> None:
    cache = Cache(redis, namespace="acct", serializer=PickleSerializer(SECRET))
    await cache.set("alice", {"balance": 1_000_000})
    await cache.set("bob", {"balance": 3})
    assert await cache.get("bob") == {"balance": 3}

    alice_entry = await redis.get(rkey("acct", "alice"))
    await redis.set(rkey("acct", "bob"), alice_entry, px=60_000)
    assert await cache.get("bob", MISS) is MISS
    assert cache.stats.decode_errors == 1
    # The next load replaces it.
    assert await cache.get_or_load("bob", _value({"balance": 3})) == {"balance": 3}
    assert await cache.get("bob") == {"balance": 3}
    assert await cache.get("alice") == {"balance": 1_000_000}  # the original is fine


async def test_a_signed_entry_copied_into_another_namespace_is_refused(redis: Any) -> None:
    serializer = PickleSerializer(SECRET)
    blog = Cache(redis, namespace="blog", serializer=serializer)
    admin = Cache(redis, namespace="admin", serializer=serializer)
    await blog.set("settings", {"role": "reader"})
    await redis.set(rkey("admin", "settings"), await redis.get(rkey("blog", "settings")))
    assert await admin.get("settings", MISS) is MISS
    assert admin.stats.decode_errors == 1


async def test_a_rewritten_header_is_refused(redis: Any) -> None:
    clock = Clock(1_000.0)
    cache = Cache(redis, namespace="h", serializer=PickleSerializer(SECRET), ttl=60, clock=clock)
    await cache.set("k", "old", ttl=60)
    key = rkey("h", "k")
    entry = bytearray(await redis.get(key))
    struct.pack_into(">d", entry, FRESH_UNTIL_AT, YEAR_2100)
    await redis.set(key, bytes(entry))
    clock.now += 120  # stale by its own header; fresh until 2100 by the forged one
    assert await cache.get("k", MISS) is MISS
    assert await cache.get_or_load("k", _value("new")) == "new"
    assert cache.stats.decode_errors >= 1


async def test_an_untouched_signed_entry_reads_back(redis: Any) -> None:
    cache = Cache(redis, namespace="ok", serializer=PickleSerializer(SECRET))
    value = {"set": {1, 2}, "tuple": (1, "a"), "bytes": b"\x00"}
    await cache.set("k", value)
    assert await cache.get("k") == value
    assert await cache.get_many(["k", "nope"]) == {"k": value}
    assert cache.stats.decode_errors == 0


@pytest.mark.parametrize("read", ["get", "get_many", "get_or_load"])
async def test_an_oversized_stored_value_is_a_miss_never_decoded(redis: Any, read: str) -> None:
    big = "x" * (3 * 2**20)
    await Cache(redis, namespace="sz").set("k", big)  # written by a cache with a larger limit
    serializer = CountingJson()
    cache = Cache(redis, namespace="sz", serializer=serializer, max_value_bytes=1024)
    if read == "get":
        assert await cache.get("k", MISS) is MISS
    elif read == "get_many":
        assert await cache.get_many(["k"]) == {}
    else:
        assert await cache.get_or_load("k", _value("small")) == "small"
        assert await cache.get("k") == "small"  # overwritten by the load
    assert serializer.decoded == (1 if read == "get_or_load" else 0)  # only "small"
    assert cache.stats.decode_errors == 1
    assert cache.stats.misses >= 1


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _value(value: Any) -> Any:
    async def load() -> Any:
        return value

    return load
