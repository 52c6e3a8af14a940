"""A worker process for idempotency/test_processes.py: N concurrent duplicate POSTs.

Usage: python -m tests._idempotency_worker URL CLUSTER(0|1) KEY CALLERS CONCURRENT
       ENDPOINT_SECONDS [LEASE]

Each process serves an ASGI app behind IdempotencyMiddleware (in process,
through httpx's ASGI transport) and sends CALLERS identical POSTs with one
Idempotency-Key. The endpoint counts its calls in Redis (``<KEY>:calls``), so the
parent sees how many ran across every process, and marks ``<KEY>:running``
while it runs, so the parent can kill it mid-request. Prints one JSON line:
how many responses of each status, and how many bodies differed from the first.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from typing import Any

import httpx
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aiocache_patterns.integrations.asgi import IdempotencyMiddleware


def _client(url: str, cluster: str) -> Any:
    return aioredis.RedisCluster.from_url(url) if cluster == "1" else aioredis.Redis.from_url(url)


async def main(argv: list[str]) -> None:
    url, cluster, key, callers, concurrent, endpoint_s = argv[:6]
    lease = float(argv[6]) if len(argv) > 6 else 30.0
    client, counter = _client(url, cluster), _client(url, cluster)

    async def create(request: Request) -> JSONResponse:
        calls = await counter.incr(f"{key}:calls")
        await counter.set(f"{key}:running", 1, px=60_000)
        await asyncio.sleep(float(endpoint_s))
        return JSONResponse({"call": calls, "fence": request.state.fencing_token}, 201)

    app = IdempotencyMiddleware(
        Starlette(routes=[Route("/posts", create, methods=["POST"])]),
        redis=client,
        concurrent=concurrent,  # type: ignore[arg-type]
        wait_timeout=30,
        lease=lease,
        ttl=300,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as http:
        responses = await asyncio.gather(
            *(
                http.post("/posts", content=b'{"title":"t"}', headers={"Idempotency-Key": key})
                for _ in range(int(callers))
            ),
            return_exceptions=True,
        )
    errors = [repr(r) for r in responses if isinstance(r, BaseException)]
    ok = [r for r in responses if isinstance(r, httpx.Response)]
    statuses = Counter(r.status_code for r in ok)
    bodies = {r.content for r in ok if r.status_code == 201}
    print(
        json.dumps(
            {
                "statuses": {str(k): v for k, v in statuses.items()},
                "bodies": [b.decode() for b in bodies],
                "errors": errors[:5],
            }
        ),
        flush=True,
    )
    await client.aclose()
    await counter.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
