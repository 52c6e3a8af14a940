"""Direct use of redis-py connections: the lane for lone calls, and pipelines.

Only a standalone ``redis.asyncio.Redis`` with a pool of at least ``MIN_POOL``
connections gets a lane; on fakeredis and a cluster every test here checks
that lone calls still behave (and that no connection is held).
"""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import pytest
import redis.asyncio as aioredis

from aiocache_patterns._redis import compat as _compat
from aiocache_patterns._redis.direct import MIN_POOL
from aiocache_patterns._redis.executor import executor_for
from aiocache_patterns._redis.scripts import Script
from aiocache_patterns.errors import RedisCommandError, RedisTimeout
from tests._backends import Backend, in_ci, standalone_availability
from tests._helpers import populate

ECHO = Script("test_lane_echo", b"return ARGV[1]")
#: Lua that keeps the server busy for 50 ms (after `local t = redis.call('TIME')`).
_SPIN = (
    b"local start = t[1] * 1000000 + t[2] "
    b"repeat local n = redis.call('TIME') until n[1] * 1000000 + n[2] - start > 50000"
)


@pytest.fixture
def redis_url() -> str:
    """The standalone server's URL (these tests make their own clients)."""
    availability = standalone_availability()
    if availability.url is None:
        reason = f"redis backend unavailable: {availability.reason}"
        if in_ci():
            pytest.fail(f"{reason} (CI=true: a missing real backend is a failure)", False)
        pytest.skip(reason)
    return availability.url


def _lane() -> int:
    """Connections a standalone client's executor holds: its lane, if the fast paths are on."""
    return int(_compat.FAST_PATHS)


def _pool_size(client: Any) -> int:
    pool = client.connection_pool
    return len(pool._available_connections) + len(pool._in_use_connections)


async def test_lone_calls_share_one_held_connection(backend: Backend) -> None:
    redis = await backend.client()
    keys = await populate(redis, 20, "lane")
    ex = executor_for(redis)
    for i, key in enumerate(keys):
        assert await ex.get(key, 1.0) == f"v{i}".encode()
        assert await ex.script(ECHO, [key], [str(i)], 1.0) == str(i).encode()
    if backend.name == "redis":
        assert ex.held_connections == _lane()
        # the lane, and the connection the SETs (and a SCRIPT LOAD, if the server
        # did not know the script yet) used: lone calls made no others
        assert _pool_size(redis) <= 2
        assert len(redis.connection_pool._in_use_connections) == _lane()  # type: ignore[union-attr]
    else:
        assert ex.held_connections == 0


async def test_a_busy_lane_sends_the_next_caller_the_ordinary_way(backend: Backend) -> None:
    redis = await backend.client()
    keys = await populate(redis, 2, "lane")
    ex = executor_for(redis)
    assert await ex.get(keys[0], 1.0) == b"v0"  # the lane is connected
    first = asyncio.create_task(ex.get(keys[0], 1.0))
    await asyncio.sleep(0)  # `first` has sent its GET and waits for the reply
    # Nothing else is ready, so this caller is alone too, but the lane is taken.
    assert await ex.get(keys[1], 1.0) == b"v1"
    assert await first == b"v0"
    if backend.name == "redis":
        assert ex.held_connections == _lane()


async def test_cancelled_lone_calls_never_shift_replies(backend: Backend) -> None:
    """A lone call cancelled while its reply is outstanding (CVE-2023-28858/9)."""
    redis = await backend.client()
    keys = await populate(redis, 50, "lane")
    ex = executor_for(redis)
    rng = random.Random(7)
    cancelled = 0
    for n in range(300):
        i = rng.randrange(50)
        task = asyncio.create_task(ex.get(keys[i], 2.0))
        for _ in range(rng.randrange(0, 4)):
            await asyncio.sleep(0)
        task.cancel()
        try:
            assert await task == f"v{i}".encode()
        except asyncio.CancelledError:
            cancelled += 1
        j = (i + n) % 50
        assert await ex.get(keys[j], 2.0) == f"v{j}".encode()  # its own reply, always
    assert cancelled > 50
    assert ex.in_flight == 0


