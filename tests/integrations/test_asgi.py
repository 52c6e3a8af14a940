"""ASGI integration: the middleware (Starlette and a raw ASGI app) and the FastAPI
dependency, driven through httpx's ASGI transport on every backend."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any, get_args

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aiocache_patterns import Algorithm, RateLimiter, RateLimitResult
from aiocache_patterns.integrations.asgi import (
    UNKNOWN_CLIENT,
    ASGIApp,
    Message,
    RateLimitDependency,
    RateLimitMiddleware,
    Receive,
    Scope,
    Send,
    client_ip,
    forwarded_ip,
)
from tests._helpers import all_keys
from tests._servers import free_port

RATELIMIT = re.compile(r'"(?P<policy>[^"]+)";r=(?P<r>\d+);t=(?P<t>\d+)')
POLICY = re.compile(r'"(?P<policy>[^"]+)";q=(?P<q>\d+);w=(?P<w>\d+)')
ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)
PEER = ("198.51.100.7", 40000)
PROXY = ("10.0.0.1", 40000)
HEADERS = ("ratelimit", "ratelimit-policy", "retry-after")
#: The middleware's 429 body: an RFC 9457 problem (with FastAPI's ``detail`` too).
PROBLEM_429 = {
    "type": "about:blank",
    "title": "Too Many Requests",
    "status": 429,
    "detail": "Too Many Requests",
}


def _client(app: ASGIApp, client: tuple[str, int] = PEER) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=client)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def _raw_app(calls: list[str]) -> ASGIApp:
    """A bare ASGI app (no framework): 200, a JSON body, one header of its own."""
    start_headers = [(b"content-type", b"application/json"), (b"x-app", b"1")]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(f"{scope['type']}:{scope.get('path', '')}")
        if scope["type"] == "http":
            # the same list every time: a middleware that mutates it would duplicate headers
            await send({"type": "http.response.start", "status": 200, "headers": start_headers})
            await send({"type": "http.response.body", "body": b'{"ok": true}'})
        elif scope["type"] == "websocket":
            await send({"type": "websocket.accept", "headers": []})
            await send({"type": "websocket.close", "code": 1000})

    return app


def _starlette_app(calls: list[str], **middleware: Any) -> Starlette:
    async def endpoint(request: Request) -> JSONResponse:
        calls.append(f"http:{request.url.path}")
        return JSONResponse({"ok": True}, headers={"x-app": "1"})

    paths = ("/", "/public", "/health")
    return Starlette(
        routes=[Route(path, endpoint, methods=["GET", "OPTIONS"]) for path in paths],
        middleware=[Middleware(RateLimitMiddleware, **middleware)],
    )


AppFactory = Callable[..., ASGIApp]


@pytest.fixture(params=["starlette", "raw"])
def make_app(request: pytest.FixtureRequest) -> AppFactory:
    """Builds the limited app, as Starlette middleware or wrapping a raw ASGI app."""

    def make(calls: list[str], limiter: RateLimiter, **options: Any) -> ASGIApp:
        if request.param == "starlette":
            return _starlette_app(calls, limiter=limiter, **options)
        return RateLimitMiddleware(_raw_app(calls), limiter, **options)

    return make


def _limit_header(response: httpx.Response) -> dict[str, str]:
    """The RateLimit fields, each present exactly once and in the draft's format."""
    assert response.headers.get_list("ratelimit") == [response.headers["ratelimit"]]
    assert response.headers.get_list("ratelimit-policy") == [response.headers["ratelimit-policy"]]
    match = RATELIMIT.fullmatch(response.headers["ratelimit"])
    assert match is not None, response.headers["ratelimit"]
    policy = POLICY.fullmatch(response.headers["ratelimit-policy"])
    assert policy is not None, response.headers["ratelimit-policy"]
    assert policy["policy"] == match["policy"]
    return {**match.groupdict(), **policy.groupdict()}


# -- the middleware ----------------------------------------------------------------


