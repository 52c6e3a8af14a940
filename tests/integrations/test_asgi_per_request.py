"""Limits that depend on the request: ``rates``, ``cost``, ``skip`` and ``on_limited`` on
the middleware and the FastAPI dependency, WebSocket messages, and what a bad function
or a spoofed header gets, on every backend."""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import Depends, FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from aiocache_patterns import Rate, RateLimiter, RateLimitResult
from aiocache_patterns.integrations.asgi import (
    ASGIApp,
    Message,
    RateLimitDependency,
    RateLimitedResponse,
    RateLimitMiddleware,
    Receive,
    Scope,
    Send,
    forwarded_ip,
    peer_in,
    rate_limited_handler,
)
from tests._servers import free_port

PEER = ("198.51.100.7", 40000)
INTERNAL = ("10.1.2.3", 40000)
_names = itertools.count()


def _limiter(redis: Any, limit: int = 2, **options: Any) -> RateLimiter:
    namespace = f"rl-req-{next(_names)}"
    return RateLimiter(
        redis, limit=limit, window=60, algorithm="fixed_window", namespace=namespace, **options
    )


def _client(app: ASGIApp, client: tuple[str, int] = PEER) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=client)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def _app(calls: list[str]) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def _plan(scope: Scope) -> Rate | None:
    """A plan from what authentication put in the scope (never from a raw header)."""
    plan = scope.get("state", {}).get("plan")
    return {"pro": Rate(5, 60), "free": Rate(1, 60)}.get(plan) if plan else None


def _with_plan(app: ASGIApp, plan: str | None) -> ASGIApp:
    async def authenticated(scope: Scope, receive: Receive, send: Send) -> None:
        scope = {**scope, "state": {"plan": plan}}
        await app(scope, receive, send)

    return authenticated


# -- rates ---------------------------------------------------------------------------


@pytest.mark.parametrize("is_async", [False, True])
async def test_rates_from_the_request(redis: Any, is_async: bool) -> None:
    calls: list[str] = []

    async def async_plan(scope: Scope) -> Rate | None:
        return _plan(scope)

    limited = RateLimitMiddleware(
        _app(calls), _limiter(redis), rates=async_plan if is_async else _plan
    )
    statuses = {}
    for plan in ("pro", "free", None):
        async with _client(_with_plan(limited, plan)) as client:
            responses = [await client.get("/") for _ in range(6)]
        statuses[plan] = [r.status_code for r in responses]
        assert responses[0].headers["ratelimit-policy"] == (
            f'"default";q={ {"pro": 5, "free": 1, None: 2}[plan] };w=60'
        )
    assert statuses == {
        "pro": [200] * 5 + [429],
        "free": [200] + [429] * 5,  # a quota of its own: not the pro plan's usage
        None: [200] * 2 + [429] * 4,  # None: the limiter's own rates
    }


async def test_several_rates_from_the_request(redis: Any) -> None:
    limited = RateLimitMiddleware(
        _app([]), _limiter(redis), rates=lambda scope: [Rate(3, 60), Rate(2, 1)]
    )
    async with _client(limited) as client:
        responses = [await client.get("/") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]


@pytest.mark.parametrize("returned", ["10/minute", [], [Rate(1, 1), 5], 3, {"limit": 1}], ids=repr)
async def test_rates_of_the_wrong_kind_are_an_error(redis: Any, returned: Any) -> None:
    calls: list[str] = []
    limited = RateLimitMiddleware(_app(calls), _limiter(redis), rates=lambda scope: returned)
    async with _client(limited) as client:
        with pytest.raises(TypeError, match="rates function must return a Rate"):
            await client.get("/")
    assert calls == []  # nothing let through by a bug


async def test_a_raising_function_fails_the_request_and_lets_nothing_through(
    redis: Any,
) -> None:
    calls: list[str] = []

    def broken(scope: Scope) -> Rate:
        raise LookupError("plan service down")

    for option in ("rates", "cost", "skip"):
        options: dict[str, Any] = {option: broken}
        limited = RateLimitMiddleware(_app(calls), _limiter(redis), **options)
        async with _client(limited) as client:
            with pytest.raises(LookupError, match="plan service down"):
                await client.get("/")
    assert calls == []


async def test_limiter_hit_with_rates_counts_each_set_apart(redis: Any) -> None:
    limiter = _limiter(redis, limit=10)
    assert (await limiter.hit("k", rates=Rate(1, 60))).allowed
    assert not (await limiter.hit("k", rates=[Rate(1, 60)])).allowed
    assert (await limiter.hit("k")).remaining == 9  # the limiter's own rates: untouched
    assert (await limiter.peek("k", rates=(Rate(1, 60),))).allowed is False
    await limiter.reset("k", rates=Rate(1, 60))
    assert (await limiter.hit("k", rates=Rate(1, 60))).allowed
    with pytest.raises(TypeError, match="rates"):
        await limiter.hit("k", rates="1/s")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        await limiter.hit("k", rates=[])
    with pytest.raises(ValueError, match="over the limit"):
        await limiter.hit("k", 2, rates=Rate(1, 60))


