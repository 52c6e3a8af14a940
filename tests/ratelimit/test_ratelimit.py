"""RateLimiter: every algorithm, on every backend: exact admission, countdown, refill, cost."""

from __future__ import annotations

import asyncio
from typing import Any, get_args

import pytest
import redis.asyncio as aioredis

from aiocache_patterns import Algorithm, Rate, RateLimiter, RateLimitExceeded
from tests._helpers import ttls_ms
from tests._servers import free_port

ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)
EXACT: tuple[Algorithm, ...] = ("fixed_window", "sliding_log", "token_bucket", "gcra")


@pytest.fixture(params=ALGORITHMS)
def algorithm(request: pytest.FixtureRequest) -> Algorithm:
    name: Algorithm = request.param
    return name


async def test_concurrent_hits_never_over_admit(redis: Any, algorithm: Algorithm) -> None:
    # A long window: GCRA and the token bucket refill one hit per window / limit
    # (here 36 s), so a burst slower than 0.6 s (fakeredis on a busy machine) would
    # rightly admit a 101st with window=60.
    # A generous timeout: 1,000 scripts at once take fakeredis a while on a busy
    # machine, and a timed-out hit would be admitted (degraded), not what is tested.
    limiter = RateLimiter(redis, limit=100, window=3600, algorithm=algorithm, timeout=20)
    results = await asyncio.gather(*(limiter.hit("user:1") for _ in range(1000)))
    admitted = sum(r.allowed for r in results)
    # exact algorithms admit exactly the limit; the weighted counter never more
    assert admitted == 100
    assert all(r.retry_after > 0 for r in results if not r.allowed)
    assert all(r.retry_after == 0 for r in results if r.allowed)
    assert limiter.stats.allowed == 100
    assert limiter.stats.denied == 900
    ttls = await ttls_ms(redis)
    assert ttls
    assert all(ttl > 0 for ttl in ttls.values()), ttls


async def test_remaining_counts_down(redis: Any, algorithm: Algorithm) -> None:
    limiter = RateLimiter(redis, limit=5, window=60, algorithm=algorithm)
    assert (await limiter.peek("k")).remaining == 5
    remaining = [(await limiter.hit("k")).remaining for _ in range(5)]
    assert remaining == [4, 3, 2, 1, 0]
    denied = await limiter.hit("k")
    assert not denied.allowed
    assert denied.remaining == 0
    assert denied.limit == 5
    assert 0 < denied.retry_after <= 120
    assert denied.reset_after > 0


async def test_retry_after_is_honest(redis: Any, algorithm: Algorithm) -> None:
    limiter = RateLimiter(redis, limit=3, window=0.4, algorithm=algorithm)
    for _ in range(3):
        assert (await limiter.hit("k")).allowed
    denied = await limiter.hit("k")
    assert not denied.allowed
    assert 0 < denied.retry_after <= 0.8 + 0.01
    await asyncio.sleep(denied.retry_after + 0.05)
    assert (await limiter.hit("k")).allowed


async def test_cost_is_honoured_and_rejections_consume_nothing(
    redis: Any, algorithm: Algorithm
) -> None:
    limiter = RateLimiter(redis, limit=10, window=60, algorithm=algorithm)
    assert (await limiter.hit("k", cost=4)).remaining == 6
    assert (await limiter.hit("k", cost=4)).remaining == 2
    denied = await limiter.hit("k", cost=3)
    assert not denied.allowed
    assert denied.remaining == 2  # nothing was consumed
    assert (await limiter.hit("k", cost=2)).allowed
    assert not (await limiter.hit("k")).allowed


async def test_peek_and_reset(redis: Any, algorithm: Algorithm) -> None:
    limiter = RateLimiter(redis, limit=2, window=60, algorithm=algorithm)
    for _ in range(3):
        peek = await limiter.peek("k")
        assert peek.allowed
        assert peek.remaining == 2
    await limiter.hit("k")
    await limiter.hit("k")
    assert not (await limiter.peek("k")).allowed
    await limiter.reset("k")
    assert (await limiter.hit("k")).remaining == 1


async def test_keys_are_independent(redis: Any, algorithm: Algorithm) -> None:
    limiter = RateLimiter(redis, limit=1, window=60, algorithm=algorithm)
    assert (await limiter.hit("a")).allowed
    assert (await limiter.hit("b")).allowed
    assert (await limiter.hit(b"\x00{weird}\n")).allowed
    assert not (await limiter.hit("a")).allowed


async def test_several_rates_all_or_nothing(redis: Any, algorithm: Algorithm) -> None:
    limiter = RateLimiter(redis, rates=[Rate(2, 0.3), Rate(3, 60)], algorithm=algorithm)
    assert (await limiter.hit("k")).allowed
    assert (await limiter.hit("k")).allowed
    burst = await limiter.hit("k")
    assert not burst.allowed
    assert burst.limit == 2  # the per-0.3 s rate said no...
    assert burst.retry_after <= 0.7
    # ...and the long rate was not charged for the refused hit: one unit left there
    long_only = RateLimiter(redis, rates=[Rate(3, 60)], algorithm=algorithm)
    assert (await long_only.peek("k")).remaining == 1
    await asyncio.sleep(burst.retry_after + 0.05)
    third = await limiter.hit("k")
    assert third.allowed
    assert third.limit == 3  # now the long rate binds
    assert third.remaining == 0
    await asyncio.sleep(0.65)
    day = await limiter.hit("k")
    assert not day.allowed
    assert day.limit == 3
    assert day.retry_after > 1


