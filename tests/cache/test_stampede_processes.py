"""Stampede control with real processes on a real Redis / Redis Cluster."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aiocache_patterns import Cache
from tests._backends import Backend

pytestmark = pytest.mark.real_only

ROOT = Path(__file__).resolve().parents[2]


async def _spawn(backend: Backend, *args: str) -> asyncio.subprocess.Process:
    assert backend.url is not None
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests._stampede_worker",
        backend.url,
        "1" if backend.is_cluster else "0",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def _report(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return report


async def test_four_processes_on_a_cold_key_load_once(backend: Backend, redis: Any) -> None:
    procs = [await _spawn(backend, "cold", "300", "0.05") for _ in range(4)]
    reports = [await _report(p) for p in procs]
    assert [r["correct"] for r in reports] == [300] * 4
    assert sum(r["error_count"] for r in reports) == 0, reports
    assert int(await redis.get("cold:calls")) == 1
    assert sum(r["loads"] for r in reports) == 1
    # generous bound: process start-up races make the first callers wait a little
    assert max(r["p99"] for r in reports) < 2.0


async def test_a_killed_leader_is_replaced(backend: Backend, redis: Any) -> None:
    leader = await _spawn(backend, "killed", "1", "30", "0.5")
    for _ in range(200):  # wait until it is inside its (30 s) loader
        if await redis.exists("killed:loading"):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the leader never started loading")
    leader.send_signal(signal.SIGKILL)
    await leader.wait()

    client = redis
    cache = Cache(client, namespace="mp", ttl=60, lock_timeout=30)
    calls = 0

    async def loader() -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"answer": 42}

    started = time.monotonic()
    assert await cache.get_or_load("killed", loader) == {"answer": 42}
    # the dead leader's lock lease (0.5 s) ran out; we did not wait the 30 s limit
    assert time.monotonic() - started < 3.0
    assert calls == 1
