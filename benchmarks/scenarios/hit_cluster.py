"""``hit-cluster``: cache hits on a 3-master Redis Cluster.

The ``hit`` scenario's 1,000 keys, read uniformly at random at concurrency 1
and 50, against raw ``RedisCluster.get`` + ``json.loads`` in the same run.
Redis Cluster is where users go when one server is not enough; there the
batch of a tick is split per slot (``MGET`` needs one slot) and sent as one
pipeline per node, the nodes side by side.

The cluster: ``REDIS_CLUSTER_URL`` if set, else a private one started with
``.ci/cluster`` in a temporary directory (3 masters, no replicas) and stopped
after. Without ``redis-server`` on PATH and no URL the scenario is skipped
with a note (fakeredis has no cluster).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import redis.asyncio

from aiocache_patterns import Cache, client_stats
from benchmarks._report import Goal, ScenarioResult, check_goals
from benchmarks._target import KEY_PREFIX, Target
from benchmarks.scenarios._base import Bound, Case, RunContext, VariantSpec, measure_cases
from benchmarks.scenarios._items import ITEMS, KEYS, TTL, VALUES

__all__ = ["SCENARIO", "HitClusterScenario"]

RAW = "raw RedisCluster"
GET = "Cache.get"
GET_OR_LOAD = "Cache.get_or_load"

FULL = ((200, 41), (2500, 21))
QUICK = ((100, 5), (500, 5))

GOALS = [
    Goal("keys1000-c50", GET, RAW, 4.0),
    Goal("keys1000-c1", GET, RAW, 0.95),
]

_CLUSTER_SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "cluster"


@contextlib.contextmanager
def _cluster_url() -> Iterator[str | None]:
    """``REDIS_CLUSTER_URL``, else a private cluster for the block, else None."""
    env_url = os.environ.get("REDIS_CLUSTER_URL", "").strip()
    if env_url:
        yield env_url
        return
    if shutil.which("redis-server") is None or not _CLUSTER_SCRIPT.exists():
        yield None
        return
    directory = tempfile.mkdtemp(prefix="acp-bench-cluster-")
    base = str(random.randint(21000, 29000))
    started = subprocess.run(
        ["bash", str(_CLUSTER_SCRIPT), "start", directory, "--base-port", base],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        if started.returncode != 0:
            raise RuntimeError(f"could not start a cluster: {started.stderr[-1000:]}")
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(
            ["bash", str(_CLUSTER_SCRIPT), "stop", directory], capture_output=True, check=False
        )
        shutil.rmtree(directory, ignore_errors=True)


def _client(url: str) -> Any:
    return redis.asyncio.RedisCluster.from_url(url)


@contextlib.asynccontextmanager
async def _raw(url: str) -> AsyncIterator[Bound]:
    client = _client(url)
    keys = [f"{KEY_PREFIX}:rawc:{k}" for k in KEYS]
    try:
        await client.initialize()
        async with client.pipeline(transaction=False) as pipe:
            for key, value in zip(keys, VALUES, strict=True):
                pipe.set(key, json.dumps(value), ex=TTL)
            await pipe.execute()

        async def op(i: int) -> Any:
            return json.loads(await client.get(keys[i]))

        yield Bound(op)
    finally:
        await client.aclose()


async def _load(i: int) -> dict[str, Any]:
    return VALUES[i]


@contextlib.asynccontextmanager
async def _library(url: str, how: str) -> AsyncIterator[Bound]:
    client = _client(url)
    cache = Cache(client, namespace=KEY_PREFIX, ttl=TTL)
    try:
        await client.initialize()
        await cache.set_many(dict(zip(KEYS, VALUES, strict=True)))
        if how == GET:

            async def op(i: int) -> Any:
                return await cache.get(KEYS[i])

        else:

            async def op(i: int) -> Any:
                return await cache.get_or_load(KEYS[i], lambda: _load(i))

        def counters() -> dict[str, int]:
            return {"round_trips": client_stats(client).round_trips, "loads": cache.stats.loads}

        yield Bound(op, counters)
    finally:
        await cache.aclose()
        await client.aclose()


def _variants(url: str) -> list[VariantSpec]:
    def library(how: str) -> VariantSpec:
        return VariantSpec(how, "library", lambda _target: _library(url, how))

    return [VariantSpec(RAW, "raw", lambda _target: _raw(url)), library(GET), library(GET_OR_LOAD)]


def _cases(c1: tuple[int, int], c50: tuple[int, int]) -> list[Case]:
    rng = random.Random(20240601)
    uniform = [rng.randrange(ITEMS) for _ in range(max(c1[0], c50[0]))]
    return [
        Case("keys1000-c1", "1,000 keys, concurrency 1", 1, uniform[: c1[0]], c1[1]),
        Case("keys1000-c50", "1,000 keys, concurrency 50", 50, uniform[: c50[0]], c50[1]),
    ]


class HitClusterScenario:
    name = "hit-cluster"
    description = "cache reads that all hit on a 3-master Redis Cluster: 1,000 keys, c=1 and c=50"

    async def run(self, ctx: RunContext) -> ScenarioResult:
        c1, c50 = QUICK if ctx.quick else FULL
        if ctx.ops:
            c1, c50 = (ctx.ops, c1[1]), (ctx.ops, c50[1])
        with _cluster_url() as url:
            if url is None:
                result = ScenarioResult(self.name, self.description, RAW, {}, [])
                result.notes.append(
                    "skipped: no REDIS_CLUSTER_URL and no redis-server to start a cluster"
                )
                return result
            variants = _variants(url)
            target = Target("url", f"Redis Cluster at {url}", url=url)
            cluster_ctx = RunContext(target, ctx.quick, ctx.ops, ctx.rounds, ctx.progress)
            cases = await measure_cases(
                self.name, cluster_ctx, variants, _cases(c1, c50), VALUES, RAW
            )
        result = ScenarioResult(
            self.name, self.description, RAW, {v.name: v.group for v in variants}, cases
        )
        result.goals = check_goals(cases, GOALS, True)
        loads = sum(o.per_op.get("loads", 0.0) for c in cases for o in c.outcomes)
        if loads:
            result.notes.append("a library variant called its loader: some reads were not hits")
        return result


SCENARIO = HitClusterScenario()