async def test_middleware_counts_down_then_answers_429(redis: Any, make_app: AppFactory) -> None:
    calls: list[str] = []
    limiter = RateLimiter(redis, limit=3, window=60, algorithm="fixed_window")
    app = make_app(calls, limiter, policy="api")
    async with _client(app) as client:
        allowed = [await client.get("/") for _ in range(3)]
        denied = await client.get("/")

    for remaining, response in zip((2, 1, 0), allowed, strict=True):
        assert response.status_code == 200
        assert response.json() == {"ok": True}
        assert response.headers["x-app"] == "1"  # the app's own headers are kept
        assert response.headers["ratelimit-policy"] == '"api";q=3;w=60'
        fields = _limit_header(response)
        assert fields["r"] == str(remaining)
        assert 59 <= int(fields["t"]) <= 60  # the fixed window ends 60 s after the first hit
        assert "retry-after" not in response.headers
    assert denied.status_code == 429
    assert denied.headers["content-type"] == "application/problem+json"
    assert denied.json() == PROBLEM_429
    assert denied.headers["ratelimit-policy"] == '"api";q=3;w=60'
    assert _limit_header(denied)["r"] == "0"
    assert 59 <= int(denied.headers["retry-after"]) <= 60
    assert "x-app" not in denied.headers
    assert calls == ["http:/"] * 3  # the denied request never reached the app


@pytest.fixture(params=ALGORITHMS)
def algorithm(request: pytest.FixtureRequest) -> Algorithm:
    name: Algorithm = request.param
    return name


async def test_every_algorithm_through_the_middleware(redis: Any, algorithm: Algorithm) -> None:
    calls: list[str] = []
    limiter = RateLimiter(redis, limit=4, window=30, algorithm=algorithm)
    async with _client(RateLimitMiddleware(_raw_app(calls), limiter)) as client:
        responses = [await client.get("/") for _ in range(5)]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 429]
    assert [int(_limit_header(r)["r"]) for r in responses] == [3, 2, 1, 0, 0]
    assert all(r.headers["ratelimit-policy"] == '"default";q=4;w=30' for r in responses)
    assert all(0 < int(_limit_header(r)["t"]) <= 60 for r in responses)
    retry = int(responses[-1].headers["retry-after"])
    assert 0 < retry <= 60
    assert len(calls) == 4


