"""Property-based tests: invariants over random schedules (hypothesis).

Run on fakeredis with a controlled server clock, so each example replays its
schedule at exact instants without sleeping.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from typing import Any, get_args

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiocache_patterns import (
    JsonSerializer,
    Leaderboard,
    Lock,
    LockNotOwned,
    RankStyle,
    RateLimiter,
)
from aiocache_patterns.ratelimit import Algorithm
from tests._fakeclock import ServerClock, server_clock

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- serializer ---------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values)
@settings(max_examples=300)
def test_json_serializer_round_trips_exactly(value: Any) -> None:
    s = JsonSerializer()
    back = s.loads(s.dumps(value))
    assert back == value
    # exact, not just equal: same types all the way down, same float bits
    assert json.dumps(back, sort_keys=True) == json.dumps(value, sort_keys=True)
    if isinstance(value, float):
        assert math.copysign(1, back) == math.copysign(1, value)


# -- rate limiters --------------------------------------------------------------

LIMIT = 5
WINDOW = 10.0

arrivals = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=4, allow_nan=False),  # gap before the hit, seconds
        st.integers(min_value=1, max_value=3),  # cost
    ),
    min_size=1,
    max_size=40,
)


def _admitted(algorithm: Algorithm, schedule: list[tuple[float, int]]) -> list[tuple[float, int]]:
    async def run(clock: ServerClock) -> list[tuple[float, int]]:
        client = fakeredis.FakeAsyncRedis()
        limiter = RateLimiter(client, limit=LIMIT, window=WINDOW, algorithm=algorithm)
        admitted = []
        for gap, cost in schedule:
            clock.advance(gap)
            result = await limiter.hit("k", cost=cost)
            if result.allowed:
                admitted.append((clock.now, cost))
            else:
                assert result.retry_after > 0
        await client.aclose()
        return admitted

    with server_clock() as clock:
        return asyncio.run(run(clock))


def _max_in_span(admitted: list[tuple[float, int]], span: float) -> int:
    """The largest total cost admitted within any half-open span of that length."""
    best = 0
    for start, _ in admitted:
        best = max(best, sum(c for t, c in admitted if start <= t < start + span))
    return best


@SETTINGS
@given(arrivals)
def test_sliding_log_never_admits_more_than_the_limit_in_any_window(
    schedule: list[tuple[float, int]],
) -> None:
    admitted = _admitted("sliding_log", schedule)
    assert _max_in_span(admitted, WINDOW) <= LIMIT


@SETTINGS
@given(arrivals)
def test_fixed_window_bounds(schedule: list[tuple[float, int]]) -> None:
    admitted = _admitted("fixed_window", schedule)
    # each window (from its first hit) holds at most the limit; any span at most twice
    assert _max_in_span(admitted, WINDOW) <= 2 * LIMIT
    window_start = None
    used = 0
    for t, cost in admitted:
        if window_start is None or t >= window_start + WINDOW:
            window_start, used = t, 0
        used += cost
        assert used <= LIMIT


@SETTINGS
@given(arrivals)
def test_sliding_window_counter_bounds(schedule: list[tuple[float, int]]) -> None:
    admitted = _admitted("sliding_window", schedule)
    # never more than the limit in a clock-aligned window, nor twice it in any span
    by_window: dict[int, int] = {}
    for t, cost in admitted:
        index = math.floor(round(t * 1_000_000) / round(WINDOW * 1_000_000))
        by_window[index] = by_window.get(index, 0) + cost
    assert all(total <= LIMIT for total in by_window.values())
    assert _max_in_span(admitted, WINDOW) <= 2 * LIMIT


@SETTINGS
@given(arrivals, st.sampled_from(["token_bucket", "gcra"]))
def test_bucket_algorithms_never_exceed_burst_plus_refill(
    schedule: list[tuple[float, int]], algorithm: Algorithm
) -> None:
    admitted = _admitted(algorithm, schedule)
    rate = LIMIT / WINDOW
    for i, (start, _) in enumerate(admitted):
        for end, _ in admitted[i:]:
            total = sum(c for t, c in admitted if start <= t <= end)
            assert total <= LIMIT + (end - start) * rate + 1e-6


# -- locks ---------------------------------------------------------------------------

TTL = 3.0

lock_ops = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "extend", "release", "wait"]),
        st.integers(min_value=0, max_value=2),  # which worker
        st.floats(min_value=0, max_value=2.5, allow_nan=False),  # time passing first
    ),
    min_size=1,
    max_size=30,
)


@SETTINGS
@given(lock_ops)
def test_locks_never_overlap(ops: list[tuple[str, int, float]]) -> None:
    async def run(clock: ServerClock) -> list[tuple[float, float]]:
        client = fakeredis.FakeAsyncRedis()
        locks = [Lock(client, "res", ttl=TTL, blocking_timeout=0) for _ in range(3)]
        open_leases: dict[int, list[float]] = {}  # worker -> [start, end]
        intervals: list[tuple[float, float]] = []
        for op, worker, gap in ops:
            clock.advance(gap)
            lock = locks[worker]
            if op == "acquire" and lock.lease is None:
                if await lock.acquire():
                    open_leases[worker] = [clock.now, clock.now + TTL]
            elif op == "extend" and lock.lease is not None:
                try:
                    await lock.extend()
                except LockNotOwned:
                    assert clock.now >= open_leases[worker][1]  # only a lapsed lease fails
                else:
                    assert clock.now < open_leases[worker][1]  # a lapsed lease never extends
                    open_leases[worker][1] = clock.now + TTL
            elif op == "release" and lock.lease is not None:
                start, end = open_leases.pop(worker)
                try:
                    await lock.release()
                except LockNotOwned:
                    assert clock.now >= end
                    intervals.append((start, end))
                else:
                    assert clock.now < end
                    intervals.append((start, clock.now))
        intervals += [(start, end) for start, end in open_leases.values()]
        await client.aclose()
        return intervals

    with server_clock() as clock:
        intervals = asyncio.run(run(clock))
    intervals.sort()
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert start >= end  # one holder at a time, by the server's clock


@pytest.mark.parametrize("algorithm", ["sliding_log", "fixed_window"])
def test_fake_clock_drives_the_server(algorithm: Algorithm) -> None:
    """The premise of this file: moving the fake clock really moves the limiter."""
    admitted = _admitted(algorithm, [(0, 5), (0, 1), (WINDOW + 0.1, 1)])
    assert [c for _, c in admitted] == [5, 1]


# -- leaderboards ------------------------------------------------------------------------

board_ops = st.lists(
    st.tuples(
        st.sampled_from(["submit", "increment"]),
        st.sampled_from(["ann", "bob", "cy", "dee", "eve"]),
        st.integers(min_value=-5, max_value=5),
    ),
    min_size=1,
    max_size=25,
)


@SETTINGS
@given(board_ops, st.sampled_from(get_args(RankStyle)))
def test_leaderboard_ranks_equal_a_python_sort(
    ops: list[tuple[str, str, int]], style: RankStyle
) -> None:
    async def run() -> tuple[list[tuple[str, float, int]], dict[str, tuple[float, int]]]:
        client = fakeredis.FakeAsyncRedis()
        board = Leaderboard(client, "b", rank_style=style)
        scores: dict[str, float] = {}
        reached: dict[str, int] = {}  # when each member reached its current score
        for step, (op, member, amount) in enumerate(ops):
            if op == "submit":
                await board.submit(member, amount)
                new = float(amount)
            else:
                new = float(await board.increment(member, amount))
            if scores.get(member) != new:
                reached[member] = step
            scores[member] = new
        entries = await board.top(len(scores))
        await client.aclose()
        got = [(str(e.member), float(e.score), e.rank) for e in entries]
        return got, {m: (scores[m], reached[m]) for m in scores}

    got, model = asyncio.run(run())
    # highest first; equal scores by who reached the score first
    order = sorted(model, key=lambda m: (-model[m][0], model[m][1]))
    assert [m for m, _, _ in got] == order
    assert [s for _, s, _ in got] == [model[m][0] for m in order]
    distinct = sorted({s for s, _ in model.values()}, reverse=True)
    for position, (_, score, rank) in enumerate(got, start=1):
        if style == "position":
            assert rank == position
        elif style == "competition":
            assert rank == 1 + sum(1 for s, _ in model.values() if s > score)
        else:
            assert rank == 1 + distinct.index(score)
