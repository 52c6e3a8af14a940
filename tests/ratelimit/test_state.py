"""RateLimiter: honest durations, hostile stored state, bounded per-call work.

* A refusal's ``retry_after`` is > 0 and a retry sent that long after it is
  admitted; a ``peek`` sent ``reset_after`` after a hit sees the full quota
  (Redis keeps a key until the end of the millisecond PTTL counts down to).
* A limiter key holding something the script did not write (garbage, a NaN,
  a far-future time, no expiry) is reset, never a Lua error for ever, never a
  refusal for ever, and every key keeps a TTL.
* A big ``sliding_log`` costs each call a bounded amount of work.
"""

from __future__ import annotations

import asyncio
from typing import Any, get_args

import pytest

from aiocache_patterns import Algorithm, Rate, RateLimiter
from tests._helpers import ttls_ms

ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)


@pytest.fixture(params=ALGORITHMS)
def algorithm(request: pytest.FixtureRequest) -> Algorithm:
    name: Algorithm = request.param
    return name


def keys_of(limiter: RateLimiter, key: str) -> list[bytes]:
    """The Redis keys of ``key``'s state, one per rate."""
    return limiter._redis_keys(limiter._keys.key(key))


# -- durations ------------------------------------------------------------------------


async def test_a_retry_at_retry_after_is_admitted_and_a_peek_at_reset_after_is_full(
    redis: Any, algorithm: Algorithm
) -> None:
    # fixed_window used to answer from PTTL in whole ms: a retry at retry_after
    # found the old window still there in about half the tries (7-10 of 20).
    tries = 12 if algorithm == "fixed_window" else 4
    limiter = RateLimiter(redis, limit=1, window=0.03, algorithm=algorithm)
    refused_again = not_full = 0
    for i in range(tries):
        key = f"k{i}"
        assert (await limiter.hit(key)).allowed
        refused = await limiter.hit(key)
        assert not refused.allowed
        assert refused.retry_after > 0
        await asyncio.sleep(refused.retry_after)
        retried = await limiter.hit(key)
        refused_again += not retried.allowed
        if retried.allowed:
            await asyncio.sleep(retried.reset_after)
            not_full += (await limiter.peek(key)).remaining != 1
    assert (refused_again, not_full) == (0, 0)


@pytest.mark.real_only
async def test_fixed_window_reports_the_whole_life_of_its_counter(redis: Any) -> None:
    """Redis keeps a key with PTTL p for up to p + 1 ms more: retry_after and
    reset_after cover that last millisecond."""
    limiter = RateLimiter(redis, limit=1, window=60, algorithm="fixed_window")
    (key,) = keys_of(limiter, "k")
    for _ in range(5):
        await limiter.reset("k")
        assert (await limiter.hit("k")).allowed
        refused = await limiter.hit("k")
        pttl = int(await redis.pttl(key))
        assert refused.retry_after * 1000 >= pttl + 1
        assert refused.reset_after * 1000 >= pttl + 1
    fresh = await limiter.hit("fresh")
    assert fresh.reset_after == 60.0  # a fresh window reports its length, and is gone by then
    assert 0 < int(await redis.pttl(keys_of(limiter, "fresh")[0])) < 60_000


# -- hostile stored state ---------------------------------------------------------------

#: What someone else wrote under a limiter key, per algorithm (as redis-py calls).
GARBAGE: dict[str, list[tuple[str, tuple[Any, ...]]]] = {
    "fixed_window": [
        ("set", (b"garbage",)),
        ("set", (b"1.5",)),
        ("set", (b"-3",)),
        ("set", (b"nan",)),
        ("setpx", (b"garbage", 60_000)),
        ("set", (b"99999",)),  # a number without an expiry: limited for ever
    ],
    "gcra": [
        ("set", (b"garbage",)),
        ("set", (b"nan",)),
        ("set", (b"inf",)),
        ("set", (b"1e300",)),  # a time far in the future, no expiry
        ("setpx", (b"garbage", 60_000)),
    ],
    "token_bucket": [
        ("hset", ({b"t": b"garbage", b"ts": b"1"},)),
        ("hset", ({b"t": b"-1e300", b"ts": b"1"},)),
        ("hset", ({b"t": b"0", b"ts": b"1e300"},)),
        ("hset", ({b"t": b"nan", b"ts": b"nan"},)),
        ("hset", ({b"t": b"-inf"},)),
    ],
    "sliding_window": [
        ("hset", ({b"i": b"garbage", b"c": b"1", b"p": b"1"},)),
        ("hset", ({b"i": b"1", b"c": b"nan", b"p": b"0"},)),
        ("hset", ({b"c": b"-5"},)),
        ("hset", ({b"p": b"inf"},)),
    ],
    "sliding_log": [
        ("zadd", ({b"garbage": 1},)),
        ("zadd", ({b"0000000000000001:x": 1},)),
        ("zadd", ({b"0000000000000001:5": 9e15},)),  # cost above its total, in the future
        ("zadd", ({b"3:1": 9e15, b"1:1": 9e15 + 1},)),  # totals out of order
    ],
}


