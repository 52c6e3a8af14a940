"""The backend fixture itself: each backend is what it claims to be, and isolated."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis
from fakeredis import FakeAsyncRedis
from redis.exceptions import RedisClusterException, ResponseError

from tests._backends import all_keys, key_count

if TYPE_CHECKING:
    from tests._backends import Backend, Client


async def test_database_is_empty_at_start(redis: Client) -> None:
    # Leaves a key behind on purpose; so does test_set_get_round_trip.
    # test_database_is_empty_at_start_again fails if the fixture did not flush.
    assert await all_keys(redis) == []
    assert await key_count(redis) == 0
    await redis.set("leftover", b"x")


async def test_set_get_round_trip(redis: Client) -> None:
    assert await redis.get("missing") is None
    assert await redis.set("k", b"\x00\xffvalue") is True
    assert await redis.get("k") == b"\x00\xffvalue"
    assert await redis.set("ttl-key", b"v", px=5_000) is True
    assert 0 < await redis.pttl("ttl-key") <= 5_000


async def test_database_is_empty_at_start_again(redis: Client) -> None:
    assert await all_keys(redis) == []
    assert await key_count(redis) == 0


async def test_redis_fixture_returns_bytes(redis: Client) -> None:
    await redis.set("k", "text")
    value = await redis.get("k")
    assert isinstance(value, bytes)
    assert value == b"text"


async def test_redis_decoded_returns_str(redis_decoded: Client) -> None:
    await redis_decoded.set("k", "héllo")
    value = await redis_decoded.get("k")
    assert isinstance(value, str)
    assert value == "héllo"


async def test_clients_share_data(backend: Backend, redis: Client) -> None:
    other = await backend.client(decode_responses=True)
    await redis.set("shared", b"1")
    assert await other.get("shared") == "1"


async def test_lua_eval(redis: Client) -> None:
    script = """
        local n = redis.call('INCRBY', KEYS[1], ARGV[1])
        redis.call('PEXPIRE', KEYS[1], ARGV[2])
        local t = redis.call('TIME')
        return {n, redis.call('PTTL', KEYS[1]), tonumber(t[1])}
    """
    n, pttl, now = await redis.eval(script, 1, "{t}:counter", 5, 10_000)
    assert n == 5
    assert 0 < pttl <= 10_000
    assert now > 1_600_000_000
    # The script cache path: EVALSHA after SCRIPT LOAD.
    sha = await redis.script_load("return ARGV[1] .. KEYS[1]")
    assert await redis.evalsha(sha, 1, "{t}:k", "x") == b"x{t}:k"


async def test_lua_multi_key_with_hash_tag(redis: Client) -> None:
    script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('RENAME', KEYS[1], KEYS[2])"
    assert await redis.eval(script, 2, "{tag}:a", "{tag}:b", "v") == b"OK"
    assert await redis.get("{tag}:b") == b"v"


async def test_backend_is_what_it_claims(backend: Backend, redis: Client) -> None:
    if backend.name == "fakeredis":
        assert backend.is_fake
        assert isinstance(redis, FakeAsyncRedis)
        assert backend.url is None
    elif backend.name == "redis":
        assert isinstance(redis, aioredis.Redis)
        assert not isinstance(redis, FakeAsyncRedis)
        info = await redis.info("server")
        assert info["redis_mode"] == "standalone"
    elif backend.name == "valkey":
        assert type(redis).__module__.startswith("valkey.")
        assert not isinstance(redis, aioredis.Redis)
        assert not backend.is_cluster
    else:
        assert backend.name == "cluster"
        assert backend.is_cluster
        assert isinstance(redis, aioredis.RedisCluster)


async def test_cluster_spans_three_masters(backend: Backend, redis: Client) -> None:
    if not isinstance(redis, aioredis.RedisCluster):
        assert not backend.is_cluster
        return
    assert backend.is_cluster
    primaries = redis.get_primaries()
    assert len(primaries) == 3
    # Keys without a common hash tag really land on different primaries.
    keys = [f"key-{i}" for i in range(50)]
    assert len({redis.keyslot(k) for k in keys}) > 3
    owners = {redis.get_node_from_key(k) for k in keys}
    assert None not in owners
    assert len(owners) == 3
    for k in keys:
        await redis.set(k, b"v")
    sizes = [await redis.dbsize(target_nodes=node) for node in primaries]
    assert sum(sizes) == 50
    assert all(size > 0 for size in sizes)
    assert await key_count(redis) == 50
    assert sorted(await all_keys(redis)) == sorted(k.encode() for k in keys)


async def test_cross_slot_script(backend: Backend, redis: Client) -> None:
    # Fine on a single node; refused by a cluster: the reason every multi-key
    # script needs a {hash tag}.
    if backend.is_cluster:
        with pytest.raises((RedisClusterException, ResponseError), match=r"(?i)slot"):
            await redis.eval("return 1", 2, "a", "b")
    else:
        assert await redis.eval("return 1", 2, "a", "b") == 1


@pytest.mark.real_only
async def test_real_only_skips_on_fakeredis(backend: Backend, redis: Client) -> None:
    assert not backend.is_fake
    assert not isinstance(redis, FakeAsyncRedis)
    assert await redis.ping() is True
