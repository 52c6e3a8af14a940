"""Redis Cluster failover: a master is killed and its replica promoted, mid-traffic.

Runs on a private 3-master, 3-replica cluster (started by ``.ci/cluster``),
so killing a node disturbs no other test. What the docs promise for an
asynchronously replicated failover:

* writes acknowledged and replicated before the failover survive it: a lock
  held then is still held after (no double grant), a rate limiter's count
  carries over, fencing tokens keep increasing;
* during the failover, calls fail within their timeout with a library error
  (or, for the cache and a fail-open limiter, degrade), never hang;
* afterwards everything recovers without user action.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from aiocache_patterns import Cache, CachePatternsError, Lock, RateLimiter
from tests._backends import in_ci

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / ".ci" / "cluster"

pytestmark = pytest.mark.timeout(120)


class PrivateCluster:
    def __init__(self, directory: Path, url: str) -> None:
        self.directory = directory
        self.url = url

    async def master_for(self, client: Any, key: bytes) -> tuple[str, int]:
        """``(node id, port)`` of the master serving ``key``'s slot."""
        slot = key_slot(key)
        nodes = await client.cluster_nodes()
        for address, info in nodes.items():
            if "master" not in info["flags"]:
                continue
            for start, *end in info["slots"]:
                if int(start) <= slot <= int(end[0] if end else start):
                    return info["node_id"], int(address.split(":")[1])
        raise AssertionError(f"no master serves slot {slot}")

    def kill(self, port: int) -> None:
        pid = int((self.directory / f"{port}.pid").read_text())
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
async def cluster() -> AsyncIterator[PrivateCluster]:
    if shutil.which("redis-server") is None:
        if in_ci():
            pytest.fail("redis-server is required in CI")
        pytest.skip("redis-server is not installed")
    directory = Path(tempfile.mkdtemp(prefix="failover-"))
    started = await asyncio.to_thread(
        subprocess.run,
        ["bash", str(CLUSTER), "start", str(directory), "--replicas", "1", "--base-port", "7200"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    if started.returncode != 0:
        pytest.fail(f"could not start a cluster with replicas:\n{started.stderr[-2000:]}")
    try:
        yield PrivateCluster(directory, started.stdout.strip().splitlines()[-1])
    finally:
        await asyncio.to_thread(
            subprocess.run, ["bash", str(CLUSTER), "stop", str(directory)], capture_output=True
        )
        shutil.rmtree(directory, ignore_errors=True)


async def _until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await predicate():
                return
        except Exception:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("condition not reached in time")


async def test_failover_keeps_locks_limits_and_cache_honest(cluster: PrivateCluster) -> None:
    client = aioredis.RedisCluster.from_url(cluster.url)
    admin = aioredis.RedisCluster.from_url(cluster.url)
    try:
        holder = Lock(client, "invoice:42", ttl=60, timeout=0.5)
        assert await holder.acquire()
        assert holder.lease is not None
        token_before = holder.lease.fencing_token
        limiter = RateLimiter(
            client, limit=10, window=600, algorithm="sliding_log", timeout=0.5, fail_open=False
        )
        for _ in range(4):
            assert (await limiter.hit("user:1")).allowed
        cache = Cache(client, namespace="fo", ttl=600, timeout=0.5)
        loads = 0

        async def loader() -> str:
            nonlocal loads
            loads += 1
            return "value"

        assert await cache.get_or_load("page", loader) == "value"
        await asyncio.sleep(0.5)  # let the replicas catch up: async replication

        node_id, port = await cluster.master_for(admin, b"lock:{invoice:42}")
        cluster.kill(port)

        # During the failover: bounded failures or degraded answers, never a hang.
        started = time.monotonic()
        for _ in range(3):
            try:
                await asyncio.wait_for(Lock(client, "invoice:42", blocking_timeout=0).acquire(), 3)
            except CachePatternsError:
                pass
            except asyncio.TimeoutError:
                pytest.fail("a lock call hung past its timeout during the failover")
        assert await asyncio.wait_for(cache.get_or_load("other", loader), 5) == "value"
        assert time.monotonic() - started < 15

        async def promoted() -> bool:
            nodes = await admin.cluster_nodes()
            flags = [str(info["flags"]) for info in nodes.values()]
            live_masters = [f for f in flags if "master" in f and "fail" not in f]
            return len(live_masters) == 3

        await _until(promoted, 30)

        # After: the lock is still held (no double grant), the count carried over.
        async def usable() -> bool:
            return not await Lock(client, "invoice:42", blocking_timeout=0, timeout=0.5).acquire()

        await _until(usable, 20)
        second = await limiter.hit("user:1")
        assert second.allowed
        assert second.remaining == 10 - 5  # the 4 hits before the failover survived
        await holder.release()
        successor = Lock(client, "invoice:42", blocking_timeout=2, timeout=0.5)
        assert await successor.acquire()
        assert successor.lease is not None
        assert successor.lease.fencing_token > token_before
        await successor.release()
        assert await cache.get_or_load("page", loader) == "value"
        assert node_id  # the killed master really was the lock's
    finally:
        await client.aclose()
        await admin.aclose()
