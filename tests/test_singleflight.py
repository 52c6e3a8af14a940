"""SingleFlight: one call in flight per key, shared results, cancellation-safe."""

from __future__ import annotations

import asyncio

import pytest

from aiocache_patterns import SingleFlight


class Panic(BaseException):
    pass


async def test_concurrent_callers_share_one_call() -> None:
    sf = SingleFlight()
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        return 42

    results = await asyncio.gather(*(sf.do("k", work) for _ in range(100)))
    assert results == [42] * 100
    assert calls == 1
    assert sf.stats.calls == 1
    assert sf.stats.coalesced == 99
    assert sf.stats.in_flight == 0


async def test_arguments_go_to_the_one_call_that_runs() -> None:
    sf = SingleFlight()
    seen: list[tuple[int, str]] = []

    async def work(n: int, label: str) -> str:
        seen.append((n, label))
        await asyncio.sleep(0.01)
        return f"{label}{n}"

    results = await asyncio.gather(*(sf.do("k", work, i, "x") for i in range(10)))
    # the first caller's arguments started the call; the others joined it
    assert results == ["x0"] * 10
    assert seen == [(0, "x")]
    assert await sf.do_shared("k", work, 7, "y") == ("y7", False)


async def test_different_keys_run_separately() -> None:
    sf = SingleFlight()
    seen: list[str] = []

    async def work(k: str) -> str:
        seen.append(k)
        await asyncio.sleep(0)
        return k

    both = await asyncio.gather(sf.do("a", lambda: work("a")), sf.do("b", lambda: work("b")))
    assert list(both) == ["a", "b"]
    assert sorted(seen) == ["a", "b"]


async def test_errors_reach_every_waiter_and_are_not_remembered() -> None:
    sf = SingleFlight()
    calls = 0

    async def failing() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise KeyError("boom")

    results = await asyncio.gather(
        *(sf.do("k", failing) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, KeyError) for r in results)
    assert calls == 1

    async def ok() -> int:
        return 7

    assert await sf.do("k", ok) == 7  # the error was not cached


async def test_cancelling_one_waiter_leaves_the_others() -> None:
    sf = SingleFlight()
    calls = 0
    gate = asyncio.Event()

    async def work() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "value"

    tasks = [asyncio.create_task(sf.do("k", work)) for _ in range(10)]
    await asyncio.sleep(0.01)
    tasks[0].cancel()  # the caller that started the work
    tasks[5].cancel()
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert isinstance(results[5], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i not in (0, 5)] == ["value"] * 8
    assert calls == 1


async def test_work_is_cancelled_when_the_last_waiter_leaves() -> None:
    sf = SingleFlight()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def work() -> str:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    task = asyncio.create_task(sf.do("k", work))
    await started.wait()
    task.cancel()
    await asyncio.wait_for(cancelled.wait(), 1)
    assert not sf.in_flight("k")

    async def fresh() -> str:
        return "fresh"

    # A newcomer starts fresh work instead of joining the dying call.
    assert await sf.do("k", fresh) == "fresh"


async def test_a_panic_does_not_wedge_the_key() -> None:
    sf = SingleFlight()

    async def panic() -> int:
        raise Panic

    with pytest.raises(Panic):
        await sf.do("k", panic)
    assert not sf.in_flight("k")

    async def ok() -> int:
        return 1

    assert await sf.do("k", ok) == 1


async def test_forget_lets_the_next_call_start_fresh() -> None:
    sf = SingleFlight()
    gate = asyncio.Event()
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        n = calls
        await gate.wait()
        return n

    first = asyncio.create_task(sf.do("k", work))
    await asyncio.sleep(0)
    sf.forget("k")
    second = asyncio.create_task(sf.do("k", work))
    await asyncio.sleep(0)
    gate.set()
    assert await first == 1
    assert await second == 2


async def test_fn_must_be_callable() -> None:
    with pytest.raises(TypeError, match="fn must be callable"):
        await SingleFlight().do("k", 3)  # type: ignore[arg-type]
