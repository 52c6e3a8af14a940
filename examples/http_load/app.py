"""The app :mod:`examples.http_load` measures: ``python -m examples.http_load.app``.

``GET /cached/{id}`` reads through ``@cache.cached``; ``GET /uncached/{id}``
calls the same fake database (``--db-ms`` a query, default 20) directly.
``GET /floor/{id}`` answers the same without either (the ceiling of
FastAPI and uvicorn on this machine). ``GET /stats`` tells the database
calls so far; ``POST /forget/{id}`` drops a cached entry (to make a key cold
again). With ``--rate-limit N``, the
rate-limit middleware counts every request (``N`` a minute per client).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI

from aiocache_patterns import Cache, RateLimiter
from aiocache_patterns.integrations.asgi import RateLimitMiddleware

__all__ = ["create_app", "main"]


def create_app(redis: Any, *, db_ms: float = 20.0, rate_limit: int | None = None) -> FastAPI:
    """The app on ``redis`` (closed by the app's lifespan)."""
    cache = Cache(redis, namespace="http-load", ttl=3600)
    calls = {"db": 0}

    async def db_fetch(item_id: int) -> dict[str, Any]:
        calls["db"] += 1
        await asyncio.sleep(db_ms / 1000)
        return {"id": item_id, "name": f"item {item_id}", "price": item_id % 97}

    @cache.cached(key="item:{item_id}")
    async def get_item(item_id: int) -> dict[str, Any]:
        return await db_fetch(item_id)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with cache:
            yield
        await redis.aclose()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None)
    if rate_limit is not None:
        limiter = RateLimiter(redis, limit=rate_limit, window=60, namespace="http-load-rl")
        app.add_middleware(RateLimitMiddleware, limiter=limiter, exempt={"/stats"})

    @app.get("/cached/{item_id}")
    async def cached(item_id: int) -> dict[str, Any]:
        return await get_item(item_id)

    @app.get("/uncached/{item_id}")
    async def uncached(item_id: int) -> dict[str, Any]:
        return await db_fetch(item_id)

    @app.get("/floor/{item_id}")
    async def floor(item_id: int) -> dict[str, Any]:
        """The HTTP stack alone: the same answer, no Redis, no database."""
        return {"id": item_id, "name": f"item {item_id}", "price": item_id % 97}

    @app.get("/stats")
    async def stats() -> dict[str, int]:
        return {"db_calls": calls["db"]}

    @app.post("/forget/{item_id}")
    async def forget(item_id: int) -> dict[str, bool]:
        await get_item.invalidate(item_id)
        return {"ok": True}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.http_load.app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--db-ms", type=float, default=20.0, help="fake query time (ms)")
    parser.add_argument(
        "--rate-limit", type=int, metavar="N", help="rate-limit every request: N a minute"
    )
    parser.add_argument("--no-access-log", action="store_true")
    args = parser.parse_args(argv)
    app = create_app(
        aioredis.Redis.from_url(args.redis_url), db_ms=args.db_ms, rate_limit=args.rate_limit
    )
    uvicorn.run(
        app, host=args.host, port=args.port, access_log=not args.no_access_log, log_level="warning"
    )


if __name__ == "__main__":
    main()
