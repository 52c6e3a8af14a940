"""What the ``idempotency`` scenario and its worker processes share: the app, and a
minimal ASGI caller (no HTTP client between us and the middleware).

The app is one ``POST /posts`` endpoint behind ``IdempotencyMiddleware``; it
counts its runs in Redis (``INCR <key>:runs``), so runs are counted across every
process, and sleeps ``endpoint_s`` (the work a real endpoint does).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from aiocache_patterns import client_stats
from aiocache_patterns.integrations.asgi import IdempotencyMiddleware
from benchmarks._target import KEY_PREFIX

__all__ = ["Reply", "call", "make_app", "runs_key"]

BODY = b'{"title": "hello", "body": "world"}'


def runs_key(key: str) -> str:
    return f"{KEY_PREFIX}:idem-runs:{key}"


def make_app(
    client: Any, counter: Any, endpoint_s: float, *, concurrent: str = "reject", idem: bool = True
) -> Any:
    async def endpoint(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        headers = dict(scope["headers"])
        key = headers.get(b"idempotency-key", b"none").decode()
        run = await counter.incr(runs_key(key))
        if endpoint_s:
            await asyncio.sleep(endpoint_s)
        body = b'{"id": %d}' % run
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    if not idem:
        return endpoint
    return IdempotencyMiddleware(
        endpoint,
        redis=client,
        namespace=f"{KEY_PREFIX}:idem",
        ttl=600,
        concurrent=concurrent,  # type: ignore[arg-type]
        wait_timeout=60,
    )


@dataclass
class Reply:
    status: int
    body: bytes
    seconds: float
    #: Round trips the library had sent on ``client`` when the response started.
    trips_before_start: int
    trips_total: int


async def call(app: Any, key: str | None, client: Any = None) -> Reply:
    """One POST through ``app``; round trips counted on ``client`` (when given) for a
    lone caller (with others in flight the counts mix)."""
    headers = [(b"content-type", b"application/json")]
    if key is not None:
        headers.append((b"idempotency-key", key.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/posts",
        "raw_path": b"/posts",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
        "state": {},
    }
    sent = False
    status = 0
    chunks: list[bytes] = []
    base = client_stats(client).round_trips if client is not None else 0
    at_start = base

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await asyncio.Event().wait()  # never disconnects
        raise AssertionError

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status, at_start
        if message["type"] == "http.response.start":
            status = message["status"]
            if client is not None:
                at_start = client_stats(client).round_trips
        else:
            chunks.append(message.get("body", b""))

    started = time.perf_counter()
    await app(scope, receive, send)
    seconds = time.perf_counter() - started
    total = client_stats(client).round_trips if client is not None else 0
    return Reply(status, b"".join(chunks), seconds, at_start - base, total - base)
