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

Limits that depend on the request: ``rates`` (a function of the request
returning the rates for it: a user's plan), ``cost`` (a number, or a function
of the request), ``skip`` (a predicate: health checks, internal callers) and
``on_limited`` (builds the denial's response; the ``RateLimit`` headers are
still added). Each may be ``async``. A function that raises lets its error
through (the request fails; nothing is let past the limit by a bug), and one
that returns something of the wrong kind raises a ``TypeError`` naming it.
WebSocket *messages* are limited with ``message_limiter``.
"""

from __future__ import annotations

import http
import inspect
import json
import math
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    MutableMapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from .._validate import positive_int
from ..ratelimit._limiter import Rate, RateLimiter, RateLimitResult
from ._client_keys import (
    DEFAULT_TRUSTED_PROXIES,
    MAX_CHAIN,
    UNKNOWN_CLIENT,
    ForwardingHeader,
    client_ip,
    forwarded_ip,
    peer_in,
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
    "RateLimitedResponse",
    "Receive",
    "Scope",
    "Send",
    "client_ip",
    "forwarded_ip",
    "peer_in",
    "peer_ip",
    "rate_limited_handler",
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

#: What a ``rates`` function returns: a Rate, several, or None (the limiter's own rates).
Rates: TypeAlias = "Rate | Sequence[Rate] | None"

_PROBLEM_JSON: Final = (b"content-type", b"application/problem+json")


# -- key functions (in _client_keys) ------------------------------------------------


async def _resolve(key: Callable[[Any], Key | Awaitable[Key]], arg: Any) -> Key:
    found = key(arg)
    if inspect.isawaitable(found):
        found = await found
    if found is None or isinstance(found, (str, bytes)):
        return found
    raise TypeError(f"the key function must return str, bytes or None, not {type(found).__name__}")


async def _ask(function: Callable[..., Any], *args: Any) -> Any:
    found = function(*args)
    if inspect.isawaitable(found):
        found = await found
    return found


async def _rates_for(
    function: Callable[[Any], Any] | None, request: Any
) -> tuple[Rate, ...] | None:
    """The rates a ``rates`` function gives ``request`` (None: the limiter's own)."""
    if function is None:
        return None
    found = await _ask(function, request)
    if found is None:
        return None
    if isinstance(found, Rate):
        return (found,)
    if isinstance(found, (list, tuple)) and found and all(isinstance(r, Rate) for r in found):
        return tuple(found)
    raise TypeError(
        "the rates function must return a Rate, a non-empty list of Rate or None, "
        f"not {_described(found)}"
    )


async def _cost_for(cost: int | Callable[[Any], Any], request: Any) -> int:
    if isinstance(cost, int):
        return cost
    found = await _ask(cost, request)
    if isinstance(found, bool) or not isinstance(found, int):
        raise TypeError(f"the cost function must return an int, not {_described(found)}")
    if found < 1:
        raise ValueError(f"the cost function must return a positive int, got {found}")
    return found


async def _skipped(skip: Callable[[Any], Any] | None, request: Any) -> bool:
    if skip is None:
        return False
    found = await _ask(skip, request)
    if not isinstance(found, bool):
        raise TypeError(f"the skip function must return a bool, not {_described(found)}")
    return found


def _described(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _callable_or_none(value: object, argname: str) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{argname} must be callable or None, not {type(value).__name__}")


# -- shared checks and responses ---------------------------------------------------


def _check(
    limiter: object, key: object, cost: object, policy: object
) -> tuple[int | Callable[[Any], Any], str]:
    if not isinstance(limiter, RateLimiter):
        raise TypeError(f"limiter must be a RateLimiter, not {type(limiter).__name__}")
    if not callable(key):
        raise TypeError(f"key must be callable, not {type(key).__name__}")
    if not isinstance(policy, str):
        raise TypeError(f"policy must be str, not {type(policy).__name__}")
    if not policy or not all(" " <= ch <= "~" for ch in policy):
        raise ValueError(f"policy must be non-empty printable ASCII, not {policy!r}")
    if callable(cost):
        return cost, policy
    value = positive_int(cost, "cost")
    smallest = min(rate.limit for rate in limiter.rates)
    if value > smallest:
        raise ValueError(f"cost {value} is over the limit {smallest}: it could never pass")
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

    The functions below get the ASGI scope (``scope["state"]``, the headers
    and the path are there: what an authentication middleware in front of this
    one put there too) and may be ``async``.

    Args:
        app: the ASGI application to protect.
        limiter: the [`RateLimiter`][aiocache_patterns.RateLimiter] deciding each request.
        key: the key function (default
            [`client_ip`][aiocache_patterns.integrations.asgi.client_ip]);
            ``None`` from it leaves the request unlimited.
        cost: units each request spends, or a function of the scope returning them.
        policy: the policy name in the ``RateLimit`` headers.
        exempt: paths never limited (exact ``scope["path"]`` matches), or a
            predicate on the scope.
        websockets: also limit WebSocket connection attempts (a denied one is
            refused before the handshake). Off by default: only ``http`` scopes
            are limited; ``lifespan`` and anything else pass straight through.
        rates: a function of the scope returning the rates for this request (a
            [`Rate`][aiocache_patterns.Rate], a list of them, or ``None`` for the
            limiter's own): a limit read from the user's plan, say.
        skip: a predicate of the scope; ``True`` lets the request through
            unlimited (health checks; internal callers, by
            [`peer_in`][aiocache_patterns.integrations.asgi.peer_in], never by a header).
        on_limited: ``on_limited(scope, result)`` returns the ASGI response
            (any ASGI app, e.g. a Starlette ``Response``) sent for a denied HTTP
            request instead of the problem document; the ``RateLimit`` headers
            and ``Retry-After`` are added to it. ``result.degraded`` tells a
            denial made without Redis (answered ``503`` by default).
        message_limiter: limit every message a WebSocket client sends, each a
            hit of this limiter under the connection's key; past the limit the
            connection is closed (code 1008) and the app receives
            ``websocket.disconnect``.
    """

    def __init__(
        self,
        app: ASGIApp,
        limiter: RateLimiter,
        *,
        key: KeyFunc = client_ip,
        cost: int | Callable[[Scope], int | Awaitable[int]] = 1,
        policy: str = "default",
        exempt: Collection[str] | Callable[[Scope], bool] | None = None,
        websockets: bool = False,
        rates: Callable[[Scope], Rates | Awaitable[Rates]] | None = None,
        skip: Callable[[Scope], bool | Awaitable[bool]] | None = None,
        on_limited: Callable[[Scope, RateLimitResult], ASGIApp | Awaitable[ASGIApp]] | None = None,
        message_limiter: RateLimiter | None = None,
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
        for value, argname in ((rates, "rates"), (skip, "skip"), (on_limited, "on_limited")):
            _callable_or_none(value, argname)
        if message_limiter is not None and not isinstance(message_limiter, RateLimiter):
            raise TypeError(
                f"message_limiter must be a RateLimiter, not {type(message_limiter).__name__}"
            )
        self._rates = rates
        self._skip = skip
        self._on_limited = on_limited
        self._messages = message_limiter
        self._websockets = websockets
        limited = {"http"}
        if websockets or message_limiter is not None:
            limited.add("websocket")
        self._kinds = frozenset(limited)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in self._kinds or (self._exempt is not None and self._exempt(scope)):
            await self.app(scope, receive, send)
            return
        if self._skip is not None and await _skipped(self._skip, scope):
            await self.app(scope, receive, send)
            return
        key = await _resolve(self._key, scope)
        if key is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            if self._messages is not None:
                receive = _limit_messages(self._messages, key, receive, send)
            if not self._websockets:
                await self.app(scope, receive, send)
                return
        rates = await _rates_for(self._rates, scope)
        cost = await _cost_for(self._cost, scope)
        result = await self.limiter.hit(key, cost, rates=rates)
        headers = _encode(_limit_headers(result, self._policy))
        if not result.allowed:
            await self._deny(scope, receive, send, result, headers)
            return
        if not headers:
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _adding(headers, send))

    async def _deny(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        result: RateLimitResult,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        if self._on_limited is not None and scope["type"] == "http":
            response = await _ask(self._on_limited, scope, result)
            if not callable(response):
                raise TypeError(
                    "on_limited must return an ASGI response (a callable of scope, receive, "
                    f"send), not {_described(response)}"
                )
            await response(scope, receive, _adding(headers, send, replace=True))
            return
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


#: The headers this module sets: an ``on_limited`` response's own are replaced.
_OURS: Final = frozenset({b"ratelimit", b"ratelimit-policy", b"retry-after"})


def _adding(headers: list[tuple[bytes, bytes]], send: Send, *, replace: bool = False) -> Send:
    """``send``, adding ``headers`` to the message that starts the response."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] in _STARTS:
            own = message.get("headers", ())
            if replace:
                own = [h for h in own if bytes(h[0]).lower() not in _OURS]
            message = {**message, "headers": [*own, *headers]}
        await send(message)

    return send_with_headers


def _limit_messages(
    limiter: RateLimiter, key: str | bytes, receive: Receive, send: Send
) -> Receive:
    """``receive``, each WebSocket message a hit; past the limit, close (1008) and disconnect."""
    closed = False

    async def limited_receive() -> Message:
        nonlocal closed
        if closed:
            return {"type": "websocket.disconnect", "code": 1008}
        message = await receive()
        if message["type"] == "websocket.receive":
            result = await limiter.hit(key)
            if not result.allowed:
                closed = True
                await send({"type": "websocket.close", "code": 1008, "reason": "rate limited"})
                return {"type": "websocket.disconnect", "code": 1008}
        return message

    return limited_receive


def _problem(status: int) -> bytes:
    """An RFC 9457 problem document for ``status`` (``detail`` too, as FastAPI's errors have)."""
    phrase = http.HTTPStatus(status).phrase
    return json.dumps(
        {"type": "about:blank", "title": phrase, "status": status, "detail": phrase}
    ).encode()


#: The messages that carry a response's headers.
_STARTS: Final = frozenset(
    {"http.response.start", "websocket.accept", "websocket.http.response.start"}
)


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
    ``rates``, ``cost``, ``skip`` and ``on_limited`` are as for
    [`RateLimitMiddleware`][aiocache_patterns.integrations.asgi.RateLimitMiddleware],
    functions of the ``Request`` (``on_limited(request, result)`` returns a
    Starlette ``Response``). A dependency can only raise, so a denial with
    ``on_limited`` raises
    [`RateLimitedResponse`][aiocache_patterns.integrations.asgi.RateLimitedResponse]
    carrying that response: register
    [`rate_limited_handler`][aiocache_patterns.integrations.asgi.rate_limited_handler]
    once (``app.add_exception_handler(RateLimitedResponse, rate_limited_handler)``)
    and it is sent as it is, the ``RateLimit`` headers added; without the handler
    FastAPI answers it like any ``HTTPException`` of the response's status.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        *,
        key: Callable[[Request], Key | Awaitable[Key]] = client_ip,
        cost: int | Callable[[Request], int | Awaitable[int]] = 1,
        policy: str = "default",
        rates: Callable[[Request], Rates | Awaitable[Rates]] | None = None,
        skip: Callable[[Request], bool | Awaitable[bool]] | None = None,
        on_limited: Callable[[Request, RateLimitResult], Response | Awaitable[Response]]
        | None = None,
    ) -> None:
        if Request is None:  # pragma: no cover - starlette missing
            raise ImportError("RateLimitDependency needs starlette: pip install fastapi")
        self.limiter = limiter
        self._cost, self._policy = _check(limiter, key, cost, policy)
        self._key = key
        for value, argname in ((rates, "rates"), (skip, "skip"), (on_limited, "on_limited")):
            _callable_or_none(value, argname)
        self._rates = rates
        self._skip = skip
        self._on_limited = on_limited

    async def __call__(self, request: Request, response: Response) -> RateLimitResult | None:
        if self._skip is not None and await _skipped(self._skip, request):
            return None
        key = await _resolve(self._key, request)
        if key is None:
            return None
        rates = await _rates_for(self._rates, request)
        cost = await _cost_for(self._cost, request)
        result = await self.limiter.hit(key, cost, rates=rates)
        headers = _limit_headers(result, self._policy)
        if not result.allowed:
            if self._on_limited is not None:
                denial = await _ask(self._on_limited, request, result)
                if not isinstance(denial, Response):
                    raise TypeError(
                        f"on_limited must return a starlette Response, not {_described(denial)}"
                    )
                raise RateLimitedResponse(denial, headers)
            status = _denial_status(result)
            raise HTTPException(status, http.HTTPStatus(status).phrase, headers=headers)
        response.headers.update(headers)
        return result


if TYPE_CHECKING:
    _HTTPExceptionBase = HTTPException
else:  # importable without starlette (the middleware needs none)
    _HTTPExceptionBase = HTTPException if HTTPException is not None else Exception


class RateLimitedResponse(_HTTPExceptionBase):
    """A denial by a ``RateLimitDependency`` with ``on_limited``: ``response`` is what to
    send (the ``RateLimit`` headers set on it).

    An ``HTTPException`` of the response's status and headers, so that without
    [`rate_limited_handler`][aiocache_patterns.integrations.asgi.rate_limited_handler]
    registered FastAPI still answers with that status and the limit headers.
    """

    def __init__(self, response: Response, headers: Mapping[str, str]) -> None:
        for name in ("ratelimit", "ratelimit-policy", "retry-after"):
            if name in response.headers:
                del response.headers[name]
        response.headers.update(headers)
        status = response.status_code
        super().__init__(status, http.HTTPStatus(status).phrase, headers=dict(headers))
        self.response = response


async def rate_limited_handler(request: Request, exc: Exception) -> Response:
    """The exception handler that sends a
    [`RateLimitedResponse`][aiocache_patterns.integrations.asgi.RateLimitedResponse]'s response.

    >>> app.add_exception_handler(RateLimitedResponse, rate_limited_handler)  # doctest: +SKIP
    """
    if not isinstance(exc, RateLimitedResponse):
        raise TypeError(f"rate_limited_handler handles RateLimitedResponse, not {exc!r}")
    return exc.response
