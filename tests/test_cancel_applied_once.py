"""Every await point of ``RateLimiter.hit``, ``Leaderboard.submit`` and
``Leaderboard.increment``, cancelled (``tests/_cancel.py``): for every k, the call
is cancelled after k turns of the event loop, and then

* the hit, submit or increment was applied 0 or 1 times (the stored state says);
* a call that was not cancelled was applied exactly once;
* every key that should have a TTL has one;
* no task and no connection is left behind.

Each runs alone (a lone caller: sent at once) and beside another caller (the
two share a batch, flushed by a task of the executor's), on every backend.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, get_args

import pytest
import redis.asyncio as aioredis

from aiocache_patterns import Algorithm, Leaderboard, RateLimiter, RateLimitResult
from aiocache_patterns._redis.executor import executor_for
from tests._cancel import Outcome, cancel_at_each_step
from tests._helpers import ttls_ms

ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)


@pytest.fixture(params=["alone", "batched"])
def company(request: pytest.FixtureRequest) -> bool:
    """Whether the call under test shares its tick (and batch) with another caller."""
    return bool(request.param == "batched")


async def _with_company(call: Awaitable[Any], other: Awaitable[Any] | None) -> Any:
    if other is None:
        return await call
    result, _ = await asyncio.gather(call, other)
    return result


def _in_use(client: Any) -> int:
    """Connections checked out of the client's pools right now."""
    if isinstance(client, aioredis.RedisCluster):
        return sum(len(n._connections) - len(n._free) for n in client.get_nodes())
    return len(client.connection_pool._in_use_connections)


async def _nothing_left_behind(client: Any) -> None:
    """Bounded wait until the executor, the loop and the pool are back at rest."""
    executor = executor_for(client)
    me = asyncio.current_task()
    deadline = time.monotonic() + 5
    while True:
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        in_use = _in_use(client)
        if not (executor.pending_tasks or executor.in_flight or tasks) and (
            in_use <= executor.held_connections
        ):
            return
        assert time.monotonic() < deadline, (
            executor.pending_tasks,
            executor.in_flight,
            tasks,
            in_use,
        )
        await asyncio.sleep(0.005)


async def _all_keys_expire(client: Any) -> None:
    ttls = await ttls_ms(client)
    assert all(ttl > 0 for ttl in ttls.values()), ttls


def _this_run(runs: list[str], seen: list[int]) -> str | None:
    """The name of the step that just ended, or None if it was cancelled before it began."""
    if len(runs) == seen[0]:
        return None
    seen[0] = len(runs)
    return runs[-1]


async def _run(
    start: Callable[[], Awaitable[Any]], check: Callable[[int, Outcome[Any]], Awaitable[None]]
) -> int:
    steps = await cancel_at_each_step(start, check)
    assert steps >= 1  # at least one run was cancelled part way
    return steps


async def test_a_cancelled_hit_is_applied_at_most_once(
    redis: Any, algorithm: Algorithm, company: bool
) -> None:
    limiter = RateLimiter(redis, limit=10, window=600, algorithm=algorithm)
    reader = RateLimiter(redis, limit=10, window=600, algorithm=algorithm)
    runs: list[str] = []
    seen = [0]

    async def start() -> RateLimitResult:
        key = f"k{len(runs)}"
        runs.append(key)
        other = limiter.hit(f"other{len(runs)}") if company else None
        result: RateLimitResult = await _with_company(limiter.hit(key), other)
        return result

    async def check(step: int, outcome: Outcome[RateLimitResult]) -> None:
        assert outcome.error is None, outcome.error
        await _nothing_left_behind(redis)
        key = _this_run(runs, seen)
        if key is None:
            return
        used = 10 - (await reader.peek(key)).remaining
        if outcome.cancelled:
            assert used in (0, 1), (step, used)
        else:
            assert outcome.result is not None
            assert outcome.result.allowed
            assert not outcome.result.degraded
            assert used == 1, step
        await _all_keys_expire(redis)

    await _run(start, check)


@pytest.fixture(params=ALGORITHMS)
def algorithm(request: pytest.FixtureRequest) -> Algorithm:
    name: Algorithm = request.param
    return name


async def test_a_cancelled_submit_is_applied_at_most_once(redis: Any, company: bool) -> None:
    board: Leaderboard[str] = Leaderboard(redis, "cancel", period="daily")
    await board.submit("seed", 1)
    runs: list[str] = []
    seen = [0]

    async def start() -> bool:
        member = f"m{len(runs)}"
        runs.append(member)
        other = board.submit(f"other{len(runs)}", 2) if company else None
        changed: bool = await _with_company(board.submit(member, 50 + len(runs)), other)
        return changed

    async def check(step: int, outcome: Outcome[bool]) -> None:
        assert outcome.error is None, outcome.error
        await _nothing_left_behind(redis)
        member = _this_run(runs, seen)
        if member is None:
            return
        score = await board.score(member)
        if outcome.cancelled:
            assert score in (None, 50 + len(runs)), (step, score)
        else:
            assert outcome.result is True
            assert score == 50 + len(runs)
        k = board._keys()
        assert await redis.hlen(k.m) == await redis.zcard(k.z)  # one entry per member
        await _all_keys_expire(redis)

    await _run(start, check)


async def test_a_cancelled_increment_is_applied_at_most_once(redis: Any, company: bool) -> None:
    board: Leaderboard[str] = Leaderboard(redis, "cancel", period="daily")
    runs: list[str] = []
    seen = [0]

    async def start() -> int | float:
        member = f"m{len(runs)}"
        runs.append(member)
        await board.submit(member, 10)
        other = board.increment("other", 1) if company else None
        score: int | float = await _with_company(board.increment(member, 5), other)
        return score

    async def check(step: int, outcome: Outcome[int | float]) -> None:
        assert outcome.error is None, outcome.error
        await _nothing_left_behind(redis)
        member = _this_run(runs, seen)
        if member is None:
            return
        score = await board.score(member)
        if outcome.cancelled:
            assert score in (None, 10, 15), (step, score)  # None, 10: before the increment
        else:
            assert outcome.result == 15
            assert score == 15
        k = board._keys()
        assert await redis.hlen(k.m) == await redis.zcard(k.z)
        await _all_keys_expire(redis)

    await _run(start, check)
