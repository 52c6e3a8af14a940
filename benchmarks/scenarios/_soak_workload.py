"""The soak's traffic: every pattern driven by a fixed set of worker tasks, every answer checked.

Two clients stand for two application processes (each has its own pool,
executor and pub/sub connection); both share one Redis through the fault
proxy, so recompute locks, lock hand-offs and limiter counts cross "processes".

Every call is timed and classified:

* *ok*: answered, and the answer is right;
* *expected degradation*: what the docs promise under a fault, seen inside a
  fault window (see :mod:`._soak_faults`): ``RedisUnavailable`` /
  ``RedisTimeout`` / ``CircuitOpen`` from locks, semaphores, leaderboards and
  ``Cache.delete``; a degraded limiter result following its ``fail_open``
  policy; a cache read or write failing open (counted from ``Cache.stats``);
* *unexpected*: anything else. A wrong value, two lock holders at once, a lock
  reported held that is not, a fencing token going backwards, a limiter
  admitting more than its limit, an exception the docs do not promise, a
  degradation outside every fault window, a call slower than its bound.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis.asyncio as aioredis

from aiocache_patterns import (
    Cache,
    LockNotOwned,
    RateLimiter,
    RateLimitResult,
    RedisUnavailable,
    Semaphore,
)
from aiocache_patterns import Lock as LibraryLock
from benchmarks._target import KEY_PREFIX
from benchmarks.scenarios._soak_faults import SLACK, Timeline
from benchmarks.scenarios._soak_resources import describe

__all__ = ["PATTERNS", "Tally", "Workload"]

NS: Final = f"{KEY_PREFIX}:soak"
MISS: Final[Any] = object()
#: How late a deadline may fire: the executor looks for overdue calls every 25 ms
#: (docs/executor.md, "Deadlines").
DEADLINE_CHECK: Final = 0.025
#: Cache keys the workers spread over.
KEYS: Final = 100
#: Seconds a worker waits between calls (a request stream, not a hot loop).
PACE: Final = 0.001
#: Seconds the loader "queries the database".
LOAD_SECONDS: Final = 0.002
LOCK_NAMES: Final = ("L0", "L1")
LOCK_TTL: Final = 5.0
BLOCKING: Final = 0.3
SEMAPHORE_LIMIT: Final = 2
LIMITER_KEYS: Final = ("u0", "u1", "u2")
#: (limit, window s) of the two limiters the workers hit.
OPEN_RATE: Final = (30, 1.0)
CLOSED_RATE: Final = (20, 1.0)
BOARD_MEMBERS: Final = 50
STORM_LOCKS: Final = 5
CACHE_TTL: Final = 2.0
LOCK_TIMEOUT: Final = 1.0

CACHE = "Cache"
LIMITER_OPEN = "RateLimiter fail_open=True (gcra)"
LIMITER_CLOSED = "RateLimiter fail_open=False (sliding_log)"
LOCK = "Lock"
SEMAPHORE = "Semaphore"
LEADERBOARD = "Leaderboard"
BURST = "burst: 2,000 concurrent calls"
STORM = "cancellation storm"
PATTERNS: Final = (
    CACHE,
    LIMITER_OPEN,
    LIMITER_CLOSED,
    LOCK,
    SEMAPHORE,
    LEADERBOARD,
    BURST,
    STORM,
)


@dataclass
class Tally:
    """One pattern's calls and how they ended."""

    name: str
    #: The longest any call of this pattern may take (the hang check).
    bound: float = 0.0
    ops: int = 0
    expected: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    #: Facts that are neither (acquired, busy, denied...).
    info: Counter[str] = field(default_factory=Counter)
    max_latency: float = 0.0
    last_ok: float = -math.inf

    @property
    def degraded(self) -> int:
        return sum(self.expected.values())

    @property
    def wrong(self) -> int:
        return sum(self.unexpected.values())

    @property
    def useful(self) -> int:
        """Calls answered normally: neither degraded nor unexpected."""
        return self.ops - self.degraded - self.wrong


def _value(key: str, version: int) -> dict[str, Any]:
    return {"k": key, "v": version, "p": f"{key}#{version}" * 4}


