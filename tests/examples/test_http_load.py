"""examples/http_load: the measured app on every backend, and reading wrk's output."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from examples.http_load.__main__ import parse_wrk
from examples.http_load.app import create_app
from tests._backends import Backend

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:40000
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    15.10ms   10.20ms 173.40ms   90.00%
    Req/Sec     1.00k   100.00     1.20k    70.00%
  Latency Distribution
     50%   15.90ms
     75%   18.00ms
     90%   25.00ms
     99%  173.40ms
  19630 requests in 10.00s, 3.00MB read
  Non-2xx or 3xx responses: 12
Requests/sec:   1963.00
Transfer/sec:    300.00KB
"""


def test_parse_wrk() -> None:
    result = parse_wrk("cached", WRK_OUTPUT)
    assert result.requests_per_s == 1963.0
    assert result.p50_ms == pytest.approx(15.9)
    assert result.p99_ms == pytest.approx(173.4)
    assert "Non-2xx or 3xx responses: 12" in result.errors
    assert result.requests == 19630
    micro = WRK_OUTPUT.replace("15.90ms", "900.00us").replace("173.40ms", "1.20s")
    parsed = parse_wrk("cached", micro)
    assert parsed.p50_ms == pytest.approx(0.9)
    assert parsed.p99_ms == pytest.approx(1200.0)
    with pytest.raises(SystemExit):
        parse_wrk("cached", "wrk: connection refused")


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 5000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://load") as client,
    ):
        yield client


async def test_cached_uncached_floor_and_a_cold_key(backend: Backend) -> None:
    app = create_app(backend.sync_client(), db_ms=5)
    async with serving(app) as client:

        async def db_calls() -> int:
            calls: int = (await client.get("/stats")).json()["db_calls"]
            return calls

        expected = {"id": 7, "name": "item 7", "price": 7}
        for route in ("cached", "uncached", "floor"):
            reply = await client.get(f"/{route}/7")
            assert reply.status_code == 200
            assert reply.json() == expected
        assert await db_calls() == 2  # cached (a miss) and uncached; the floor reads nothing
        await client.get("/cached/7")
        assert await db_calls() == 2
        await client.get("/uncached/7")
        assert await db_calls() == 3

        await client.post("/forget/7")
        replies = await asyncio.gather(*(client.get("/cached/7") for _ in range(20)))
        assert all(r.json() == expected for r in replies)
        assert await db_calls() == 4, "a cold key under load: one database call"
        assert "RateLimit" not in replies[0].headers


async def test_rate_limit_flag_adds_the_middleware(backend: Backend) -> None:
    app = create_app(backend.sync_client(), db_ms=0, rate_limit=2)
    async with serving(app) as client:
        first = await client.get("/floor/1")
        assert first.headers["RateLimit-Policy"] == '"default";q=2;w=60'
        assert (await client.get("/floor/1")).status_code == 200
        assert (await client.get("/floor/1")).status_code == 429
        assert (await client.get("/stats")).status_code == 200, "exempt"
