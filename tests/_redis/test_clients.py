"""valkey-py's clients: accepted, and their errors translated like redis-py's.

valkey-py is a fork of redis-py whose exception classes are its own: an
``except redis.exceptions.ConnectionError`` does not catch valkey's. The
behaviour suites run on a Valkey client too (the ``valkey`` backend,
``AIOCACHE_TEST_VALKEY=1``); these tests check what needs a fault: a dead or
killed server under a Valkey client degrades exactly as under redis-py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aiocache_patterns import (
    Cache,
    Lock,
    RateLimiter,
    RedisCommandError,
    RedisOutOfMemory,
    RedisTimeout,
    RedisUnavailable,
)
from aiocache_patterns._redis import clients
from aiocache_patterns._redis.executor import _reply_error, _translate, executor_for
from tests._servers import RedisProcess, free_port

valkey_asyncio = pytest.importorskip("valkey.asyncio")
valkey_errors = pytest.importorskip("valkey.exceptions")

TIMEOUT = 0.3
BOUND = 2.0


def _valkey(port: int, **kwargs: Any) -> Any:
    return valkey_asyncio.Valkey(host="127.0.0.1", port=port, **kwargs)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("ConnectionError", RedisUnavailable),
        ("BusyLoadingError", RedisUnavailable),
        ("ReadOnlyError", RedisUnavailable),
        ("ClusterDownError", RedisUnavailable),
        ("TimeoutError", RedisTimeout),
        ("OutOfMemoryError", RedisOutOfMemory),
        ("ResponseError", RedisCommandError),
        ("NoScriptError", RedisCommandError),
        ("DataError", RedisCommandError),
    ],
)
def test_valkey_errors_are_translated(error: str, expected: type[BaseException]) -> None:
    exc = getattr(valkey_errors, error)("boom")
    translated = _translate(exc, 1.0)
    assert isinstance(translated, expected)
    assert translated.__cause__ is exc
    assert not isinstance(translated, RedisTimeout) or expected is RedisTimeout


def test_valkey_reply_errors_are_translated() -> None:
    assert isinstance(_reply_error(valkey_errors.ReadOnlyError("READONLY")), RedisUnavailable)
    assert isinstance(_reply_error(valkey_errors.OutOfMemoryError("OOM")), RedisOutOfMemory)
    assert isinstance(_reply_error(valkey_errors.ResponseError("ERR x")), RedisCommandError)


def test_the_tuples_hold_both_libraries() -> None:
    assert valkey_errors.ConnectionError in clients.CONNECTION_ERRORS
    assert valkey_errors.NoScriptError in clients.NO_SCRIPT_ERRORS
    assert valkey_errors.NoPermissionError in clients.NO_PERMISSION_ERRORS
    assert valkey_errors.ValkeyError in clients.CLIENT_ERRORS


async def test_valkey_clients_are_accepted() -> None:
    client = _valkey(free_port())
    try:
        assert not executor_for(client).is_cluster
        cluster = valkey_asyncio.ValkeyCluster(
            host="127.0.0.1", port=free_port(), dynamic_startup_nodes=False
        )
    except Exception as exc:  # pragma: no cover - valkey-py connects lazily
        pytest.fail(f"could not build a ValkeyCluster client: {exc!r}")
    assert executor_for(cluster).is_cluster  # MGETs are split per slot
    await client.aclose()


@pytest.mark.real_only
async def test_cache_fails_open_with_valkey_on_a_dead_port() -> None:
    client = _valkey(free_port(), socket_connect_timeout=TIMEOUT)
    cache = Cache(client, namespace="vk", ttl=10, timeout=TIMEOUT)
    loads = 0

    async def loader() -> str:
        nonlocal loads
        loads += 1
        return "fresh"

    try:
        start = asyncio.get_running_loop().time()
        assert await cache.get_or_load("k", loader) == "fresh"
        assert asyncio.get_running_loop().time() - start < BOUND
        assert await cache.get("k", default="dflt") == "dflt"
        assert loads == 1
        assert cache.stats.errors >= 1
        with pytest.raises(RedisUnavailable):
            await cache.delete("k")
    finally:
        await client.aclose()


@pytest.mark.real_only
async def test_patterns_degrade_with_valkey_on_a_killed_server(
    private_server: RedisProcess,
) -> None:
    client = _valkey(private_server.port, socket_connect_timeout=TIMEOUT)
    cache = Cache(client, namespace="vk", ttl=10, timeout=TIMEOUT)
    opened = RateLimiter(client, limit=1, window=10, timeout=TIMEOUT, fail_open=True)
    closed = RateLimiter(client, limit=1, window=10, timeout=TIMEOUT, fail_open=False)
    lock = Lock(client, "vk-lock", ttl=5, blocking_timeout=0.2, timeout=TIMEOUT)

    async def loader() -> str:
        return "loaded"

    try:
        await cache.set("k", "cached")
        assert await cache.get("k") == "cached"
        assert (await opened.hit("a")).allowed
        private_server.kill()
        assert await cache.get_or_load("k", loader) == "loaded"
        assert (await opened.hit("a")).degraded
        assert (await opened.hit("a")).allowed
        denied = await closed.hit("b")
        assert denied.degraded
        assert not denied.allowed
        with pytest.raises(RedisUnavailable):
            await lock.acquire()
        await private_server.restart()
        for _ in range(100):  # the breaker lets a trial through within its cooldown
            await asyncio.sleep(0.1)
            try:
                await cache.delete("k")  # raises while Redis is unavailable
            except RedisUnavailable:
                continue
            break
        await cache.set("k", "again")
        assert await cache.get("k") == "again"
    finally:
        await client.aclose()