@pytest.mark.real_only
async def test_the_lane_reconnects_when_the_server_drops_it(backend: Backend) -> None:
    redis = await backend.client()
    keys = await populate(redis, 2, "lane")
    ex = executor_for(redis)
    assert await ex.get(keys[0], 1.0) == b"v0"
    killer = await backend.client()
    kill = ("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    if backend.is_cluster:
        replies = await killer.execute_command(
            "CLIENT KILL", *kill[2:], target_nodes=aioredis.RedisCluster.ALL_NODES
        )
        killed = sum(replies.values())
    else:
        killed = await killer.execute_command(*kill)
    assert killed >= 1
    await asyncio.sleep(0.01)  # the event loop sees the connections close
    # redis-py's retry reconnects, as it would for a pooled connection
    assert await ex.get(keys[1], 1.0) == b"v1"
    assert await ex.script(ECHO, [keys[1]], ["again"], 1.0) == b"again"


@pytest.mark.real_only
async def test_a_small_pool_gets_no_lane(backend: Backend) -> None:
    redis = await backend.client(max_connections=MIN_POOL - 1)
    keys = await populate(redis, 3, "lane")
    ex = executor_for(redis)
    for i, key in enumerate(keys):
        assert await ex.get(key, 1.0) == f"v{i}".encode()
    assert ex.held_connections == 0
    if backend.name == "redis":
        assert not redis.connection_pool._in_use_connections  # type: ignore[union-attr]


async def test_a_command_with_a_reply_callback_keeps_redis_py_parsing(backend: Backend) -> None:
    redis = await backend.client()
    ex = executor_for(redis)
    # replies go through redis-py's callbacks (b"OK" -> True, 1 -> True) on every path
    assert await ex.command("SET", b"t:{lane}", b"x", timeout=1.0) is True
    assert await ex.command("PEXPIRE", b"t:{lane}", 10_000, timeout=1.0) is True
    assert await ex.command("PEXPIRE", b"t:{nothing}", 10_000, timeout=1.0) is False
    assert await ex.get(b"t:{lane}", 1.0) == b"x"
    if backend.name == "redis":
        assert ex.held_connections == _lane()  # those went on the lane


async def test_closing_the_client_closes_the_lane(redis_url: str) -> None:
    if not _compat.FAST_PATHS:
        pytest.skip("no lane without the fast paths")
    redis = aioredis.Redis.from_url(redis_url)
    ex = executor_for(redis)
    assert await ex.get(b"t:{nothing}", 1.0) is None
    held = list(redis.connection_pool._in_use_connections)
    assert len(held) == 1
    assert held[0].is_connected
    await redis.aclose()
    assert not held[0].is_connected


def test_a_new_event_loop_gives_the_old_lane_back(redis_url: str) -> None:
    """A client used on one loop, then on another: the first loop's lane goes back
    to the pool instead of holding a connection for ever."""
    redis = aioredis.Redis.from_url(redis_url)
    ex = executor_for(redis)
    held: list[int] = []

    async def use(last: bool) -> None:
        assert await ex.get(b"t:{nothing}", 1.0) is None
        await asyncio.sleep(0.01)  # the old lane's give-back task runs
        held.append(len(redis.connection_pool._in_use_connections))
        if last:
            await redis.aclose()
        else:  # sockets belong to a loop: close them before it ends
            await redis.connection_pool.disconnect()

    def in_thread() -> None:
        asyncio.run(use(last=False))
        asyncio.run(use(last=True))

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(10)
    assert held == [_lane(), _lane()]


async def test_pipelines_keep_each_reply_in_its_place(backend: Backend) -> None:
    redis = await backend.client()
    await redis.set(b"t:{p}s", b"string")
    ex = executor_for(redis)
    script_error = Script("test_direct_fail", b"return redis.error_reply('ERR nope ' .. ARGV[1])")
    for _ in range(3):
        replies = await asyncio.gather(
            ex.command("SET", b"t:{p}a", b"1", "PX", 60_000, timeout=1.0),
            ex.command("LPUSH", b"t:{p}s", b"x", timeout=1.0),
            ex.get(b"t:{p}s", 1.0),
            ex.script(script_error, [b"t:{p}a"], ["7"], 1.0),
            ex.script(ECHO, [b"t:{p}a"], ["echo"], 1.0),
            ex.command("PTTL", b"t:{p}a", timeout=1.0),
            return_exceptions=True,
        )
        assert replies[0] is True
        assert isinstance(replies[1], RedisCommandError)
        assert "WRONGTYPE" in str(replies[1])
        assert replies[2] == b"string"
        assert isinstance(replies[3], RedisCommandError)
        assert "nope 7" in str(replies[3])
        assert replies[4] == b"echo"
        assert isinstance(replies[5], int)
        assert 0 < replies[5] <= 60_000
    # and the connections are in step afterwards
    assert await ex.get(b"t:{p}a", 1.0) == b"1"


@pytest.mark.real_only  # fakeredis runs the script inside the event loop: nothing to cut off
async def test_a_cancelled_pipeline_leaves_no_reply_behind(backend: Backend) -> None:
    """A batch cut off by its deadline mid-read: the connection is dropped, not reused
    with replies still queued on it."""
    redis = await backend.client()
    keys = await populate(redis, 40, "lane")
    ex = executor_for(redis)
    spin = b"local t = redis.call('TIME') " + _SPIN + b" return ARGV[1]"
    slow = Script("test_direct_slow", spin)
    for round_ in range(5):
        calls = [ex.script(slow, [keys[0]], [str(round_)], 0.001)]
        calls += [ex.get(k, 0.001) for k in keys]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert any(isinstance(r, RedisTimeout) for r in results)
        # whatever was cut off, every next read gets its own value
        got = await asyncio.gather(*(ex.get(k, 2.0) for k in keys))
        assert got == [f"v{i}".encode() for i in range(40)]


async def test_arguments_are_packed_as_redis_py_packs_them(backend: Backend) -> None:
    redis = await backend.client()
    ex = executor_for(redis)
    values: list[tuple[Any, bytes]] = [
        ("é ü", "é ü".encode()),
        (b"\x00\xff", b"\x00\xff"),
        (memoryview(b"view"), b"view"),
        (12, b"12"),
        (10**20, b"100000000000000000000"),
        (1.5, b"1.5"),
        (-0.0, b"-0.0"),
        (1e300, b"1e+300"),
    ]
    for i, (value, stored) in enumerate(values):
        key = f"t:{{pack}}{i}".encode()
        assert await ex.command("SET", key, value, timeout=1.0) is True
        assert await ex.get(key, 1.0) == stored
    # together, in one pipeline
    got = await asyncio.gather(*(ex.script(ECHO, [b"t:{pack}"], [v], 1.0) for v, _ in values))
    assert got == [stored for _, stored in values]


async def test_an_argument_redis_py_refuses_is_a_clear_error(backend: Backend) -> None:
    redis = await backend.client()
    ex = executor_for(redis)
    for bad in (True, None, object()):
        with pytest.raises(RedisCommandError, match=r"Invalid input of type"):
            await ex.command("SET", b"t:{bad}", bad, timeout=1.0)
    assert await ex.get(b"t:{bad}", 1.0) is None  # and the connection is still in step


async def test_a_client_encoding_other_than_utf8_is_honoured(backend: Backend) -> None:
    redis = await backend.client(encoding="latin-1")
    ex = executor_for(redis)
    assert await ex.command("SET", b"t:{latin}", "é", timeout=1.0) is True
    assert await ex.get(b"t:{latin}", 1.0) == b"\xe9"
