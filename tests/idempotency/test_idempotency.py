"""Idempotency.run and its steps on every backend: once per key, replays, mismatches,
concurrent repeats (rejected or woken), failures not stored, leases, fencing, TTLs."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest

from aiocache_patterns import (
    Idempotency,
    IdempotencyConflict,
    IdempotencyKeyReused,
    RedisUnavailable,
)
from aiocache_patterns.idempotency import IdempotencyClaim, IdempotencyReplay
from tests._backends import Backend, all_keys
from tests._helpers import ttls_ms


class Counter:
    """An operation that counts its calls and returns its fencing token."""

    def __init__(self, delay: float = 0.0, fail: BaseException | None = None) -> None:
        self.calls: list[int] = []
        self.delay = delay
        self.fail = fail
        self.started = asyncio.Event()

    async def __call__(self, fence: int) -> dict[str, Any]:
        self.calls.append(fence)
        self.started.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return {"fence": fence, "n": len(self.calls)}


async def test_first_run_runs_a_repeat_replays(redis: Any) -> None:
    idem = Idempotency(redis, namespace="pay", ttl=60)
    op = Counter()
    first = await idem.run("order-1", "fp", op)
    again = await idem.run("order-1", "fp", op)
    assert first == again == {"fence": op.calls[0], "n": 1}
    assert len(op.calls) == 1
    # another key is another operation
    assert (await idem.run("order-2", "fp", op))["n"] == 2


async def test_another_fingerprint_is_refused(redis: Any) -> None:
    idem = Idempotency(redis, ttl=60)
    op = Counter()
    await idem.run("k", "charge 10", op)
    with pytest.raises(IdempotencyKeyReused):
        await idem.run("k", "charge 99", op)
    assert len(op.calls) == 1


async def test_a_running_key_is_rejected_or_waited_for(redis: Any, backend: Backend) -> None:
    other = await backend.client()  # another "process"
    reject = Idempotency(redis, ttl=60)
    wait = Idempotency(other, ttl=60, concurrent="wait", wait_timeout=5)
    slow = Counter(delay=0.3)
    first = asyncio.create_task(reject.run("k", "fp", slow))
    await slow.started.wait()
    with pytest.raises(IdempotencyConflict) as info:
        await reject.run("k", "fp", slow)
    assert info.value.in_progress
    with pytest.raises(IdempotencyKeyReused):  # another request, even while running
        await wait.run("k", "other", slow)
    waiters = [asyncio.create_task(wait.run("k", "fp", slow)) for _ in range(20)]
    results = await asyncio.gather(first, *waiters)
    assert len(slow.calls) == 1
    assert all(r == results[0] for r in results)


async def test_waiters_are_woken_not_polling(redis: Any, backend: Backend) -> None:
    other = await backend.client()
    wait = Idempotency(other, ttl=60, concurrent="wait", wait_timeout=10, poll_interval=5)
    leader = Idempotency(redis, ttl=60)
    slow = Counter(delay=0.2)
    first = asyncio.create_task(leader.run("k", "fp", slow))
    await slow.started.wait()
    started = time.monotonic()
    assert await wait.run("k", "fp", slow) == await first
    assert time.monotonic() - started < 2.5  # woken, not the 5 s poll


async def test_a_waiter_gives_up_after_wait_timeout(redis: Any) -> None:
    idem = Idempotency(redis, ttl=60, concurrent="wait", wait_timeout=0.2)
    slow = Counter(delay=2)
    first = asyncio.create_task(idem.run("k", "fp", slow))
    await slow.started.wait()
    with pytest.raises(IdempotencyConflict):
        await idem.run("k", "fp", slow)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_failed_operation_is_not_stored(redis: Any) -> None:
    idem = Idempotency(redis, ttl=60)
    failing = Counter(fail=RuntimeError("card declined by the network"))
    with pytest.raises(RuntimeError):
        await idem.run("k", "fp", failing)
    ok = Counter()
    result = await idem.run("k", "fp", ok)  # runs again
    assert len(ok.calls) == 1
    assert result["fence"] > failing.calls[0]  # a new claim, a higher fence
    # even another fingerprint may use a key whose operation failed
    assert len(failing.calls) == 1


async def test_a_cancelled_operation_frees_the_key(redis: Any) -> None:
    idem = Idempotency(redis, ttl=60)
    slow = Counter(delay=10)
    task = asyncio.create_task(idem.run("k", "fp", slow))
    await slow.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await idem.run("k", "fp", Counter()))["n"] == 1


async def test_a_dead_claim_is_taken_over_after_its_lease(redis: Any, backend: Backend) -> None:
    dead = Idempotency(redis, ttl=60, lease=0.3)
    claim = await dead.start("k", "fp")  # claimed, then never completed nor renewed
    assert isinstance(claim, IdempotencyClaim)
    live = Idempotency(await backend.client(), ttl=60, lease=0.3)
    with pytest.raises(IdempotencyConflict):
        await live.run("k", "fp", Counter())
    await asyncio.sleep(0.4)
    op = Counter()
    result = await live.run("k", "fp", op)
    assert result["fence"] > claim.fencing_token
    # the late writer is told it lost: nothing it stores lands
    assert await dead.complete(claim, b'"late"') is False
    assert await live.run("k", "fp", Counter()) == result


async def test_a_running_operation_keeps_its_lease(redis: Any) -> None:
    idem = Idempotency(redis, ttl=60, lease=0.3)
    slow = Counter(delay=1.0)  # three leases long: renewed meanwhile
    first = asyncio.create_task(idem.run("k", "fp", slow))
    await slow.started.wait()
    await asyncio.sleep(0.6)
    with pytest.raises(IdempotencyConflict):
        await idem.run("k", "fp", slow)
    await first
    assert len(slow.calls) == 1


async def test_a_waiter_takes_over_a_dead_claim(redis: Any, backend: Backend) -> None:
    dead = Idempotency(redis, ttl=60, lease=0.3)
    claim = await dead.start("k", "fp")
    assert isinstance(claim, IdempotencyClaim)
    wait = Idempotency(await backend.client(), ttl=60, lease=5, concurrent="wait")
    op = Counter()
    started = time.monotonic()
    result = await wait.run("k", "fp", op)
    assert time.monotonic() - started < 3
    assert result["fence"] > claim.fencing_token


async def test_fencing_tokens_grow_per_claim(redis: Any) -> None:
    idem = Idempotency(redis, ttl=60)
    fences = []
    for _ in range(5):
        claim = await idem.start("k", "fp")
        assert isinstance(claim, IdempotencyClaim)
        fences.append(claim.fencing_token)
        assert await idem.release(claim)
    assert fences == sorted(set(fences))


async def test_a_result_too_large_is_not_replayed_and_never_reruns(redis: Any) -> None:
    idem = Idempotency(redis, ttl=60, max_result_bytes=10)
    op = Counter()
    assert (await idem.run("k", "fp", op))["n"] == 1  # returned to the first caller
    for _ in range(2):
        with pytest.raises(IdempotencyConflict) as info:
            await idem.run("k", "fp", op)
        assert not info.value.in_progress
    with pytest.raises(IdempotencyKeyReused):
        await idem.run("k", "other", op)
    assert len(op.calls) == 1


async def test_steps_complete_and_replay_raw_bytes(redis: Any) -> None:
    idem = Idempotency(redis, ttl=60)
    claim = await idem.start(b"\x00k\xff", b"fp")
    assert isinstance(claim, IdempotencyClaim)
    payload = bytes(range(256))
    assert await idem.complete(claim, payload)
    assert await idem.complete(claim, payload)  # a repeat (a resend) says the same
    assert await idem.start(b"\x00k\xff", b"fp") == IdempotencyReplay(payload)


async def test_every_key_carries_the_ttl(redis: Any) -> None:
    idem = Idempotency(redis, ttl=30, lease=5, concurrent="wait")
    await idem.run("done", "fp", Counter())
    claim = await idem.start("running", "fp")
    assert isinstance(claim, IdempotencyClaim)
    claim2 = await idem.start("freed", "fp")
    assert isinstance(claim2, IdempotencyClaim)
    await idem.release(claim2)
    ttls = await ttls_ms(redis)
    assert len(ttls) == 3
    assert all(0 < t <= 30_000 for t in ttls.values()), ttls


async def test_keys_are_namespaced_and_escaped(redis: Any) -> None:
    a = Idempotency(redis, namespace="a", ttl=60)
    b = Idempotency(redis, namespace="b", ttl=60)
    op = Counter()
    await a.run("k", "fp", op)
    await b.run("k", "fp", op)  # another namespace: another record
    await a.run("#h:k", "fp", op)  # never another key's escaped or hashed form
    await a.run("}k", "fp", op)
    assert len(op.calls) == 4
    keys = await all_keys(redis)
    assert all(k.startswith((b"a:{", b"b:{")) for k in keys), keys


async def test_a_forged_record_of_another_type_is_replaced(redis: Any) -> None:
    idem = Idempotency(redis, namespace="n", ttl=60)
    await redis.set(b"n:{k}", b"not a record")
    assert (await idem.run("k", "fp", Counter()))["n"] == 1


async def test_arguments_are_checked() -> None:
    import fakeredis

    r = fakeredis.FakeAsyncRedis()
    with pytest.raises(ValueError, match="concurrent"):
        Idempotency(r, concurrent="queue")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lease"):
        Idempotency(r, ttl=10, lease=20)
    with pytest.raises(ValueError, match="ttl"):
        Idempotency(r, ttl=0)
    with pytest.raises(TypeError, match="serializer"):
        Idempotency(r, serializer=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="redis"):
        Idempotency(object())
    idem = Idempotency(r, ttl=timedelta(hours=1))
    with pytest.raises(TypeError, match="operation"):
        await idem.run("k", "fp", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key"):
        await idem.run("", "fp", Counter())
    with pytest.raises(TypeError, match="fingerprint"):
        await idem.run("k", 5, Counter())  # type: ignore[arg-type]
    await r.aclose()


async def test_redis_down_raises_and_runs_nothing() -> None:
    import redis.asyncio as aioredis

    from tests._servers import free_port

    client = aioredis.Redis(port=free_port(), socket_connect_timeout=0.2)
    idem = Idempotency(client, ttl=60, timeout=0.5)
    op = Counter()
    with pytest.raises(RedisUnavailable):
        await idem.run("k", "fp", op)
    assert op.calls == []
    await client.aclose()


async def test_the_result_is_returned_when_it_cannot_be_stored(
    redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    idem = Idempotency(redis, ttl=60)

    async def op(fence: int) -> int:
        # the record vanishes under the operation (as after a failover)
        await redis.delete(*(await all_keys(redis)))
        return 7

    assert await idem.run("k", "fp", op) == 7
    assert any("was lost" in r.getMessage() for r in caplog.records), caplog.records
    again = Counter()
    await idem.run("k", "fp", again)  # not stored: the key runs again
    assert len(again.calls) == 1


async def test_a_long_operation_keeps_its_record_past_the_ttl(redis: Any) -> None:
    idem = Idempotency(redis, ttl=0.6, lease=0.3)
    calls: list[int] = []

    async def slow(fence: int) -> int:
        calls.append(fence)
        await asyncio.sleep(1.2)  # twice the ttl: the renewals keep the record
        return fence

    first = asyncio.create_task(idem.run("k", "fp", slow))
    await asyncio.sleep(0.9)
    with pytest.raises(IdempotencyConflict):
        await idem.run("k", "fp", slow)
    await first
    assert len(calls) == 1