async def test_decoding_client(redis_decoded: Any, algorithm: Algorithm) -> None:
    limiter = RateLimiter(redis_decoded, limit=2, window=60, algorithm=algorithm)
    assert [(await limiter.hit("k")).allowed for _ in range(3)] == [True, True, False]


async def test_limited_decorator(redis: Any) -> None:
    limiter = RateLimiter(redis, limit=2, window=60)
    calls: list[int] = []

    @limiter.limited("user:{user_id}")
    async def action(user_id: int) -> int:
        calls.append(user_id)
        return user_id

    assert await action(1) == 1
    assert await action(1) == 1
    with pytest.raises(RateLimitExceeded) as info:
        await action(1)
    assert not info.value.result.allowed
    assert info.value.result.retry_after > 0
    assert await action(user_id=2) == 2
    assert calls == [1, 1, 2]
    assert action.__name__ == "action"

    @limiter.limited(lambda user_id: f"fn:{user_id}", cost=2)
    async def heavy(user_id: int) -> None:
        return None

    await heavy(5)
    with pytest.raises(RateLimitExceeded):
        await heavy(5)


def test_headers_follow_the_ietf_draft() -> None:
    from aiocache_patterns import RateLimitResult

    ok = RateLimitResult(True, 100, 42, 17.2, 0.0, 60.0)
    assert ok.headers() == {
        "RateLimit-Policy": '"default";q=100;w=60',
        "RateLimit": '"default";r=42;t=18',
    }
    denied = RateLimitResult(False, 100, 0, 30.0, 2.5, 60.0)
    assert denied.headers("api")["Retry-After"] == "3"
    assert denied.headers("api")["RateLimit"] == '"api";r=0;t=30'


@pytest.mark.parametrize("fail_open", [True, False])
async def test_redis_down_follows_fail_open(fail_open: bool) -> None:
    client = aioredis.Redis(port=free_port())
    limiter = RateLimiter(client, limit=5, window=60, fail_open=fail_open, timeout=0.3)
    try:
        result = await asyncio.wait_for(limiter.hit("k"), 2)
    finally:
        await client.aclose()
    assert result.degraded
    assert result.allowed is fail_open
    assert limiter.stats.errors == 1
    if not fail_open:
        assert result.retry_after > 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"limit": 0, "window": 60}, ValueError, "limit"),
        ({"limit": -5, "window": 60}, ValueError, "limit"),
        ({"limit": 1.5, "window": 60}, TypeError, "limit"),
        ({"limit": 10, "window": 0}, ValueError, "window"),
        ({"limit": 10, "window": -1}, ValueError, "window"),
        ({"limit": 10, "window": "60"}, TypeError, "window"),
        ({"limit": 10, "window": 60, "algorithm": "leaky"}, ValueError, "algorithm"),
        ({"limit": 10}, TypeError, "window"),
        ({"limit": 10, "window": 60, "rates": [Rate(1, 1)]}, TypeError, "rates"),
        ({"rates": []}, ValueError, "rates"),
        ({"rates": [(1, 1)]}, TypeError, "Rate"),
        ({"limit": 10, "window": 60, "fail_open": 1}, TypeError, "fail_open"),
    ],
)
def test_bad_construction(
    redis: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        RateLimiter(redis, **kwargs)


@pytest.mark.parametrize(
    ("cost", "error"), [(-1, ValueError), (0, ValueError), (11, ValueError), (1.5, TypeError)]
)
async def test_bad_cost(redis: Any, cost: Any, error: type[Exception]) -> None:
    limiter = RateLimiter(redis, limit=10, window=60)
    with pytest.raises(error, match="cost"):
        await limiter.hit("k", cost=cost)


async def test_bad_key(redis: Any) -> None:
    limiter = RateLimiter(redis, limit=10, window=60)
    with pytest.raises(TypeError, match="key"):
        await limiter.hit(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key"):
        await limiter.hit("")


def test_degraded_results_advertise_no_quota() -> None:
    from aiocache_patterns import RateLimitResult

    assert RateLimitResult(True, 100, 99, 0.0, 0.0, 60.0, degraded=True).headers() == {}
    assert RateLimitResult(False, 100, 0, 0.0, 1.0, 60.0, degraded=True).headers() == {
        "Retry-After": "1"
    }


async def test_sliding_log_refusals_stay_cheap_with_a_big_limit(redis: Any) -> None:
    """retry_after reads only the oldest entries it needs, not the whole log."""
    limiter = RateLimiter(redis, limit=2000, window=60, algorithm="sliding_log", timeout=20)
    await asyncio.gather(*(limiter.hit("big") for _ in range(2000)))
    denied = await limiter.hit("big", cost=3)
    assert not denied.allowed
    assert 50 < denied.retry_after <= 60  # when the third-oldest hit slides out
