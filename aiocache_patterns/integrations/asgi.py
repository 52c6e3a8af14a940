"""Rate limiting for ASGI apps: a middleware for any ASGI app, a FastAPI dependency.

[`RateLimitMiddleware`][aiocache_patterns.integrations.asgi.RateLimitMiddleware]
wraps any ASGI application (Starlette, FastAPI, Quart, a bare callable) and
works on the raw ``scope``/``receive``/``send``, so it imports no framework.
Each HTTP request is one hit of a [`RateLimiter`][aiocache_patterns.RateLimiter]:
allowed requests get the IETF draft's ``RateLimit`` and ``RateLimit-Policy``
headers added to the app's response;
denied ones are answered ``429`` with ``Retry-After``, the same two headers
and an RFC 9457 problem document (``application/problem+json``), without
calling the app.

[`RateLimitDependency`][aiocache_patterns.integrations.asgi.RateLimitDependency]
is the same decision as a FastAPI dependency, for one route or one router (it
needs Starlette, which FastAPI brings).

Whom to count is a *key function*: it gets the ASGI scope (the dependency's
gets the ``Request``, which is a mapping over the same scope) and returns a
``str``/``bytes`` key, or ``None`` to leave the request unlimited. It may be
``async``. The default,
[`client_ip`][aiocache_patterns.integrations.asgi.client_ip], is the
connection's peer address (IPv6 grouped by /64;
[`peer_ip`][aiocache_patterns.integrations.asgi.peer_ip] for other prefixes);
forwarding headers (``X-Forwarded-For``, ``Forwarded``, ``X-Real-IP``) are
read only by [`forwarded_ip`][aiocache_patterns.integrations.asgi.forwarded_ip],
only from a peer that is one of your proxies, and only as far as your proxies
wrote them. See docs/rate-limiting.md and
docs/security.md.

When Redis cannot be asked, the limiter's ``fail_open`` decides and the result
is ``degraded``: an allowed request passes *without* ``RateLimit`` headers (the
quota is unknown, so none is advertised); a denied one is answered ``503``
with ``Retry-After`` (the server, not the client, is at fault).
"""

from __future__ import annotations

import http
import inspect
import json
import math
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from .._validate import positive_int
from ..ratelimit._limiter import RateLimiter, RateLimitResult
from ._client_keys import (
    DEFAULT_TRUSTED_PROXIES,
    MAX_CHAIN,
    UNKNOWN_CLIENT,
    ForwardingHeader,
    client_ip,
    forwarded_ip,
    peer_ip,
)
from ._idempotency import IdempotencyMiddleware

try:  # Starlette is optional: only RateLimitDependency needs it.
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import Response
except ImportError:  # pragma: no cover - exercised only without starlette installed
    if not TYPE_CHECKING:
        HTTPException = Request = Response = None

__all__ = [
    "DEFAULT_TRUSTED_PROXIES",
    "MAX_CHAIN",
    "UNKNOWN_CLIENT",
    "ASGIApp",
    "ForwardingHeader",
    "IdempotencyMiddleware",
    "Key",
    "KeyFunc",
    "Message",
    "RateLimitDependency",
    "RateLimitMiddleware",
    "Receive",
    "Scope",
    "Send",
    "client_ip",
    "forwarded_ip",
    "peer_ip",
]

#: An ASGI connection scope (``scope["type"]`` is ``"http"``, ``"websocket"``, ...).
Scope: TypeAlias = MutableMapping[str, Any]
#: An ASGI event, received or sent.
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
#: Any ASGI 3 application.
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
#: What a key function returns: the key to count the request under, or None (not limited).
Key: TypeAlias = "str | bytes | None"
#: A key function of the middleware: the ASGI scope in, a ``Key`` out (maybe awaited).
KeyFunc: TypeAlias = Callable[[Scope], "Key | Awaitable[Key]"]

_PROBLEM_JSON: Final = (b"content-type", b"application/problem+json")