async def test_per_call_rates_are_bounded_in_memory(redis: Any) -> None:
    limiter = _limiter(redis, limit=10_000)
    for limit in range(1, 600):
        await limiter.peek("k", rates=Rate(limit, 60))
    assert len(limiter._plans) <= 256


# -- cost ----------------------------------------------------------------------------


async def test_cost_from_the_request(redis: Any) -> None:
    async def by_size(scope: Scope) -> int:
        return 3 if scope["path"] == "/bulk" else 1

    limited = RateLimitMiddleware(_app([]), _limiter(redis, limit=5), cost=by_size)
    async with _client(limited) as client:
        bulk = await client.get("/bulk")
        single = await client.get("/one")
        denied = await client.get("/bulk")
    assert bulk.headers["ratelimit"] == '"default";r=2;t=60'
    assert single.headers["ratelimit"] == '"default";r=1;t=60'
    assert denied.status_code == 429


@pytest.mark.parametrize(
    ("returned", "error", "match"),
    [
        ("3", TypeError, "cost function must return an int"),
        (True, TypeError, "cost function must return an int"),
        (1.5, TypeError, "cost function must return an int"),
        (0, ValueError, "positive"),
        (-4, ValueError, "positive"),  # a negative cost must not refill a quota
        (99, ValueError, "over the limit"),
    ],
)
async def test_bad_costs_are_an_error(
    redis: Any, returned: Any, error: type[Exception], match: str
) -> None:
    calls: list[str] = []
    limited = RateLimitMiddleware(_app(calls), _limiter(redis), cost=lambda scope: returned)
    async with _client(limited) as client:
        with pytest.raises(error, match=match):
            await client.get("/")
    assert calls == []


# -- skip ----------------------------------------------------------------------------


async def test_skip_lets_requests_through_unlimited(redis: Any) -> None:
    calls: list[str] = []

    async def health(scope: Scope) -> bool:
        return bool(scope["path"] == "/health")

    limited = RateLimitMiddleware(_app(calls), _limiter(redis, limit=1), skip=health)
    async with _client(limited) as client:
        checks = [await client.get("/health") for _ in range(3)]
        first, second = await client.get("/"), await client.get("/")
    assert [r.status_code for r in checks] == [200] * 3
    assert all("ratelimit" not in r.headers for r in checks)
    assert (first.status_code, second.status_code) == (200, 429)


async def test_skip_must_answer_a_bool(redis: Any) -> None:
    calls: list[str] = []
    limited = RateLimitMiddleware(_app(calls), _limiter(redis), skip=lambda scope: "yes")  # type: ignore[arg-type,return-value]
    async with _client(limited) as client:
        with pytest.raises(TypeError, match="skip function must return a bool"):
            await client.get("/")
    assert calls == []


async def test_a_spoofed_header_gets_around_no_limit(redis: Any) -> None:
    """Internal callers are told by the socket's peer, never by what a client writes."""
    calls: list[str] = []
    limited = RateLimitMiddleware(
        _app(calls), _limiter(redis, limit=1), skip=peer_in(["10.0.0.0/8"])
    )
    spoofed = {"x-forwarded-for": "10.0.0.5", "x-real-ip": "10.0.0.5", "forwarded": "for=10.0.0.5"}
    async with _client(limited) as client:
        responses = [await client.get("/", headers=spoofed) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 429, 429]
    async with _client(limited, client=INTERNAL) as internal:
        inside = [await internal.get("/") for _ in range(3)]
    assert [r.status_code for r in inside] == [200] * 3

    # Keyed by forwarded_ip behind no proxy of ours: rotating the header changes nothing.
    by_forwarding = RateLimitMiddleware(_app([]), _limiter(redis, limit=1), key=forwarded_ip())
    async with _client(by_forwarding) as client:
        rotated = [
            await client.get("/", headers={"x-forwarded-for": f"203.0.113.{i}"}) for i in range(3)
        ]
    assert [r.status_code for r in rotated] == [200, 429, 429]