async def _write(redis: Any, key: bytes, how: str, args: tuple[Any, ...]) -> None:
    if how == "set":
        await redis.set(key, *args)
    elif how == "setpx":
        await redis.set(key, args[0], px=args[1])
    elif how == "hset":
        await redis.hset(key, mapping=args[0])
    else:
        await redis.zadd(key, args[0])


async def test_a_key_that_is_not_the_limiters_is_reset_not_an_error(
    redis: Any, algorithm: Algorithm
) -> None:
    limiter = RateLimiter(redis, rates=[Rate(3, 60), Rate(5, 3600)], algorithm=algorithm)
    for i, (how, args) in enumerate(GARBAGE[algorithm]):
        key = f"k{i}"
        first, second = keys_of(limiter, key)
        await _write(redis, first, how, args)
        await _write(redis, second, how, args)
        peek = await limiter.peek(key)  # consumes nothing, but clears the garbage
        assert (peek.allowed, peek.remaining) == (True, 3), (how, args)
        results = [await limiter.hit(key) for _ in range(4)]
        assert [r.allowed for r in results] == [True, True, True, False], (how, args)
        assert [r.remaining for r in results] == [2, 1, 0, 0]
        assert 0 < results[-1].retry_after <= 120
    ttls = await ttls_ms(redis)
    assert ttls
    assert all(ttl > 0 for ttl in ttls.values()), ttls  # nothing left immortal


async def test_a_refused_hit_clears_garbage_it_read(redis: Any, algorithm: Algorithm) -> None:
    """Garbage in the long rate's key, the short rate refusing: no key stays immortal."""
    limiter = RateLimiter(redis, rates=[Rate(1, 60), Rate(5, 3600)], algorithm=algorithm)
    assert (await limiter.hit("k")).allowed
    long = keys_of(limiter, "k")[1]
    await redis.delete(long)
    how, args = GARBAGE[algorithm][0]
    await _write(redis, long, how, args)
    assert not (await limiter.hit("k")).allowed  # the short rate says no
    assert all(ttl > 0 for ttl in (await ttls_ms(redis)).values())


# -- sliding_log: bounded per-call work ------------------------------------------------------


async def _server_time_us(redis: Any) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1_000_000 + int(micros)


async def test_a_big_sliding_log_is_trimmed_in_bounded_steps_and_decides_exactly(
    redis: Any,
) -> None:
    """A burst on a big limit left 20,000 expired entries: one call removes at most
    256 of them (it used to remove, and read into Lua, all of them at once), and
    decisions stay exact meanwhile; the backlog drains over the next calls."""
    limiter = RateLimiter(redis, limit=20_000, window=60, algorithm="sliding_log")
    (log,) = keys_of(limiter, "k")
    now = await _server_time_us(redis)
    old = now - 120_000_000  # two windows ago
    entries = {f"{i:016d}:1".encode(): old + i for i in range(1, 20_001)}
    # ... and 3 live hits of cost 2 after them
    entries |= {f"{20_000 + 2 * j:016d}:2".encode(): now - 1_000_000 + j for j in range(1, 4)}
    await redis.zadd(log, entries)
    await redis.pexpire(log, 120_000)

    first = await limiter.hit("k", cost=5)
    assert first.allowed
    assert first.remaining == 20_000 - 6 - 5  # only the live entries count
    assert await redis.zcard(log) == 20_003 - 256 + 1
    for _ in range(10):
        await limiter.peek("k")
    assert await redis.zcard(log) == 20_004 - 11 * 256
    assert (await limiter.peek("k")).remaining == 20_000 - 11


async def test_sliding_log_retry_after_with_a_big_cost(redis: Any) -> None:
    """retry_after is found by bisection among the oldest hits: exact for any cost."""
    limiter = RateLimiter(redis, limit=1000, window=60, algorithm="sliding_log")
    (log,) = keys_of(limiter, "k")
    now = await _server_time_us(redis)
    # 1,000 live hits, one per 10 ms of the last 10 s, of costs 1, 2, 1, 2, ...
    costs = [1 + i % 2 for i in range(667)]
    totals = [sum(costs[: i + 1]) for i in range(len(costs))]
    assert totals[-1] == 1000
    hits = {
        f"{t:016d}:{c}".encode(): now - 10_000_000 + 10_000 * i
        for i, (t, c) in enumerate(zip(totals, costs, strict=True))
    }
    await redis.zadd(log, hits)
    await redis.pexpire(log, 60_000)
    started = await _server_time_us(redis)
    refused = await limiter.hit("k", cost=700)
    assert not refused.allowed
    # room for 700 once the oldest hits worth 700 have left: the one whose running
    # total first reaches 700 leaves the window last
    j = next(i for i, total in enumerate(totals) if total >= 700)
    expected = (now - 10_000_000 + 10_000 * j + 60_000_000 - started) / 1e6
    assert expected - 0.5 <= refused.retry_after <= expected