# -- key functions (in _client_keys) ------------------------------------------------


async def _resolve(key: Callable[[Any], Key | Awaitable[Key]], arg: Any) -> Key:
    found = key(arg)
    if inspect.isawaitable(found):
        found = await found
    if found is None or isinstance(found, (str, bytes)):
        return found
    raise TypeError(f"the key function must return str, bytes or None, not {type(found).__name__}")


# -- shared checks and responses ---------------------------------------------------


def _check(limiter: object, key: object, cost: object, policy: object) -> tuple[int, str]:
    if not isinstance(limiter, RateLimiter):
        raise TypeError(f"limiter must be a RateLimiter, not {type(limiter).__name__}")
    if not callable(key):
        raise TypeError(f"key must be callable, not {type(key).__name__}")
    value = positive_int(cost, "cost")
    smallest = min(rate.limit for rate in limiter.rates)
    if value > smallest:
        raise ValueError(f"cost {value} is over the limit {smallest}: it could never pass")
    if not isinstance(policy, str):
        raise TypeError(f"policy must be str, not {type(policy).__name__}")
    if not policy or not all(" " <= ch <= "~" for ch in policy):
        raise ValueError(f"policy must be non-empty printable ASCII, not {policy!r}")
    return value, policy


def _limit_headers(result: RateLimitResult, policy: str) -> dict[str, str]:
    """The headers a response carries: none when allowed without Redis (quota unknown),
    only ``Retry-After`` when denied without Redis."""
    if not result.degraded:
        return result.headers(policy)
    if result.allowed:
        return {}
    return {"Retry-After": str(max(1, math.ceil(result.retry_after)))}


def _denial_status(result: RateLimitResult) -> int:
    return 503 if result.degraded else 429