def test_peer_in_checks_its_networks() -> None:
    with pytest.raises(TypeError, match="networks"):
        peer_in("10.0.0.0/8")
    with pytest.raises(ValueError, match="networks"):
        peer_in(["not-a-network"])
    inside = peer_in(["10.0.0.0/8", "::1"])
    assert inside({"client": ("10.9.9.9", 1)})
    assert inside({"client": ("::1", 1)})
    assert not inside({"client": ("11.0.0.1", 1)})
    assert not inside({"client": None})  # a Unix socket: outside
    assert not inside({"client": ("garbage", 1)})


# -- on_limited ----------------------------------------------------------------------


async def test_on_limited_builds_the_denial_and_the_headers_are_added(redis: Any) -> None:
    seen: list[RateLimitResult] = []

    async def denial(scope: Scope, result: RateLimitResult) -> Response:
        seen.append(result)
        # A Retry-After of its own is replaced by the limiter's.
        return JSONResponse(
            {"error": "slow down", "path": scope["path"]},
            status_code=429,
            headers={"retry-after": "999"},
        )

    limited = RateLimitMiddleware(_app([]), _limiter(redis, limit=1), on_limited=denial)
    async with _client(limited) as client:
        await client.get("/")
        denied = await client.get("/x")
    assert denied.status_code == 429
    assert denied.json() == {"error": "slow down", "path": "/x"}
    assert denied.headers["ratelimit"] == '"default";r=0;t=60'
    assert denied.headers.get_list("retry-after") == [str(int(seen[0].retry_after + 0.999))]
    assert not seen[0].allowed


async def test_on_limited_sees_a_denial_made_without_redis(redis: Any) -> None:
    dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.2)
    limiter = RateLimiter(dead, limit=5, window=60, fail_open=False, timeout=0.3)

    def denial(scope: Scope, result: RateLimitResult) -> Response:
        return PlainTextResponse("busy", status_code=503 if result.degraded else 429)

    limited = RateLimitMiddleware(_app([]), limiter, on_limited=denial)
    async with _client(limited) as client:
        response = await client.get("/")
    assert (response.status_code, response.text) == (503, "busy")
    assert "ratelimit" not in response.headers  # unknown quota: none advertised
    assert response.headers["retry-after"] == "1"
    await dead.aclose()


async def test_on_limited_must_return_an_asgi_response(redis: Any) -> None:
    limited = RateLimitMiddleware(
        _app([]),
        _limiter(redis, limit=1),
        on_limited=lambda scope, result: "429!",  # type: ignore[arg-type,return-value]
    )
    async with _client(limited) as client:
        await client.get("/")
        with pytest.raises(TypeError, match="on_limited must return an ASGI response"):
            await client.get("/")


@pytest.mark.parametrize("option", ["rates", "skip", "on_limited", "cost"])
def test_functions_are_checked_at_construction(option: str) -> None:
    limiter = RateLimiter(aioredis.Redis(), limit=1, window=1)
    with pytest.raises((TypeError, ValueError), match=option):
        options: dict[str, Any] = {option: "nope"}
        RateLimitMiddleware(_app([]), limiter, **options)
    with pytest.raises(TypeError, match="message_limiter"):
        RateLimitMiddleware(_app([]), limiter, message_limiter=object())  # type: ignore[arg-type]


# -- WebSocket messages ----------------------------------------------------------------


class _Socket:
    """The server side of one WebSocket: what the client sends, what the app sent."""

    def __init__(self, messages: int) -> None:
        self.incoming: list[Message] = [{"type": "websocket.connect"}]
        self.incoming += [{"type": "websocket.receive", "text": f"m{i}"} for i in range(messages)]
        self.incoming.append({"type": "websocket.disconnect", "code": 1000})
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        return self.incoming.pop(0)

    async def send(self, message: Message) -> None:
        self.sent.append(message)