@dataclass
class _Client:
    """One "process": its client and its pattern objects."""

    redis: aioredis.Redis
    cache: Cache
    limiter_open: RateLimiter
    limiter_closed: RateLimiter
    burst_limiter: RateLimiter
    board: Any
    #: ``Cache.delete`` failures raised to us (also counted in ``cache.stats.errors``).
    delete_errors: int = 0
    #: ``cache.stats.errors`` minus ``delete_errors`` at the last sample: fail-opens.
    fail_opens_seen: int = 0
    decode_errors_seen: int = 0


class Workload:
    """The patterns on two clients, their workers, and the checks."""

    def __init__(
        self,
        clients: Sequence[aioredis.Redis],
        timeline: Timeline,
        *,
        timeout: float,
        seed: int,
        leaderboard: Any | None,
    ) -> None:
        self.timeline = timeline
        self.timeout = timeout
        self.seed = seed
        self.has_board = leaderboard is not None
        self.clients = [self._patterns(c, i, leaderboard) for i, c in enumerate(clients)]
        one = timeout + DEADLINE_CHECK
        self.bounds = {
            "one": one + SLACK,
            "get_or_load": LOCK_TIMEOUT + 6 * one + LOAD_SECONDS + SLACK,
            "acquire": BLOCKING + 5 * one + SLACK,
            "storm_acquire": 2.0 + 4 * one + SLACK,
        }
        self.tallies = {name: Tally(name) for name in PATTERNS}
        for name in PATTERNS:
            self.tallies[name].bound = self.bounds["one"]
        self.tallies[CACHE].bound = self.bounds["get_or_load"]
        self.tallies[LOCK].bound = self.tallies[SEMAPHORE].bound = self.bounds["acquire"]
        self.tallies[STORM].bound = self.bounds["storm_acquire"]
        #: First message of each kind of unexpected outcome.
        self.samples: dict[str, str] = {}
        self.versions = [0] * KEYS
        self.holders: dict[str, list[int]] = {}  # lock or semaphore name -> holders' epochs
        self.fences: dict[str, int] = {}
        #: (limiter, key) -> admissions as (sent, answered, epoch), seconds on the timeline.
        self.admissions: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
        #: Over-admissions found so far, by limiter.
        self.over: Counter[str] = Counter()
        self.board_seq = 0
        self._stop = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self.max_lag = 0.0

    def _patterns(self, redis: aioredis.Redis, index: int, leaderboard: Any | None) -> _Client:
        t = self.timeout
        if index == 0:  # a stale grace: stale values served while one caller refreshes
            cache = Cache(
                redis, namespace=NS, ttl=CACHE_TTL, stale_ttl=CACHE_TTL, timeout=t,
                lock_timeout=LOCK_TIMEOUT,
            )  # fmt: skip
        else:  # refresh-ahead: hits past refresh_after refresh in a background task
            cache = Cache(
                redis, namespace=NS, ttl=CACHE_TTL, refresh_after=CACHE_TTL * 0.75, timeout=t,
                lock_timeout=LOCK_TIMEOUT,
            )  # fmt: skip
        limit, window = OPEN_RATE
        limiter_open = RateLimiter(
            redis, limit, window, algorithm="gcra", fail_open=True, timeout=t, namespace=f"{NS}:rl"
        )
        limit, window = CLOSED_RATE
        limiter_closed = RateLimiter(
            redis, limit, window, algorithm="sliding_log", fail_open=False, timeout=t,
            namespace=f"{NS}:rl",
        )  # fmt: skip
        burst_limiter = RateLimiter(
            redis, 10**9, 60, algorithm="fixed_window", fail_open=False, timeout=t,
            namespace=f"{NS}:burst",
        )  # fmt: skip
        board = None
        if leaderboard is not None:
            board = leaderboard(redis, "board", namespace=f"{NS}:lb", timeout=t)
        return _Client(redis, cache, limiter_open, limiter_closed, burst_limiter, board)

    # -- classification ------------------------------------------------------------------

    def _unexpected(self, tally: Tally, kind: str, detail: str = "", count: int = 1) -> None:
        tally.unexpected[kind] += count
        self.samples.setdefault(f"{tally.name}: {kind}", detail or kind)

    def _timed(self, tally: Tally, t0: float, bound: float, *, ok: bool) -> float:
        t1 = self.timeline.now()
        tally.ops += 1
        elapsed = t1 - t0
        tally.max_latency = max(tally.max_latency, elapsed)
        if elapsed > bound:
            self._unexpected(
                tally,
                "slower than its bound",
                f"a call took {elapsed:.2f} s (bound {bound:.2f} s) at t={t1:.1f} s",
            )
        if ok:
            tally.last_ok = t1
        return t1

    def _degraded(self, tally: Tally, kind: str, t0: float, t1: float, what: str) -> None:
        window = self.timeline.covering(t0, t1)
        if window is None:
            self._unexpected(
                tally,
                f"{what}: {kind} while Redis was healthy",
                f"{what}: {kind} in [{t0:.2f}, {t1:.2f}] s, outside every fault window",
            )
            return
        tally.expected[kind] += 1
        window.saw(1, t1)

    def _failed(self, tally: Tally, exc: BaseException, t0: float, t1: float, what: str) -> None:
        """An exception from a call whose documented failure is ``RedisUnavailable``."""
        if isinstance(exc, RedisUnavailable):
            self._degraded(tally, type(exc).__name__, t0, t1, what)
        else:
            self._unexpected(
                tally, f"{what} raised {type(exc).__name__}", f"{what}: {exc!r} at t={t1:.1f} s"
            )

    def _check_value(self, tally: Tally, key: int, value: Any, what: str) -> bool:
        """A cache answer is a miss or this key's value at a version that was written."""
        if value is MISS:
            return True
        name = f"k{key}"
        if (
            isinstance(value, dict)
            and value.get("k") == name
            and isinstance(value.get("v"), int)
            and 0 <= value["v"] <= self.versions[key]
            and value == _value(name, value["v"])
        ):
            return True
        self._unexpected(tally, f"{what} returned a wrong value", f"{name}: {value!r:.200}")
        return False

    # -- workers ----------------------------------------------------------------------------

    def start(self, round_no: int) -> None:
        """Start the workers (13 per client); ``round_no`` varies their random streams."""
        self._stop.clear()
        base = self.seed * 1000 + round_no * 100
        specs: list[Callable[[_Client, random.Random], Coroutine[Any, Any, None]]] = [
            *([self._cache_worker] * 4),
            *([self._open_limiter_worker] * 2),
            *([self._closed_limiter_worker] * 2),
            *([self._lock_worker] * 2),
            *([self._semaphore_worker] * 2),
        ]
        if self.has_board:
            specs.append(self._board_worker)
        for c, client in enumerate(self.clients):
            for w, spec in enumerate(specs):
                rng = random.Random(base + c * 50 + w)
                self._workers.append(asyncio.create_task(spec(client, rng)))

    @property
    def workers(self) -> int:
        """Worker tasks running now."""
        return len(self._workers)

    async def stop(self) -> list[str]:
        """Stop the workers; the ones still running after every bound passed are hung."""
        self._stop.set()
        workers, self._workers = self._workers, []
        if not workers:
            return []
        limit = max(self.bounds.values()) + 5.0
        _, pending = await asyncio.wait(workers, timeout=limit)
        hung = [describe(task) for task in pending]
        for task in pending:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for task in workers:
            if not task.cancelled() and task.exception() is not None:
                hung.append(f"worker died: {task.exception()!r}")
        return hung

    async def _pace(self) -> None:
        await asyncio.sleep(PACE)

    async def _cache_worker(self, client: _Client, rng: random.Random) -> None:
        tally, cache, now = self.tallies[CACHE], client.cache, self.timeline.now
        one, gol = self.bounds["one"], self.bounds["get_or_load"]
        while not self._stop.is_set():
            key = rng.randrange(KEYS)
            name = f"k{key}"
            roll = rng.random()
            t0 = now()
            try:
                if roll < 0.45:
                    value = await cache.get(name, MISS)
                    self._timed(tally, t0, one, ok=self._check_value(tally, key, value, "get"))
                elif roll < 0.80:

                    async def load(key: int = key, name: str = name) -> dict[str, Any]:
                        await asyncio.sleep(LOAD_SECONDS)
                        return _value(name, self.versions[key])

                    value = await cache.get_or_load(name, load)
                    ok = self._check_value(tally, key, value, "get_or_load")
                    self._timed(tally, t0, gol, ok=ok)
                elif roll < 0.95:
                    self.versions[key] += 1  # the database changed; write it through
                    await cache.set(name, _value(name, self.versions[key]))
                    self._timed(tally, t0, one, ok=True)
                else:
                    try:
                        await cache.delete(name)
                    except RedisUnavailable as exc:
                        client.delete_errors += 1
                        self._failed(
                            tally, exc, t0, self._timed(tally, t0, one, ok=False), "delete"
                        )
                    else:
                        self._timed(tally, t0, one, ok=True)
            except Exception as exc:  # get/set/get_or_load fail open: nothing may escape
                t1 = self._timed(tally, t0, gol, ok=False)
                self._unexpected(tally, f"raised {type(exc).__name__}", f"{exc!r} at {t1:.1f} s")
            await self._pace()

    async def _limiter_worker(
        self,
        client: _Client,
        rng: random.Random,
        tally: Tally,
        limiter: RateLimiter,
        fail_open: bool,
    ) -> None:
        now, bound = self.timeline.now, self.bounds["one"]
        limit = limiter.rates[0].limit
        while not self._stop.is_set():
            key = rng.choice(LIMITER_KEYS)
            t0 = now()
            try:
                result = await limiter.hit(key)
            except Exception as exc:  # a hit decides; it never raises
                t1 = self._timed(tally, t0, bound, ok=False)
                self._unexpected(tally, f"hit raised {type(exc).__name__}", f"{exc!r} at {t1:.1f}")
                await self._pace()
                continue
            t1 = self._timed(tally, t0, bound, ok=not result.degraded)
            if result.degraded:
                if result.allowed is not fail_open:
                    self._unexpected(tally, "degraded result against its fail_open policy")
                self._degraded(
                    tally, "degraded " + ("allow" if fail_open else "deny"), t0, t1, "hit"
                )
            elif not 0 <= result.remaining <= limit:
                self._unexpected(tally, "remaining out of range", repr(result))
            elif result.allowed:
                tally.info["allowed"] += 1
                self.admissions.setdefault((tally.name, key), []).append(
                    (t0, t1, self.timeline.epoch)
                )
            else:
                tally.info["denied"] += 1
            await self._pace()

    async def _open_limiter_worker(self, client: _Client, rng: random.Random) -> None:
        tally = self.tallies[LIMITER_OPEN]
        await self._limiter_worker(client, rng, tally, client.limiter_open, True)

    async def _closed_limiter_worker(self, client: _Client, rng: random.Random) -> None:
        tally = self.tallies[LIMITER_CLOSED]
        await self._limiter_worker(client, rng, tally, client.limiter_closed, False)

    async def _lock_worker(self, client: _Client, rng: random.Random) -> None:
        name = rng.choice(LOCK_NAMES)
        lock = LibraryLock(
            client.redis, name, ttl=LOCK_TTL, blocking_timeout=BLOCKING, timeout=self.timeout,
            namespace=f"{NS}:lock",
        )  # fmt: skip
        await self._holder_loop(lock, f"lock {name}", 1, self.tallies[LOCK], rng, fenced=True)

    async def _semaphore_worker(self, client: _Client, rng: random.Random) -> None:
        sem = Semaphore(
            client.redis, "S", SEMAPHORE_LIMIT, LOCK_TTL, blocking_timeout=BLOCKING,
            timeout=self.timeout, namespace=f"{NS}:sem",
        )  # fmt: skip
        tally = self.tallies[SEMAPHORE]
        await self._holder_loop(sem, "semaphore S", SEMAPHORE_LIMIT, tally, rng, fenced=False)

    async def _holder_loop(
        self,
        holder: LibraryLock | Semaphore,
        name: str,
        limit: int,
        tally: Tally,
        rng: random.Random,
        *,
        fenced: bool,
    ) -> None:
        now, acquire_bound, one = self.timeline.now, self.bounds["acquire"], self.bounds["one"]
        while not self._stop.is_set():
            epoch = self.timeline.epoch
            t0 = now()
            try:
                got = await holder.acquire()
            except Exception as exc:
                self._failed(
                    tally, exc, t0, self._timed(tally, t0, acquire_bound, ok=False), "acquire"
                )
                await self._pace()
                continue
            self._timed(tally, t0, acquire_bound, ok=True)
            if not got:
                tally.info["busy (blocking_timeout ran out)"] += 1
                await self._pace()
                continue
            tally.info["acquired"] += 1
            await self._hold(holder, name, limit, tally, rng, epoch, fenced=fenced)
            t0 = now()
            try:
                await holder.release()
            except LockNotOwned as exc:
                t1 = self._timed(tally, t0, one, ok=False)
                if self.timeline.epoch != epoch:  # the server was killed while we held it
                    tally.expected["LockNotOwned after the restart lost it"] += 1
                else:
                    self._unexpected(tally, "release: LockNotOwned", f"{name}: {exc} at {t1:.1f}")
            except Exception as exc:  # the lease then ends after its ttl
                self._failed(tally, exc, t0, self._timed(tally, t0, one, ok=False), "release")
            else:
                self._timed(tally, t0, one, ok=True)
            await self._pace()

    async def _hold(
        self,
        holder: LibraryLock | Semaphore,
        name: str,
        limit: int,
        tally: Tally,
        rng: random.Random,
        epoch: int,
        *,
        fenced: bool,
    ) -> None:
        """The critical section: count holders, check the fence, sometimes ask Redis."""
        holders = self.holders.setdefault(name, [])
        if sum(1 for e in holders if e == epoch) >= limit:
            self._unexpected(
                tally, "more holders than the limit", f"{name}: {len(holders) + 1} holders"
            )
        elif len(holders) >= limit:  # some holder's lease went with the killed server
            tally.expected["extra holder after the restart lost the lease"] += 1
        holders.append(epoch)
        lease = holder.lease
        assert lease is not None
        if fenced:
            last = self.fences.get(name, 0)
            if lease.fencing_token <= last:
                self._unexpected(
                    tally,
                    "fencing token went backwards",
                    f"{name}: {lease.fencing_token} <= {last}",
                )
            self.fences[name] = max(last, lease.fencing_token)
        try:
            await asyncio.sleep(0.002)
            if isinstance(holder, LibraryLock) and rng.random() < 0.5:
                t0 = self.timeline.now()
                try:
                    owned = await holder.owned()
                except Exception as exc:
                    t1 = self._timed(tally, t0, self.bounds["one"], ok=False)
                    self._failed(tally, exc, t0, t1, "owned")
                else:
                    t1 = self._timed(tally, t0, self.bounds["one"], ok=owned)
                    if owned:
                        pass
                    elif self.timeline.epoch != epoch:
                        tally.expected["not owned after the restart lost it"] += 1
                    else:
                        self._unexpected(
                            tally, "acquired, but owned() is False", f"{name} at {t1:.1f} s"
                        )
        finally:
            holders.remove(epoch)

    async def _board_worker(self, client: _Client, rng: random.Random) -> None:
        tally, board, now, one = (
            self.tallies[LEADERBOARD],
            client.board,
            self.timeline.now,
            self.bounds["one"],
        )
        while not self._stop.is_set():
            t0 = now()
            if rng.random() < 0.7:
                member = rng.randrange(BOARD_MEMBERS)
                self.board_seq = (self.board_seq + 1) % 1_000_000
                try:
                    await board.submit(f"m{member}", member * 1_000_000 + self.board_seq)
                except Exception as exc:
                    self._failed(tally, exc, t0, self._timed(tally, t0, one, ok=False), "submit")
                else:
                    self._timed(tally, t0, one, ok=True)
            else:
                try:
                    top = await board.top(10)
                except Exception as exc:
                    self._failed(tally, exc, t0, self._timed(tally, t0, one, ok=False), "top")
                else:
                    self._timed(tally, t0, one, ok=self._check_top(tally, top))
            await self._pace()

    def _check_top(self, tally: Tally, top: list[Any]) -> bool:
        ranks = [entry.rank for entry in top]
        scores = [entry.score for entry in top]
        members = [entry.member for entry in top]
        good = (
            ranks == list(range(1, len(top) + 1))
            and all(a >= b for a, b in itertools.pairwise(scores))
            and len(set(members)) == len(members)
            and all(m == f"m{int(s) // 1_000_000}" for m, s in zip(members, scores, strict=True))
        )
        if not good:
            self._unexpected(tally, "top() returned a wrong board", repr(top)[:300])
        return good

    # -- burst and cancellation storm ---------------------------------------------------------

    async def burst_and_storm(self, seed: int, waves: int) -> None:
        """2,000 concurrent calls at once, then ``waves`` waves of 300 calls, 45 of
        them cancelled at random moments."""
        await self.burst()
        await self._storm(random.Random(seed), waves)

    async def burst(self) -> None:
        tally, now, bound = self.tallies[BURST], self.timeline.now, self.bounds["one"]

        async def get(client: _Client, key: int) -> None:
            t0 = now()
            try:
                value = await client.cache.get(f"k{key}", MISS)
            except Exception as exc:
                self._timed(tally, t0, bound, ok=False)
                self._unexpected(tally, f"get raised {type(exc).__name__}", repr(exc))
                return
            self._timed(tally, t0, bound, ok=self._check_value(tally, key, value, "get"))

        async def hit(client: _Client, key: int) -> None:
            t0 = now()
            try:
                result = await client.burst_limiter.hit(f"b{key}")
            except Exception as exc:
                self._timed(tally, t0, bound, ok=False)
                self._unexpected(tally, f"hit raised {type(exc).__name__}", repr(exc))
                return
            self._check_burst_hit(tally, t0, self._timed(tally, t0, bound, ok=True), result)

        calls = [get(self.clients[i % 2], i % KEYS) for i in range(1000)]
        calls += [hit(self.clients[i % 2], i % 10) for i in range(1000)]
        await asyncio.gather(*calls)

    def _check_burst_hit(
        self, tally: Tally, t0: float, t1: float, result: RateLimitResult
    ) -> None:
        if result.degraded:
            self._degraded(tally, "degraded deny", t0, t1, "hit")
        elif not result.allowed:
            self._unexpected(tally, "hit denied under a limit never reached", repr(result))

    async def _storm(self, rng: random.Random, waves: int) -> None:
        tally, now = self.tallies[STORM], self.timeline.now
        one, acquire_bound = self.bounds["one"], self.bounds["storm_acquire"]
        loop = asyncio.get_running_loop()
        for wave in range(waves):
            kinds: list[str] = []
            tasks: list[asyncio.Task[Any]] = []
            for i in range(300):
                client = self.clients[(wave + i) % 2]
                kind = ("get", "hit", "lock")[i % 3]
                if kind == "get":
                    coro: Any = client.cache.get(f"k{i % KEYS}", MISS)
                elif kind == "hit":
                    coro = client.burst_limiter.hit(f"s{i % 7}")
                else:
                    coro = self._storm_cycle(client, f"storm{i % STORM_LOCKS}", tally)
                kinds.append(f"{kind}:{i % KEYS}")
                tasks.append(asyncio.create_task(coro))
            t0 = now()
            for task in rng.sample(tasks, 45):
                loop.call_later(rng.uniform(0.0, 0.02), task.cancel)
            results = await asyncio.gather(*tasks, return_exceptions=True)
            t1 = now()
            for kind, result in zip(kinds, results, strict=True):
                tally.ops += 1
                what, _, index = kind.partition(":")
                if isinstance(result, asyncio.CancelledError):
                    tally.info["cancelled"] += 1
                elif isinstance(result, BaseException):
                    self._failed(tally, result, t0, t1, what)
                elif what == "get":
                    self._check_value(tally, int(index), result, "get")
                elif what == "hit":
                    self._check_burst_hit(tally, t0, t1, result)
            tally.max_latency = max(tally.max_latency, t1 - t0)
            if t1 - t0 > acquire_bound + one:
                self._unexpected(tally, "slower than its bound", f"wave took {t1 - t0:.2f} s")
        # Nothing is left held by a cancelled holder: every storm lock can be taken now.
        for i in range(STORM_LOCKS):
            lock = LibraryLock(
                self.clients[0].redis, f"storm{i}", ttl=LOCK_TTL, blocking_timeout=2.0,
                timeout=self.timeout, namespace=f"{NS}:lock",
            )  # fmt: skip
            t0 = now()
            try:
                got = await lock.acquire()
            except Exception as exc:
                self._failed(
                    tally, exc, t0, self._timed(tally, t0, acquire_bound, ok=False), "acquire"
                )
                continue
            self._timed(tally, t0, acquire_bound, ok=got)
            if not got:
                self._unexpected(
                    tally, "a storm lock stayed held after its holders were cancelled"
                )
                continue
            await lock.release()

    async def _storm_cycle(self, client: _Client, name: str, tally: Tally) -> str:
        lock = LibraryLock(
            client.redis, name, ttl=LOCK_TTL, blocking_timeout=2.0, timeout=self.timeout,
            namespace=f"{NS}:lock",
        )  # fmt: skip
        if not await lock.acquire():
            tally.info["busy (blocking_timeout ran out)"] += 1
            return "busy"
        holders = self.holders.setdefault(name, [])
        if holders:
            self._unexpected(tally, "more holders than the limit", f"{name}: two holders")
        holders.append(self.timeline.epoch)
        try:
            await asyncio.sleep(0.001)
        finally:
            holders.pop()
            await lock.release()
        return "held"

    # -- sampling ---------------------------------------------------------------------------

    def sample_caches(self, since: float) -> int:
        """Fold the caches' fail-opens since the last sample into the tallies; return how many.

        ``Cache.stats.errors`` counts reads and writes that failed open (and
        ``delete`` failures, which were raised to us and are subtracted). They
        are expected if the interval overlaps a window widened by the longest
        cache call: a call that started inside the window may fail later.
        """
        tally, now = self.tallies[CACHE], self.timeline.now()
        total = 0
        for client in self.clients:
            stats = client.cache.stats
            fail_opens = stats.errors - client.delete_errors
            fresh, client.fail_opens_seen = fail_opens - client.fail_opens_seen, fail_opens
            bad, client.decode_errors_seen = (
                stats.decode_errors - client.decode_errors_seen,
                stats.decode_errors,
            )
            if bad:
                self._unexpected(tally, "undecodable value read (decode_errors)", count=bad)
            if fresh <= 0:
                continue
            total += fresh
            window = self.timeline.covering(since, now, extra=self.bounds["get_or_load"])
            if window is None:
                self._unexpected(
                    tally,
                    "fail-open while Redis was healthy",
                    f"{fresh} fail-opens in [{since:.2f}, {now:.2f}] s",
                    count=fresh,
                )
            else:
                tally.expected["fail-open (stats.errors)"] += fresh
                window.saw(fresh, now)
        return total

    def reset_samples(self) -> None:
        """Start counting fail-opens from now (after the warm-up)."""
        for client in self.clients:
            client.fail_opens_seen = client.cache.stats.errors - client.delete_errors
            client.decode_errors_seen = client.cache.stats.decode_errors

    # -- checks at the end --------------------------------------------------------------------

    def check_admissions(self, upto: float = math.inf) -> None:
        """Check the admissions sent before ``upto``, then forget them (memory stays flat).

        Each admission ran on the server at some moment between sending and
        answer. ``limit + 1`` admissions (consecutive by send time) whose
        first send and last answer are less than a window apart were, for
        certain, admitted within one window: for ``sliding_log`` that is over
        its limit. A token bucket (``gcra``) may admit ``limit`` at once and
        then ``limit / window`` per second, so in a span of T seconds at most
        ``limit + T * limit / window`` (one more for rounding). Sets that span
        a server restart (its data lost) are not counted. A set is checked
        from its first admission, so ``upto`` must be a few seconds in the
        past: every call sent before it has answered (or was slower than its
        bound, which is reported on its own).
        """
        for (name, _key), admitted in self.admissions.items():
            admitted.sort()
            sends = [a for a, _, _ in admitted]
            first_open = bisect.bisect_left(sends, upto)
            limit, window = CLOSED_RATE if name == LIMITER_CLOSED else OPEN_RATE
            count = 0
            for i in range(first_open):
                sent, _, epoch = admitted[i]
                if name == LIMITER_CLOSED:
                    group = admitted[i : i + limit + 1]
                    if len(group) <= limit or group[-1][2] != epoch:
                        continue
                    if max(b for _, b, _ in group) - sent < window:
                        count += 1
                    continue
                # gcra: every span starting at this admission, up to two windows long
                end = bisect.bisect_left(sends, sent + 2 * window)
                latest = 0.0
                for j in range(i, end):
                    latest = max(latest, admitted[j][1])
                    if admitted[j][2] != epoch:
                        break
                    if j - i + 1 > limit + (latest - sent) * limit / window + 1:
                        count += 1
                        break
            self.over[name] += count
            del admitted[:first_open]

    def over_admissions(self) -> dict[str, int]:
        """Over-admissions found, by limiter (every admission checked)."""
        self.check_admissions()
        return dict(self.over)

    async def watch_lag(self) -> None:
        """Track the event loop's worst lag in ``max_lag`` (until cancelled)."""
        while True:
            started = time.monotonic()
            await asyncio.sleep(0.05)
            self.max_lag = max(self.max_lag, time.monotonic() - started - 0.05)