def _encode(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


# -- the middleware -----------------------------------------------------------------


class RateLimitMiddleware:
    """Rate-limit every HTTP request of an ASGI app.

    >>> app = RateLimitMiddleware(app, RateLimiter(redis, limit=100, window=60))  # doctest: +SKIP
    >>> app.add_middleware(RateLimitMiddleware, limiter=limiter)  # Starlette / FastAPI

    Args:
        app: the ASGI application to protect.
        limiter: the [`RateLimiter`][aiocache_patterns.RateLimiter] deciding each request.
        key: the key function (default
            [`client_ip`][aiocache_patterns.integrations.asgi.client_ip]);
            ``None`` from it leaves the request unlimited.
        cost: units each request spends.
        policy: the policy name in the ``RateLimit`` headers.
        exempt: paths never limited (exact ``scope["path"]`` matches), or a
            predicate on the scope.
        websockets: also limit WebSocket connection attempts (a denied one is
            refused before the handshake). Off by default: only ``http`` scopes
            are limited; ``lifespan`` and anything else pass straight through.
    """

    def __init__(
        self,
        app: ASGIApp,
        limiter: RateLimiter,
        *,
        key: KeyFunc = client_ip,
        cost: int = 1,
        policy: str = "default",
        exempt: Collection[str] | Callable[[Scope], bool] | None = None,
        websockets: bool = False,
    ) -> None:
        if not callable(app):
            raise TypeError(f"app must be an ASGI application, not {type(app).__name__}")
        self.app = app
        self.limiter = limiter
        self._cost, self._policy = _check(limiter, key, cost, policy)
        self._key = key
        self._exempt = _exempt_rule(exempt)
        if not isinstance(websockets, bool):
            raise TypeError("websockets must be a bool")
        self._kinds = frozenset({"http", "websocket"} if websockets else {"http"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in self._kinds or (self._exempt is not None and self._exempt(scope)):
            await self.app(scope, receive, send)
            return
        key = await _resolve(self._key, scope)
        if key is None:
            await self.app(scope, receive, send)
            return
        result = await self.limiter.hit(key, self._cost)
        headers = _encode(_limit_headers(result, self._policy))
        if not result.allowed:
            await self._deny(scope, send, result, headers)
            return
        if not headers:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] in _STARTS:
                message = {**message, "headers": [*message.get("headers", ()), *headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _deny(
        self, scope: Scope, send: Send, result: RateLimitResult, headers: list[tuple[bytes, bytes]]
    ) -> None:
        status = _denial_status(result)
        body = _problem(status)
        headers = [_PROBLEM_JSON, (b"content-length", str(len(body)).encode()), *headers]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif "websocket.http.response" in (scope.get("extensions") or {}):
            # The server lets us answer the handshake with a real HTTP response.
            await send(
                {"type": "websocket.http.response.start", "status": status, "headers": headers}
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            # Closing before accepting: the server refuses the handshake (HTTP 403).
            await send({"type": "websocket.close", "code": 1008, "reason": "rate limited"})


def _problem(status: int) -> bytes:
    """An RFC 9457 problem document for ``status`` (``detail`` too, as FastAPI's errors have)."""
    phrase = http.HTTPStatus(status).phrase
    return json.dumps(
        {"type": "about:blank", "title": phrase, "status": status, "detail": phrase}
    ).encode()


#: The messages that carry a response's headers.
_STARTS: Final = frozenset({"http.response.start", "websocket.accept"})


def _exempt_rule(exempt: object) -> Callable[[Scope], bool] | None:
    if exempt is None:
        return None
    if isinstance(exempt, (str, bytes)):
        raise TypeError("exempt must be a collection of paths or a predicate, not one str")
    if callable(exempt):
        rule: Callable[[Scope], bool] = exempt
        return rule
    if not isinstance(exempt, Iterable):
        raise TypeError(f"exempt must be a collection of paths or a predicate, not {exempt!r}")
    paths = frozenset(exempt)
    for path in paths:
        if not isinstance(path, str):
            raise TypeError(f"exempt paths must be str, not {type(path).__name__}")
    if not paths:
        return None

    def in_paths(scope: Scope) -> bool:
        return scope.get("path") in paths

    return in_paths


# -- the FastAPI dependency ---------------------------------------------------------


class RateLimitDependency:
    """Rate-limit one FastAPI route (or router) as a dependency.

    >>> limit = RateLimitDependency(RateLimiter(redis, limit=10, window=60))  # doctest: +SKIP
    >>> @app.post("/login", dependencies=[Depends(limit)])
    ... async def login(): ...

    Allowed: the ``RateLimit`` headers are set on the response (unless the
    endpoint returns a ``Response`` object itself, which FastAPI then sends as
    it is), and the [`RateLimitResult`][aiocache_patterns.RateLimitResult] is the
    dependency's value (``None`` if the key function returned ``None``).
    Denied: raises ``starlette.exceptions.HTTPException(429)`` carrying
    ``Retry-After`` and the ``RateLimit`` headers, which FastAPI answers as is.

    ``key`` gets the ``Request`` (a mapping over the ASGI scope, so
    [`client_ip`][aiocache_patterns.integrations.asgi.client_ip] and
    [`forwarded_ip`][aiocache_patterns.integrations.asgi.forwarded_ip] work
    unchanged) and may be async.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        *,
        key: Callable[[Request], Key | Awaitable[Key]] = client_ip,
        cost: int = 1,
        policy: str = "default",
    ) -> None:
        if Request is None:  # pragma: no cover - starlette missing
            raise ImportError("RateLimitDependency needs starlette: pip install fastapi")
        self.limiter = limiter
        self._cost, self._policy = _check(limiter, key, cost, policy)
        self._key = key

    async def __call__(self, request: Request, response: Response) -> RateLimitResult | None:
        key = await _resolve(self._key, request)
        if key is None:
            return None
        result = await self.limiter.hit(key, self._cost)
        headers = _limit_headers(result, self._policy)
        if not result.allowed:
            status = _denial_status(result)
            raise HTTPException(status, http.HTTPStatus(status).phrase, headers=headers)
        response.headers.update(headers)
        return result
