"""docs/getting-started.md: the page's app, run as written, on every backend.

The Python block after ``<!-- getting-started-app -->`` is executed as a
module, with ``redis.asyncio.Redis.from_url`` answering the test backend's
client, then driven over httpx's ASGI transport with its lifespan entered.
The page's other blocks are compiled (they are fragments, not programs).
"""

from __future__ import annotations

import asyncio
import re
import types
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from tests._backends import Backend

PAGE = Path(__file__).resolve().parents[2] / "docs" / "getting-started.md"
MARKER = "<!-- getting-started-app -->"
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)
PEER = ("203.0.113.7", 50000)
#: The page's code must not overflow the rendered page.
MAX_LINE = 79


def page_blocks() -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block on the page, in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(PAGE.read_text())]


def app_source() -> str:
    text = PAGE.read_text()
    assert MARKER in text, f"{PAGE.name} lost its {MARKER} marker"
    match = FENCE.search(text, text.index(MARKER))
    assert match is not None
    assert match.group(1) == "python"
    return match.group(2)


def load_page_app(make_client: Callable[..., Any]) -> Any:
    """Run the page's app as a module whose ``redis.Redis.from_url`` answers ``make_client()``."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.delenv("REDIS_URL", raising=False)
    urls: list[str] = []
    client = make_client()  # before the patch: the backend makes its clients with from_url

    def from_url(url: str, **kwargs: Any) -> Any:
        urls.append(url)
        assert not kwargs, "the page's client has no options"
        return client

    monkeypatch.setattr(aioredis.Redis, "from_url", from_url)
    module = types.ModuleType("getting_started_app")
    exec(compile(app_source(), str(PAGE), "exec"), module.__dict__)
    monkeypatch.undo()
    assert urls == ["redis://localhost:6379/0"], "the page reads REDIS_URL, with that default"
    return module


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=PEER)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://shop") as client,
    ):
        yield client


@pytest.fixture
def page(backend: Backend) -> Any:
    return load_page_app(backend.sync_client)


def test_the_page_code_fits_the_page_and_compiles() -> None:
    blocks = page_blocks()
    assert any(lang == "python" for lang, _ in blocks)
    for lang, code in blocks:
        for line in code.splitlines():
            assert len(line) <= MAX_LINE, f"too wide for the page: {line!r}"
        if lang == "python":
            # Fragments may use top-level await: compile them as a coroutine body.
            body = "async def _fragment():\n" + "".join(
                f"    {line}\n" for line in code.splitlines()
            )
            compile(body, str(PAGE), "exec")
    text = PAGE.read_text()
    assert "TooManyRequests" not in text
    assert "pip install aiocache-patterns\n" not in text


async def test_a_cached_read_loads_once_and_a_write_invalidates(page: Any) -> None:
    async with serving(page.app) as client:
        first = await client.get("/products/1")
        assert first.status_code == 200
        assert first.json() == {"id": 1, "name": "teapot", "price": 30}
        assert (await client.get("/products/1")).json() == first.json()
        assert page.queries == 1, "the second read is a cache hit"

        change = await client.put("/products/1", json={"price": 35})
        assert change.status_code == 200
        assert (await client.get("/products/1")).json()["price"] == 35
        assert page.queries == 2, "invalidated, so loaded again once"

        missing = await client.get("/products/999")
        assert missing.status_code == 404
        assert (await client.get("/products/999")).status_code == 404
        assert page.queries == 3, "a missing product is cached too"
        assert (await client.put("/products/999", json={"price": 1})).status_code == 404


async def test_a_cold_key_under_load_is_loaded_once(page: Any) -> None:
    page.PRODUCTS[2] = {"id": 2, "name": "cup", "price": 8}
    async with serving(page.app) as client:
        replies = await asyncio.gather(*(client.get("/products/2") for _ in range(30)))
    assert {r.status_code for r in replies} == {200}
    assert page.queries == 1


async def test_rate_limit_headers_429_and_exempt_docs(page: Any) -> None:
    async with serving(page.app) as client:
        first = await client.get("/products/1")
        assert first.headers["RateLimit-Policy"] == '"default";q=100;w=60'
        match = re.fullmatch(r'"default";r=99;t=(\d+)', first.headers["RateLimit"])
        assert match is not None, first.headers["RateLimit"]
        assert 60 <= int(match.group(1)) <= 120, "t: until the quota is full again"

        for path in ("/docs", "/openapi.json"):
            exempt = await client.get(path)
            assert exempt.status_code == 200
            assert "RateLimit" not in exempt.headers

        for _ in range(99):
            assert (await client.get("/products/1")).status_code == 200
        refused = await client.get("/products/1")
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert (await client.get("/openapi.json")).status_code == 200
    assert page.queries == 1


async def test_the_leaderboard_endpoints(page: Any) -> None:
    async with serving(page.app) as client:
        for buyer, amount in (("ada", 30), ("bob", 50), ("ada", 25), ("cy", 55)):
            placed = await client.post("/orders", json={"buyer": buyer, "amount": amount})
            assert placed.status_code == 200
        top = (await client.get("/top-buyers", params={"n": 2})).json()
    # ada (55) got there before cy (55): equal totals rank by arrival.
    assert top == [
        {"buyer": "ada", "total": 55, "rank": 1},
        {"buyer": "cy", "total": 55, "rank": 2},
    ]


async def test_redis_down_is_a_503_and_reads_still_work() -> None:
    """Nothing listens at the URL: the cache and the limiter fail open, the
    leaderboard's RedisUnavailable becomes the page's 503."""

    def unreachable(**kwargs: Any) -> Any:
        return aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, **kwargs)

    page = load_page_app(unreachable)
    async with serving(page.app) as client:
        read = await client.get("/products/1")
        assert read.status_code == 200
        assert read.json()["name"] == "teapot"
        assert "RateLimit" not in read.headers, "no quota advertised without Redis"
        down = await client.get("/top-buyers")
        assert down.status_code == 503
        assert down.headers["Retry-After"] == "5"
        assert "unavailable" in down.json()["detail"]
