"""Idempotency across real processes on a real Redis / Redis Cluster: concurrent
duplicate POSTs from four processes run the endpoint once; a process killed
mid-request frees the key after its lease."""

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

from tests._backends import Backend

pytestmark = pytest.mark.real_only

ROOT = Path(__file__).resolve().parents[2]


async def _spawn(backend: Backend, *args: str) -> asyncio.subprocess.Process:
    assert backend.url is not None
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests._idempotency_worker",
        backend.url,
        "1" if backend.is_cluster else "0",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def _report(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return report


@pytest.mark.parametrize("concurrent", ["reject", "wait"])
async def test_duplicates_from_four_processes_run_once(
    backend: Backend, redis: Any, concurrent: str
) -> None:
    procs = [await _spawn(backend, "dup", "100", concurrent, "0.2") for _ in range(4)]
    reports = [await _report(p) for p in procs]
    assert all(not r["errors"] for r in reports), reports
    assert int(await redis.get("dup:calls")) == 1
    statuses: dict[str, int] = {}
    for report in reports:
        for status, n in report["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    bodies = {b for r in reports for b in r["bodies"]}
    assert len(bodies) == 1  # every 201 is the one response
    if concurrent == "wait":
        assert statuses == {"201": 400}
    else:
        # the one that ran, and whoever came after it finished (replays) get 201;
        # those that arrived while it ran get 409
        assert statuses["201"] >= 1
        assert statuses["201"] + statuses.get("409", 0) == 400, statuses


async def test_a_killed_process_frees_the_key_after_its_lease(
    backend: Backend, redis: Any
) -> None:
    victim = await _spawn(backend, "killed", "1", "reject", "30", "0.5")
    for _ in range(200):  # wait until it is inside its (30 s) endpoint
        if await redis.exists("killed:running"):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the endpoint never started")
    victim.send_signal(signal.SIGKILL)
    await victim.wait()

    started = time.monotonic()
    retry = await _spawn(backend, "killed", "1", "wait", "0", "0.5")
    report = await _report(retry)
    assert report["statuses"] == {"201": 1}, report
    assert time.monotonic() - started < 10  # the lease (0.5 s), not the dead endpoint's 30 s
    assert int(await redis.get("killed:calls")) == 2
    fence = json.loads(report["bodies"][0])["fence"]
    assert fence > 0