def _echo(received: list[Message]) -> ASGIApp:
    """Accepts, then echoes every message until the client goes."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "websocket"
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            received.append(message)
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message["text"]})

    return app


def _ws_scope(client: tuple[str, int] = PEER) -> Scope:
    return {"type": "websocket", "path": "/ws", "headers": [], "client": client}


async def test_websocket_messages_are_limited(redis: Any) -> None:
    received: list[Message] = []
    connections = _limiter(redis, limit=5)
    app = RateLimitMiddleware(
        _echo(received), connections, message_limiter=_limiter(redis, limit=3)
    )
    socket = _Socket(messages=6)
    await app(_ws_scope(), socket.receive, socket.send)
    assert [m.get("text") for m in socket.sent if m["type"] == "websocket.send"] == [
        "m0",
        "m1",
        "m2",
    ]
    assert {"type": "websocket.close", "code": 1008, "reason": "rate limited"} in socket.sent
    assert received[-1] == {"type": "websocket.disconnect", "code": 1008}
    assert connections.stats.allowed == 0  # connection attempts are not limited unless asked

    # The quota is the client's, not the connection's: a new connection has none left.
    again = _Socket(messages=1)
    received.clear()
    await app(_ws_scope(), again.receive, again.send)
    assert [m["type"] for m in again.sent] == ["websocket.accept", "websocket.close"]
    # Another client has its own.
    other = _Socket(messages=2)
    await app(_ws_scope(("198.51.100.99", 1)), other.receive, other.send)
    assert [m.get("text") for m in other.sent if m["type"] == "websocket.send"] == ["m0", "m1"]


async def test_websocket_connections_and_messages_together(redis: Any) -> None:
    app = RateLimitMiddleware(
        _echo([]),
        _limiter(redis, limit=1),
        websockets=True,
        message_limiter=_limiter(redis, limit=10),
    )
    first, second = _Socket(messages=2), _Socket(messages=2)
    await app(_ws_scope(), first.receive, first.send)
    await app(_ws_scope(), second.receive, second.send)
    assert first.sent[0]["type"] == "websocket.accept"
    assert second.sent == [{"type": "websocket.close", "code": 1008, "reason": "rate limited"}]


# -- the FastAPI dependency --------------------------------------------------------------


def _fastapi(limit: RateLimitDependency, *, handler: bool) -> FastAPI:
    app = FastAPI()
    if handler:
        app.add_exception_handler(RateLimitedResponse, rate_limited_handler)

    @app.get("/items")
    async def items(
        result: RateLimitResult | None = Depends(limit),  # noqa: B008 (the FastAPI idiom)
    ) -> dict[str, int | None]:
        return {"remaining": None if result is None else result.remaining}

    return app


async def test_dependency_rates_cost_and_skip_from_the_request(redis: Any) -> None:
    async def plan(request: Request) -> Rate:
        return Rate(4, 60) if request.query_params.get("tier") == "pro" else Rate(1, 60)

    limit = RateLimitDependency(
        _limiter(redis),
        rates=plan,
        cost=lambda request: int(request.query_params.get("n", "1")),
        skip=lambda request: request.query_params.get("probe") == "1",
    )
    async with _client(_fastapi(limit, handler=False)) as client:
        pro = await client.get("/items", params={"tier": "pro", "n": "3"})
        pro_denied = await client.get("/items", params={"tier": "pro", "n": "2"})
        free = await client.get("/items")
        free_denied = await client.get("/items")
        probes = [await client.get("/items", params={"probe": "1"}) for _ in range(3)]
    assert pro.json() == {"remaining": 1}
    assert pro.headers["ratelimit-policy"] == '"default";q=4;w=60'
    assert pro_denied.status_code == 429
    assert (free.status_code, free_denied.status_code) == (200, 429)
    assert [p.json() for p in probes] == [{"remaining": None}] * 3


async def test_dependency_on_limited_with_and_without_the_handler(redis: Any) -> None:
    def denial(request: Request, result: RateLimitResult) -> Response:
        return JSONResponse({"error": "quota", "retry": result.retry_after > 0}, status_code=429)

    for handler in (True, False):
        limit = RateLimitDependency(_limiter(redis, limit=1), on_limited=denial)
        async with _client(_fastapi(limit, handler=handler)) as client:
            await client.get("/items")
            denied = await client.get("/items")
        assert denied.status_code == 429
        assert denied.headers["ratelimit"] == '"default";r=0;t=60'
        assert "retry-after" in denied.headers
        body = json.loads(denied.content)
        if handler:
            assert body == {"error": "quota", "retry": True}
        else:  # FastAPI's answer to any HTTPException: still 429, still the headers
            assert body == {"detail": "Too Many Requests"}


async def test_dependency_refuses_bad_functions(redis: Any) -> None:
    limit = RateLimitDependency(
        _limiter(redis, limit=1),
        on_limited=lambda request, result: {"error": 1},  # type: ignore[arg-type,return-value]
    )
    async with _client(_fastapi(limit, handler=True)) as client:
        await client.get("/items")
        with pytest.raises(TypeError, match="on_limited must return a starlette Response"):
            await client.get("/items")
    limit = RateLimitDependency(_limiter(redis), rates=lambda request: "lots")  # type: ignore[arg-type,return-value]
    async with _client(_fastapi(limit, handler=True)) as client:
        with pytest.raises(TypeError, match="rates function"):
            await client.get("/items")
    with pytest.raises(TypeError, match="skip"):
        RateLimitDependency(_limiter(redis), skip=3)  # type: ignore[arg-type]


async def test_rate_limited_handler_refuses_other_exceptions() -> None:
    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    with pytest.raises(TypeError, match="RateLimitedResponse"):
        await rate_limited_handler(Request(scope), ValueError("x"))
