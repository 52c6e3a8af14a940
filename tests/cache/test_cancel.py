"""Every await point of the cache, cancelled (issue 14.9).

For ``Cache.get``, ``get_or_load`` (leading and waiting, alone and sharing a
load with another caller), ``write_through`` and ``delete``: run the call,
cancel it after k turns of the event loop, for every k until it completes
(``tests/_cancel.py``). After each run:

* the callers sharing its work still get their result;
* the recompute lock is given back: nobody holds it once things settle, and a
  caller in another process is served at once (an orphaned lock would hold it
  for its whole 5 s lease);
* no key is left without a TTL;
* no task, subscription, round trip or connection is left behind;
* the cache never serves a value older than a completed ``write_through`` or
  ``delete`` (nor the old value once a cancelled ``write_through``'s writer ran).

A "process" is a Cache on a client of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from aiocache_patterns import Cache
from aiocache_patterns._redis.executor import executor_for
from aiocache_patterns._redis.notify import notifier_for
from aiocache_patterns.cache._recompute import RecomputeLock
from aiocache_patterns.keys import KeyBuilder
from tests._backends import Backend, Client
from tests._cancel import Outcome, cancel_at_each_step
from tests._helpers import ttls_ms, until

MISS: Any = object()
NAMESPACE = "cx"
RKEY = KeyBuilder(NAMESPACE).key("k")
LOCK_KEY = RecomputeLock.lock_key(RKEY)
CHANNEL = RecomputeLock.channel(RKEY)
LEASE = 5.0
#: Another process is served within a round trip and a wake-up: far below LEASE.
SERVED_WITHIN = 2.0


@dataclass
class World:
    """Two processes and an admin client on one backend."""

    backend: Backend
    admin: Client
    clients: list[Client]
    caches: list[Cache]
    tasks_before: int = 0
    extra: list[asyncio.Future[Any]] = field(default_factory=list)

    async def settle(self) -> None:
        """Wait until nothing is left running; fail, saying what, after a while."""
        deadline = time.monotonic() + 5.0
        while True:
            busy = self._busy()
            if not busy:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"still running after the call ended: {busy}")
            await asyncio.sleep(0.002)
        for client in self.clients:
            pool = getattr(client, "connection_pool", None)
            if pool is not None and not self.backend.is_cluster:
                in_use = len(pool._in_use_connections)
                assert in_use == executor_for(client).held_connections, "a connection leaked"
        ttls = await ttls_ms(self.admin)
        assert all(ttl != -1 for ttl in ttls.values()), f"immortal key: {ttls}"

    def _busy(self) -> list[str]:
        busy = []
        for i, cache in enumerate(self.caches):
            loader = cache._loader
            if loader.cleanups or loader.tasks:
                busy.append(f"process {i}: {len(loader.cleanups)} stores/releases")
        for i, client in enumerate(self.clients):
            executor = executor_for(client)
            if executor.pending_tasks or executor.in_flight:
                busy.append(f"process {i}: {executor.in_flight} round trips")
            if notifier_for(client).channels:
                busy.append(f"process {i}: subscribed to {set(notifier_for(client).channels)}")
        if any(not f.done() for f in self.extra):
            busy.append("a caller sharing the work")
        tasks = len(asyncio.all_tasks())
        if tasks > self.tasks_before:
            busy.append(f"{tasks - self.tasks_before} more tasks")
        return busy

    async def served_at_once(self, process: int) -> Any:
        """A miss in ``process`` is served without waiting out an orphaned lock."""
        started = time.monotonic()
        value = await asyncio.wait_for(
            self.caches[process].get_or_load("k", _value(f"loaded by {process}")), LEASE
        )
        assert time.monotonic() - started < SERVED_WITHIN, "waited for an orphaned lock"
        return value


@pytest.fixture
async def world(backend: Backend) -> World:
    clients = [await backend.client() for _ in range(2)]
    caches = [
        Cache(c, namespace=NAMESPACE, lock_ttl=LEASE, lock_timeout=2 * LEASE) for c in clients
    ]
    w = World(backend, await backend.client(), clients, caches, tasks_before=10**9)
    # Warm up (scripts loaded, lanes open) so later runs count only what they add.
    await caches[0].set("warm", 1)
    await caches[1].get_or_load("warm-load", _value(1))
    await w.settle()
    w.tasks_before = len(asyncio.all_tasks())
    return w


def _value(value: Any, turns: int = 0) -> Callable[[], Awaitable[Any]]:
    async def load() -> Any:
        for _ in range(turns):
            await asyncio.sleep(0)
        return value

    return load


async def _outcome_of(task: asyncio.Future[Any]) -> Any:
    try:
        return await task
    except asyncio.CancelledError:
        return "cancelled"


async def test_get(world: World) -> None:
    p1 = world.caches[0]
    await p1.set("k", "v")
    companions: list[asyncio.Future[Any]] = []

    async def start() -> Any:
        companions.append(asyncio.ensure_future(p1.get("k")))  # shares the batch
        world.extra = companions
        return await p1.get("k")

    async def check(step: int, outcome: Outcome[Any]) -> None:
        if companions:  # (the call may be cancelled before it ever ran)
            assert await companions.pop() == "v"
        assert outcome.cancelled or outcome.result == "v"
        await world.settle()

    print("steps:", await cancel_at_each_step(start, check))


@pytest.mark.parametrize("sharing", ["alone", "leads", "joins"])
async def test_get_or_load_leading(world: World, sharing: str) -> None:
    p1, p2 = world.caches
    companions: list[asyncio.Future[Any]] = []
    load = _value("loaded", turns=3)

    async def start() -> Any:
        if sharing == "joins":  # another caller started the load: this one joins it
            companions.append(asyncio.ensure_future(p1.get_or_load("k", load)))
            await asyncio.sleep(0)
        mine = p1.get_or_load("k", load)
        if sharing == "leads":  # this one starts the load, another joins it
            companions.append(asyncio.ensure_future(p1.get_or_load("k", load)))
        world.extra = companions
        return await mine

    async def check(step: int, outcome: Outcome[Any]) -> None:
        if companions:
            assert await _outcome_of(companions.pop()) == "loaded"  # shared work survived
        assert outcome.cancelled or outcome.result == "loaded", outcome
        await world.settle()
        assert not await world.admin.exists(LOCK_KEY), "the recompute lock was not given back"
        assert await world.served_at_once(1) in ("loaded", "loaded by 1")
        await world.settle()
        await p2.delete("k")

    print("steps:", await cancel_at_each_step(start, check))


async def test_get_or_load_waiting(world: World) -> None:
    p1, p2 = world.caches
    gate = asyncio.Event()
    leader: list[asyncio.Future[Any]] = []
    companions: list[asyncio.Future[Any]] = []

    async def leader_load() -> str:
        await gate.wait()
        return "leader's"

    async def never() -> str:
        raise AssertionError("a waiter loaded although the leader stored its value")

    async def prepare() -> None:
        gate.clear()
        leader.append(asyncio.ensure_future(p1.get_or_load("k", leader_load)))
        await until(lambda: world.admin.exists(LOCK_KEY), every=0.001)

    async def open_gate_once_subscribed() -> None:
        # Let the leader store once the waiter waits for it (check opens it otherwise).
        await until(
            lambda: CHANNEL in notifier_for(world.clients[1]).channels or gate.is_set(), every=0
        )
        for _ in range(3):
            await asyncio.sleep(0)
        gate.set()

    async def start() -> Any:
        mine = p2.get_or_load("k", never)  # starts the wait; the companion joins it
        companions.append(asyncio.ensure_future(p2.get_or_load("k", never)))
        opener = asyncio.ensure_future(open_gate_once_subscribed())
        world.extra = [*companions, *leader, opener]
        return await mine

    async def check(step: int, outcome: Outcome[Any]) -> None:
        gate.set()
        assert await leader[-1] == "leader's"
        if companions:
            assert await _outcome_of(companions.pop()) == "leader's"  # shared wait survived
        assert outcome.cancelled or outcome.result == "leader's", outcome
        await world.settle()
        assert not await world.admin.exists(LOCK_KEY)
        await p1.delete("k")
        await prepare()

    await prepare()
    print("steps:", await cancel_at_each_step(start, check))


@pytest.mark.parametrize("before", ["old value", "load in flight"])
async def test_write_through(world: World, before: str) -> None:
    p1, p2 = world.caches
    db: dict[str, str] = {}
    gate = asyncio.Event()
    loads: list[asyncio.Future[Any]] = []

    async def writer(value: str) -> None:
        await asyncio.sleep(0)
        db["k"] = value
        await asyncio.sleep(0)

    async def slow_old_load() -> str:
        await gate.wait()
        return "old"

    async def prepare() -> None:
        db.clear()
        if before == "old value":
            await p1.set("k", "old")
        else:  # a load that read the old row is on its way
            gate.clear()
            loads.append(asyncio.ensure_future(p1.get_or_load("k", slow_old_load)))
            await until(lambda: world.admin.exists(LOCK_KEY), every=0.001)

    async def start() -> None:
        world.extra = list(loads)
        await p1.write_through("k", "new", writer)

    async def check(step: int, outcome: Outcome[None]) -> None:
        gate.set()
        if loads:
            assert await loads[-1] == "old"  # its callers get it; the cache does not keep it
        await world.settle()
        if not outcome.cancelled:
            assert db == {"k": "new"}
        seen = {await p1.get("k", MISS), await p2.get("k", MISS)}
        if db:  # the source of truth has the new value: the old one is gone for good
            assert "old" not in seen, seen
        if not outcome.cancelled:
            assert seen == {"new"}
        await p2.delete("k")
        await prepare()

    await prepare()
    print("steps:", await cancel_at_each_step(start, check))


async def test_delete(world: World) -> None:
    p1, p2 = world.caches
    gate = asyncio.Event()
    loads: list[asyncio.Future[Any]] = []

    async def slow_old_load() -> str:
        await gate.wait()
        return "old"

    async def prepare() -> None:
        gate.clear()
        loads.append(asyncio.ensure_future(p1.get_or_load("k", slow_old_load)))
        await until(lambda: world.admin.exists(LOCK_KEY), every=0.001)
        await world.admin.set(b"cx:{other}", b"x", px=60_000)

    async def start() -> int:
        world.extra = list(loads)
        return await p1.delete("k", "other")

    async def check(step: int, outcome: Outcome[int]) -> None:
        gate.set()
        assert await loads[-1] == "old"
        await world.settle()
        if not outcome.cancelled:
            assert outcome.result == 1
            # Completed: the load that started before it does not bring the old value back.
            assert await p2.get("k", MISS) is MISS
            assert await p1.get("k", MISS) is MISS
        await p2.delete("k")
        await prepare()

    await prepare()
    print("steps:", await cancel_at_each_step(start, check))


@pytest.mark.parametrize("sharing", ["alone", "leads"])
async def test_tagged_get_or_load(world: World, sharing: str) -> None:
    p1, p2 = world.caches
    companions: list[asyncio.Future[Any]] = []
    load = _value("loaded", turns=3)

    async def start() -> Any:
        mine = p1.get_or_load("k", load, tags=("t", "u"))
        if sharing == "leads":
            companions.append(asyncio.ensure_future(p1.get_or_load("k", load, tags=("t", "u"))))
        world.extra = companions
        return await mine

    async def check(step: int, outcome: Outcome[Any]) -> None:
        if companions:
            assert await _outcome_of(companions.pop()) == "loaded"
        assert outcome.cancelled or outcome.result == "loaded", outcome
        await world.settle()
        assert not await world.admin.exists(LOCK_KEY), "the recompute lock was not given back"
        assert await world.served_at_once(1) in ("loaded", "loaded by 1")
        await world.settle()
        await p2.invalidate_tags("t")
        assert await p2.get("k", MISS) in (MISS, "loaded by 1")

    print("steps:", await cancel_at_each_step(start, check))


async def test_get_or_load_many(world: World) -> None:
    p1, p2 = world.caches
    companions: list[asyncio.Future[Any]] = []

    async def bulk(keys: list[str]) -> dict[str, str]:
        for _ in range(3):
            await asyncio.sleep(0)
        return dict.fromkeys(keys, "loaded")

    async def start() -> Any:
        mine = asyncio.ensure_future(p1.get_or_load_many(["k", "j"], bulk))
        await asyncio.sleep(0)
        # A single-key caller of "k" shares the bulk load (or loads "k" itself).
        companions.append(asyncio.ensure_future(p1.get_or_load("k", _value("loaded"))))
        world.extra = companions
        try:
            return await mine
        finally:
            if not mine.done():
                mine.cancel()
                await _outcome_of(mine)

    async def check(step: int, outcome: Outcome[Any]) -> None:
        if companions:
            assert await _outcome_of(companions.pop()) == "loaded"  # shared work survived
        assert outcome.cancelled or outcome.result == {"k": "loaded", "j": "loaded"}, outcome
        await world.settle()
        assert not await world.admin.exists(LOCK_KEY), (
            f"lock not given back (step {step}, {outcome})"
        )
        assert await world.served_at_once(1) in ("loaded", "loaded by 1")
        await world.settle()
        await p2.delete("k", "j")

    print("steps:", await cancel_at_each_step(start, check))