async def test_concurrent_requests_admit_exactly_the_limit(redis: Any) -> None:
    calls: list[str] = []
    limiter = RateLimiter(redis, limit=10, window=60, algorithm="sliding_log")
    async with _client(RateLimitMiddleware(_raw_app(calls), limiter)) as client:
        responses = await asyncio.gather(*(client.get("/") for _ in range(40)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 10 + [429] * 30
    assert len(calls) == 10
    assert sorted(int(_limit_header(r)["r"]) for r in responses if r.status_code == 200) == list(
        range(10)
    )
    assert all(int(r.headers["retry-after"]) > 0 for r in responses if r.status_code == 429)


async def test_forwarded_for_is_not_trusted_by_default(redis: Any, make_app: AppFactory) -> None:
    calls: list[str] = []
    app = make_app(calls, RateLimiter(redis, limit=1, window=60))
    async with _client(app, client=PEER) as client:
        first = await client.get("/", headers={"x-forwarded-for": "203.0.113.1"})
        spoofed = await client.get("/", headers={"x-forwarded-for": "203.0.113.2"})
        plain = await client.get("/")
    async with _client(app, client=("198.51.100.8", 1)) as other:
        # claiming to be the first peer neither spends its quota nor escapes one's own
        impostor = await other.get("/", headers={"x-forwarded-for": PEER[0]})
    assert [first.status_code, spoofed.status_code, plain.status_code] == [200, 429, 429]
    assert impostor.status_code == 200


async def test_forwarded_ip_takes_the_right_most_untrusted_hop(
    redis: Any, make_app: AppFactory
) -> None:
    calls: list[str] = []
    app = make_app(calls, RateLimiter(redis, limit=1, window=60), key=forwarded_ip(trusted_hops=1))
    async with _client(app, client=PROXY) as proxy:
        first = await proxy.get("/", headers={"x-forwarded-for": "6.6.6.6, 203.0.113.5"})
        # the client controls everything left of what the proxy appended
        rewritten = await proxy.get("/", headers={"x-forwarded-for": "7.7.7.7, 203.0.113.5"})
        bare = await proxy.get("/", headers={"x-forwarded-for": "203.0.113.5"})
        other = await proxy.get("/", headers={"x-forwarded-for": "203.0.113.9"})
        no_header = await proxy.get("/")  # not forwarded: the peer is the client
        no_header_again = await proxy.get("/")
    statuses = [r.status_code for r in (first, rewritten, bare, other, no_header, no_header_again)]
    assert statuses == [200, 429, 429, 200, 200, 429]


async def test_forwarded_ip_with_trusted_proxies(redis: Any, make_app: AppFactory) -> None:
    calls: list[str] = []
    key = forwarded_ip(trusted_proxies=["10.0.0.0/8", "2001:db8::/32"])
    app = make_app(calls, RateLimiter(redis, limit=1, window=60), key=key)
    async with _client(app, client=PROXY) as proxy:
        chain = await proxy.get(
            "/", headers={"x-forwarded-for": "1.1.1.1, 198.51.100.7, 10.0.0.5"}
        )
        same = await proxy.get("/", headers={"x-forwarded-for": "2.2.2.2, 198.51.100.7, 10.9.9.9"})
    async with _client(app, client=("203.0.113.50", 1)) as direct:
        # not a trusted proxy: its X-Forwarded-For is ignored, it is the client
        direct_1 = await direct.get("/", headers={"x-forwarded-for": "198.51.100.99"})
        direct_2 = await direct.get("/", headers={"x-forwarded-for": "198.51.100.100"})
    statuses = [r.status_code for r in (chain, same, direct_1, direct_2)]
    assert statuses == [200, 429, 200, 429]


async def test_key_none_is_not_limited_and_async_keys_work(
    redis: Any, make_app: AppFactory
) -> None:
    calls: list[str] = []

    async def api_key(scope: Scope) -> str | None:
        await asyncio.sleep(0)
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                return f"key:{value.decode()}"
        return None

    limiter = RateLimiter(redis, limit=2, window=60)
    async with _client(make_app(calls, limiter, key=api_key)) as client:
        anonymous = [await client.get("/public") for _ in range(4)]
        alice = [await client.get("/", headers={"x-api-key": "alice"}) for _ in range(3)]
        bob = await client.get("/", headers={"x-api-key": "bob"})
    assert [r.status_code for r in anonymous] == [200] * 4
    assert all(h not in r.headers for r in anonymous for h in HEADERS)
    assert [r.status_code for r in alice] == [200, 200, 429]
    assert bob.status_code == 200
    assert len(calls) == 7


async def test_exempt_paths_and_predicates(redis: Any, make_app: AppFactory) -> None:
    calls: list[str] = []
    limiter = RateLimiter(redis, limit=1, window=60)
    async with _client(make_app(calls, limiter, exempt={"/health"})) as client:
        statuses = [(await client.get(p)).status_code for p in ("/", "/", "/health", "/health")]
        assert "ratelimit" not in (await client.get("/health")).headers
    assert statuses == [200, 429, 200, 200]

    def preflight(scope: Scope) -> bool:
        return bool(scope["method"] == "OPTIONS")

    other = RateLimiter(redis, limit=1, window=60, namespace="other")
    async with _client(make_app(calls, other, exempt=preflight)) as client:
        options = [(await client.options("/")).status_code for _ in range(3)]
        gets = [(await client.get("/")).status_code for _ in range(2)]
    assert options == [200, 200, 200]
    assert gets == [200, 429]


async def test_bytes_keys_and_key_function_errors(redis: Any) -> None:
    calls: list[str] = []
    limiter = RateLimiter(redis, limit=1, window=60)

    def raw_path(scope: Scope) -> bytes:
        path: bytes = scope["raw_path"]
        return path

    async with _client(RateLimitMiddleware(_raw_app(calls), limiter, key=raw_path)) as client:
        assert [(await client.get("/a")).status_code for _ in range(2)] == [200, 429]
        assert (await client.get("/b")).status_code == 200

    def wrong(scope: Scope) -> Any:
        return 42

    app = RateLimitMiddleware(_raw_app(calls), limiter, key=wrong)
    async with _client(app) as client:
        with pytest.raises(TypeError, match="key function"):
            await client.get("/")


# -- other scope types -------------------------------------------------------------


class _Recorder:
    """A fake server side of one ASGI connection."""

    def __init__(self, *incoming: Message) -> None:
        self.incoming = list(incoming)
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        return self.incoming.pop(0) if self.incoming else {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)


def _ws_scope(extensions: dict[str, Any] | None = None) -> Scope:
    return {
        "type": "websocket",
        "path": "/ws",
        "raw_path": b"/ws",
        "headers": [],
        "client": PEER,
        "extensions": extensions or {},
    }


async def test_lifespan_and_websockets_pass_through_by_default(redis: Any) -> None:
    calls: list[str] = []
    limiter = RateLimiter(redis, limit=1, window=60)
    app = RateLimitMiddleware(_raw_app(calls), limiter)
    for _ in range(3):
        await app({"type": "lifespan"}, _Recorder().receive, _Recorder().send)
        ws = _Recorder({"type": "websocket.connect"})
        await app(_ws_scope(), ws.receive, ws.send)
        assert ws.sent[0] == {"type": "websocket.accept", "headers": []}
    assert calls == ["lifespan:", "websocket:/ws"] * 3
    assert await all_keys(redis) == []  # nothing was counted
    assert limiter.stats.allowed == 0


async def test_websocket_connections_limited_when_asked(redis: Any) -> None:
    calls: list[str] = []
    limiter = RateLimiter(redis, limit=1, window=60, algorithm="fixed_window")
    app = RateLimitMiddleware(_raw_app(calls), limiter, websockets=True)

    accepted = _Recorder({"type": "websocket.connect"})
    await app(_ws_scope(), accepted.receive, accepted.send)
    accept = accepted.sent[0]
    assert accept["type"] == "websocket.accept"
    headers = dict(accept["headers"])
    assert headers[b"ratelimit"] == b'"default";r=0;t=60'
    assert headers[b"ratelimit-policy"] == b'"default";q=1;w=60'

    refused = _Recorder({"type": "websocket.connect"})
    await app(_ws_scope(), refused.receive, refused.send)
    assert refused.sent == [{"type": "websocket.close", "code": 1008, "reason": "rate limited"}]

    # a server offering the denial-response extension gets a real 429
    answered = _Recorder({"type": "websocket.connect"})
    await app(_ws_scope({"websocket.http.response": {}}), answered.receive, answered.send)
    start, body = answered.sent
    assert start["type"] == "websocket.http.response.start"
    assert start["status"] == 429
    assert int(dict(start["headers"])[b"retry-after"]) > 0
    assert json.loads(body["body"]) == PROBLEM_429
    assert calls == ["websocket:/ws"]


# -- the FastAPI dependency --------------------------------------------------------


def _fastapi_app(limit: RateLimitDependency) -> FastAPI:
    app = FastAPI()

    @app.post("/login")
    async def login(
        result: RateLimitResult | None = Depends(limit),  # noqa: B008 (the FastAPI idiom)
    ) -> dict[str, int | None]:
        return {"remaining": None if result is None else result.remaining}

    @app.get("/free")
    async def free() -> dict[str, bool]:
        return {"ok": True}

    return app


async def test_fastapi_dependency(redis: Any) -> None:
    limiter = RateLimiter(redis, limit=2, window=60, algorithm="fixed_window")
    app = _fastapi_app(RateLimitDependency(limiter, policy="login"))
    async with _client(app) as client:
        allowed = [await client.post("/login") for _ in range(2)]
        denied = await client.post("/login")
        free = [await client.get("/free") for _ in range(4)]
    async with _client(app, client=("198.51.100.8", 1)) as other:
        elsewhere = await other.post("/login")

    assert [r.status_code for r in allowed] == [200, 200]
    assert [r.json() for r in allowed] == [{"remaining": 1}, {"remaining": 0}]
    for remaining, response in zip((1, 0), allowed, strict=True):
        assert response.headers["ratelimit-policy"] == '"login";q=2;w=60'
        assert _limit_header(response)["r"] == str(remaining)
        assert "retry-after" not in response.headers
    assert denied.status_code == 429
    assert denied.json() == {"detail": "Too Many Requests"}
    assert denied.headers["ratelimit-policy"] == '"login";q=2;w=60'
    assert _limit_header(denied)["r"] == "0"
    assert 59 <= int(denied.headers["retry-after"]) <= 60
    assert [r.status_code for r in free] == [200] * 4
    assert all(h not in r.headers for r in free for h in HEADERS)
    assert elsewhere.status_code == 200  # keyed by the peer address


async def test_fastapi_dependency_with_forwarded_and_none_keys(redis: Any) -> None:
    limiter = RateLimiter(redis, limit=1, window=60)
    forwarded = _fastapi_app(RateLimitDependency(limiter, key=forwarded_ip()))
    async with _client(forwarded, client=PROXY) as proxy:
        a = await proxy.post("/login", headers={"x-forwarded-for": "203.0.113.5"})
        b = await proxy.post("/login", headers={"x-forwarded-for": "1.1.1.1, 203.0.113.5"})
        c = await proxy.post("/login", headers={"x-forwarded-for": "203.0.113.6"})
    assert [a.status_code, b.status_code, c.status_code] == [200, 429, 200]

    async def nobody(request: Request) -> None:
        return None

    unlimited = _fastapi_app(RateLimitDependency(limiter, key=nobody))
    async with _client(unlimited) as client:
        responses = [await client.post("/login") for _ in range(3)]
    assert [r.json() for r in responses] == [{"remaining": None}] * 3
    assert all("ratelimit" not in r.headers for r in responses)


# -- Redis down ----------------------------------------------------------------------


@pytest.mark.parametrize("fail_open", [True, False])
async def test_redis_down_follows_fail_open(fail_open: bool) -> None:
    dead = aioredis.Redis(port=free_port())
    limiter = RateLimiter(dead, limit=1, window=60, fail_open=fail_open, timeout=0.3)
    calls: list[str] = []
    middleware = RateLimitMiddleware(_raw_app(calls), limiter)
    api = _fastapi_app(RateLimitDependency(limiter))
    try:
        async with _client(middleware) as client, _client(api) as api_client:
            responses = [await client.get("/") for _ in range(3)]
            responses += [await api_client.post("/login") for _ in range(2)]
    finally:
        await dead.aclose()
    assert limiter.stats.errors == 5
    # the quota is unknown: no RateLimit fields either way
    assert all("ratelimit" not in r.headers for r in responses)
    assert all("ratelimit-policy" not in r.headers for r in responses)
    if fail_open:
        assert [r.status_code for r in responses] == [200] * 5
        assert all("retry-after" not in r.headers for r in responses)
        assert len(calls) == 3
        assert [r.json() for r in responses[3:]] == [{"remaining": 0}] * 2
    else:
        assert [r.status_code for r in responses] == [503] * 5
        assert all(r.headers["retry-after"] == "1" for r in responses)
        detail = {"detail": "Service Unavailable"}
        problem = {"type": "about:blank", "title": "Service Unavailable", "status": 503} | detail
        assert [r.json() for r in responses] == [problem] * 3 + [detail] * 2
        assert calls == []


# -- key functions and arguments -------------------------------------------------------


def _scope(client: tuple[str, int] | None, *forwarded: bytes) -> Scope:
    return {
        "type": "http",
        "client": client,
        "headers": [(b"x-forwarded-for", value) for value in forwarded],
    }


def test_client_ip_normalises_and_ignores_headers() -> None:
    assert client_ip(_scope(("::ffff:10.0.0.1", 1), b"1.2.3.4")) == "10.0.0.1"
    assert client_ip(_scope(("2001:DB8:0:0::1", 1))) == "2001:db8::/64"  # a client's /64
    assert client_ip(_scope(("testclient", 50000))) == "testclient"
    assert client_ip(_scope(None, b"1.2.3.4")) == UNKNOWN_CLIENT
    assert client_ip({"type": "http"}) == UNKNOWN_CLIENT
    # a Starlette Request is a mapping over its scope
    assert client_ip(Request(_scope(("192.0.2.1", 1)))) == "192.0.2.1"


def test_forwarded_ip_reads_the_chain_from_the_right() -> None:
    scope = _scope(PROXY, b"1.1.1.1", b"2.2.2.2 , 3.3.3.3")  # two header lines
    assert forwarded_ip()(scope) == "3.3.3.3"
    assert forwarded_ip(2)(scope) == "2.2.2.2"
    assert forwarded_ip(3)(scope) == "1.1.1.1"
    assert forwarded_ip(9)(scope) == "1.1.1.1"  # a short chain: its left-most entry
    assert forwarded_ip()(_scope(PROXY)) == PROXY[0]
    assert forwarded_ip()(_scope(PROXY, b"[2001:db8::1]:443")) == "2001:db8::/64"
    assert forwarded_ip()(_scope(PROXY, b"203.0.113.7:5123")) == "203.0.113.7"
    assert forwarded_ip()(_scope(PROXY, b"1.1.1.1, ::ffff:203.0.113.7")) == "203.0.113.7"

    trusted = forwarded_ip(trusted_proxies=["10.0.0.0/8", "192.0.2.1"])
    assert trusted(_scope(PROXY, b"1.1.1.1, 5.5.5.5, 192.0.2.1, 10.1.1.1")) == "5.5.5.5"
    assert trusted(_scope(("8.8.8.8", 1), b"1.1.1.1")) == "8.8.8.8"
    assert trusted(_scope(PROXY, b"unknown")) == "unknown"
    # all ours: the address the peer saw (the entries left of it may be a client's)
    assert trusted(_scope(PROXY, b"10.0.0.2, 10.0.0.3")) == "10.0.0.3"
    assert trusted(Request(_scope(PROXY, b"4.4.4.4"))) == "4.4.4.4"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"trusted_hops": 0}, ValueError, "trusted_hops"),
        ({"trusted_hops": 1.5}, TypeError, "trusted_hops"),
        ({"trusted_hops": 33}, ValueError, "trusted_hops"),
        ({"header": "x-client-ip"}, ValueError, "header"),
        ({"ipv6_prefix": 0}, ValueError, "ipv6_prefix"),
        ({"ipv6_prefix": 129}, ValueError, "ipv6_prefix"),
        ({"ipv4_prefix": 33}, ValueError, "ipv4_prefix"),
        ({"trusted_proxies": "10.0.0.1"}, TypeError, "trusted_proxies"),
        ({"trusted_proxies": []}, ValueError, "trusted_proxies"),
        ({"trusted_proxies": ["10.0.0.300"]}, ValueError, "trusted_proxies"),
        ({"trusted_proxies": [10]}, TypeError, "trusted_proxies"),
    ],
)
def test_forwarded_ip_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        forwarded_ip(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"limiter": "redis"}, TypeError, "limiter"),
        ({"cost": 0}, ValueError, "cost"),
        ({"cost": -1}, ValueError, "cost"),
        ({"cost": 1.5}, TypeError, "cost"),
        ({"cost": 11}, ValueError, "cost"),
        ({"key": "client"}, TypeError, "key"),
        ({"policy": ""}, ValueError, "policy"),
        ({"policy": "caf\u00e9"}, ValueError, "policy"),
        ({"policy": 'a"\n'}, ValueError, "policy"),
        ({"policy": 5}, TypeError, "policy"),
        ({"exempt": "/health"}, TypeError, "exempt"),
        ({"exempt": [b"/health"]}, TypeError, "exempt"),
        ({"exempt": 5}, TypeError, "exempt"),
        ({"websockets": 1}, TypeError, "websockets"),
    ],
)
def test_bad_arguments(
    redis: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    limiter = RateLimiter(redis, limit=10, window=60)
    options = {"limiter": limiter, **kwargs}
    with pytest.raises(error, match=match):
        RateLimitMiddleware(_raw_app([]), **options)
    if "exempt" in kwargs or "websockets" in kwargs:
        return
    with pytest.raises(error, match=match):
        RateLimitDependency(**options)


def test_app_must_be_callable(redis: Any) -> None:
    with pytest.raises(TypeError, match="app"):
        RateLimitMiddleware("app", RateLimiter(redis, limit=1, window=1))  # type: ignore[arg-type]
