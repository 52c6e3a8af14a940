"""Idempotency keys for ASGI apps: exactly-once POSTs (the ``Idempotency-Key`` header).

[`IdempotencyMiddleware`][aiocache_patterns.integrations.asgi.IdempotencyMiddleware]
wraps any ASGI app and works on the raw ``scope``/``receive``/``send``. A
request whose method is one of ``methods`` and that carries the header
(draft-ietf-httpapi-idempotency-key-header; a bare token or a quoted string)
runs once: its response (status, the headers that are safe to replay, body)
is stored with the request's fingerprint (method, path, query string and a
SHA-256 of the body), and a repeat gets it back, marked
``Idempotent-Replayed: true``, without calling the app. Problem documents
(RFC 9457) answer the rest:

* ``400`` a missing key where ``required=True``, or a malformed one;
* ``409`` a repeat while the first is running (``concurrent="reject"``, or
  ``"wait"`` past ``wait_timeout``), or one whose response was too large to
  store;
* ``422`` the key was used with another request (another fingerprint);
* ``413`` a request body over ``max_request_bytes`` (it must be read whole to
  be fingerprinted before the app runs);
* ``503`` Redis could not be asked and ``fail_open=False``.

Responses with a status of 500 or more, those in ``NOT_STORED`` (401, 403,
407, 408, 409, 425, 429: answers about the attempt, not the request), and
apps that raise are not stored: a retry runs again. See docs/idempotency.md.
"""

from __future__ import annotations

import hashlib
import http
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any, Final, TypeAlias

from .._validate import Seconds, positive_int
from ..errors import (
    CachePatternsError,
    IdempotencyConflict,
    IdempotencyKeyReused,
    RedisUnavailable,
)
from ..idempotency import Concurrent, Idempotency, IdempotencyClaim, IdempotencyReplay
from ..keys import quote

__all__ = [
    "DROPPED_HEADERS",
    "NOT_STORED",
    "REPLAYED_HEADER",
    "IdempotencyMiddleware",
    "Principal",
]

logger = logging.getLogger("aiocache_patterns.idempotency")

_Scope: TypeAlias = MutableMapping[str, Any]
_Message: TypeAlias = MutableMapping[str, Any]
_Receive: TypeAlias = Callable[[], Awaitable[_Message]]
_Send: TypeAlias = Callable[[_Message], Awaitable[None]]
_App: TypeAlias = Callable[[_Scope, _Receive, _Send], Awaitable[None]]

#: Who is asking, from the scope (``str``/``bytes``, or None for anonymous): bound
#: into the record's key, so one principal's key never reaches another's record.
Principal: TypeAlias = Callable[[_Scope], "str | bytes | Awaitable[str | bytes | None] | None"]

#: The header a replayed response carries.
REPLAYED_HEADER: Final = (b"idempotent-replayed", b"true")

#: Response headers never stored nor replayed: cookies and credentials (a replay
#: must not hand a session to whoever retries), hop-by-hop headers, and those that
#: describe the moment or the connection rather than the result.
DROPPED_HEADERS: Final = frozenset(
    {
        b"set-cookie",
        b"set-cookie2",
        b"www-authenticate",
        b"proxy-authenticate",
        b"authorization",
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"content-length",
        b"date",
        b"server",
        b"age",
        b"ratelimit",
        b"ratelimit-policy",
        b"retry-after",
        b"x-ratelimit-limit",
        b"x-ratelimit-remaining",
        b"x-ratelimit-reset",
    }
)

#: 4xx answers about the attempt rather than the request (credentials, a timeout, a
#: conflict, too early, a rate limit): not stored, so a retry runs again. Every 5xx
#: is not stored either; other 4xx are (they are the request's answer).
NOT_STORED: Final = frozenset({401, 403, 407, 408, 409, 425, 429})

_MAX_KEY_CHARS: Final = 255
_FORMAT: Final = b"1"  # first byte of a stored response: the encoding's version


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class IdempotencyMiddleware:
    """Exactly-once requests under an ``Idempotency-Key`` header, for any ASGI app.

    >>> app.add_middleware(IdempotencyMiddleware, redis=redis, ttl=24 * 3600,
    ...                    methods=("POST", "PATCH"), required=False)  # doctest: +SKIP

    Args:
        app: the ASGI application.
        redis: the client to keep records in (or pass ``idempotency``).
        idempotency: an [`Idempotency`][aiocache_patterns.Idempotency] to use instead
            of one built from ``redis``, ``ttl``, ``namespace``, ``lease``,
            ``concurrent`` and ``wait_timeout``.
        ttl: how long a response is kept for replays.
        methods: the methods that take a key (others pass straight through).
        required: answer ``400`` to a request of those methods without the header.
        concurrent: ``"reject"`` (``409``) or ``"wait"`` for a repeat that arrives
            while the first runs.
        wait_timeout: how long a ``"wait"`` repeat waits before its ``409``.
        lease: how long a claim outlives a process that died mid-request.
        fail_open: with Redis down, run the request without idempotency (logged);
            ``False`` answers ``503``.
        max_body_bytes: responses with a larger body are not stored: the key then
            answers ``409`` to a repeat (``422`` to another request), consistently.
        max_request_bytes: request bodies larger than this get ``413``.
        principal: who is asking (a function of the scope, may be async), bound into
            the key: the same key from two principals names two records. Without it,
            the key is shared by everyone who can reach the app (the fingerprint
            still keeps another request from getting the response).
        header: the request header carrying the key.
        namespace: prefix of the records' keys (not the ``Idempotency`` default, so a
            worker's keys and the app's never meet).
    """

    def __init__(
        self,
        app: _App,
        redis: Any = None,
        *,
        idempotency: Idempotency | None = None,
        ttl: Seconds = 24 * 3600.0,
        methods: Collection[str] = ("POST", "PATCH"),
        required: bool = False,
        concurrent: Concurrent = "reject",
        wait_timeout: Seconds = 10.0,
        lease: Seconds = 30.0,
        fail_open: bool = False,
        max_body_bytes: int = 1024 * 1024,
        max_request_bytes: int = 10 * 1024 * 1024,
        principal: Principal | None = None,
        header: str = "Idempotency-Key",
        namespace: str = "http-idempotency",
    ) -> None:
        if not callable(app):
            raise TypeError(f"app must be an ASGI application, not {type(app).__name__}")
        self.app = app
        given: object = idempotency
        if given is not None and not isinstance(given, Idempotency):
            raise TypeError(f"idempotency must be an Idempotency, not {type(given).__name__}")
        if idempotency is None:
            if redis is None:
                raise TypeError("IdempotencyMiddleware needs redis= or idempotency=")
            idempotency = Idempotency(
                redis,
                namespace=namespace,
                ttl=ttl,
                lease=lease,
                concurrent=concurrent,
                wait_timeout=wait_timeout,
                max_result_bytes=max_body_bytes,
            )
        self.idempotency = idempotency
        if isinstance(methods, str) or not all(isinstance(m, str) for m in methods):
            raise TypeError("methods must be a collection of str, not one str")
        self._methods = frozenset(m.upper() for m in methods)
        for name, flag in (("required", required), ("fail_open", fail_open)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool")
        self._required = required
        self._fail_open = fail_open
        self._max_body = positive_int(max_body_bytes, "max_body_bytes", allow_zero=True)
        self._max_request = positive_int(max_request_bytes, "max_request_bytes", allow_zero=True)
        if principal is not None and not callable(principal):
            raise TypeError("principal must be callable")
        self._principal = principal
        if not isinstance(header, str) or not header or not header.isascii():
            raise ValueError(f"header must be a non-empty ASCII str, not {header!r}")
        self._header = header.lower().encode("ascii")

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http" or scope.get("method", "").upper() not in self._methods:
            await self.app(scope, receive, send)
            return
        raw = _header(scope, self._header)
        if raw is None:
            if self._required:
                await _problem(send, 400, "the Idempotency-Key header is required")
                return
            await self.app(scope, receive, send)
            return
        key = _parse_key(raw)
        if key is None:
            await _problem(send, 400, "the Idempotency-Key header is malformed")
            return
        try:
            body = await _read_body(receive, self._max_request)
        except _TooLarge:
            await _problem(send, 413, "the request body is too large for an idempotent request")
            return
        except _Disconnected:
            return
        replay_receive = _replaying(body, receive)
        record_key = await self._record_key(scope, key)
        try:
            outcome = await self.idempotency.start(record_key, _fingerprint(scope, body))
        except IdempotencyKeyReused:
            await _problem(send, 422, "the Idempotency-Key was used with a different request")
            return
        except IdempotencyConflict:
            await _problem(
                send, 409, "a request with this Idempotency-Key is being processed", retry=True
            )
            return
        except RedisUnavailable as exc:
            if self._fail_open:
                logger.warning("idempotency: Redis unavailable (%s); running without it", exc)
                await self.app(scope, replay_receive, send)
                return
            await _problem(send, 503, "idempotency keys cannot be checked right now", retry=True)
            return
        if isinstance(outcome, IdempotencyReplay):
            await self._replay(send, outcome)
            return
        await self._run(scope, replay_receive, send, outcome)

    async def _record_key(self, scope: _Scope, key: str) -> str:
        if self._principal is None:
            return "k:" + quote(key)
        who = self._principal(scope)
        if inspect.isawaitable(who):
            who = await who
        if who is None:
            return "a:" + quote(key)
        if isinstance(who, bytes):
            who = who.decode("utf-8", "surrogateescape")
        if not isinstance(who, str):
            raise TypeError(f"principal must return str, bytes or None, not {type(who).__name__}")
        return "p:" + quote(who) + ":" + quote(key)

    async def _replay(self, send: _Send, outcome: IdempotencyReplay) -> None:
        stored = _decode(outcome.payload) if outcome.payload is not None else None
        if stored is None:
            await _problem(
                send, 409, "this Idempotency-Key's response was not stored and cannot be replayed"
            )
            return
        status, headers, body = stored
        headers = [*headers, (b"content-length", str(len(body)).encode()), REPLAYED_HEADER]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _run(
        self, scope: _Scope, receive: _Receive, send: _Send, claim: IdempotencyClaim
    ) -> None:
        idem = self.idempotency
        status: int | None = None
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []
        size = 0
        finished = False

        async def capture(message: _Message) -> None:
            nonlocal status, headers, size, finished
            kind = message["type"]
            if kind == "http.response.start":
                status = int(message["status"])
                headers = [
                    (bytes(k).lower(), bytes(v))
                    for k, v in message.get("headers", ())
                    if bytes(k).lower() not in DROPPED_HEADERS
                ]
            elif kind == "http.response.body":
                chunk = bytes(message.get("body", b""))
                size += len(chunk)
                if size <= self._max_body:
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    finished = True
            await send(message)

        state = {**scope.get("state", {}), "fencing_token": claim.fencing_token}
        scope = {**scope, "state": state}
        try:
            async with idem.renewing(claim):
                await self.app(scope, receive, capture)
        except BaseException:
            await idem.release(claim)
            raise
        if status is None or status >= 500 or status in NOT_STORED or not finished:
            await idem.release(claim)
            return
        payload = _encode(status, headers, b"".join(chunks)) if size <= self._max_body else None
        try:
            await idem.complete(claim, payload)
        except CachePatternsError as exc:
            logger.warning(
                "idempotency: the response could not be stored (%s); the key is free again "
                "when its lease ends",
                exc,
            )


def _header(scope: _Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if bytes(key).lower() == name:
            return bytes(value)
    return None


def _parse_key(raw: bytes) -> str | None:
    """The key of a header: a bare token (Stripe's form) or an RFC 8941 string."""
    text = raw.decode("latin-1").strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
        if "\\" in text or '"' in text:
            return None
    if not 1 <= len(text) <= _MAX_KEY_CHARS or not all(" " <= ch <= "~" for ch in text):
        return None
    return text


async def _read_body(receive: _Receive, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            # http.disconnect before the whole body came: nobody to answer, and a
            # fingerprint of half a body must not claim the key.
            raise _Disconnected
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _replaying(body: bytes, receive: _Receive) -> _Receive:
    """``receive`` for the app: the buffered body once, then the real one (disconnects)."""
    sent = False

    async def replay() -> _Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _fingerprint(scope: _Scope, body: bytes) -> bytes:
    """Method, path, query string and the body's SHA-256, each length-prefixed."""
    digest = hashlib.sha256()
    for part in (
        str(scope.get("method", "")).upper().encode(),
        str(scope.get("path", "")).encode("utf-8", "surrogateescape"),
        bytes(scope.get("query_string", b"")),
        hashlib.sha256(body).digest(),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest().encode()


def _encode(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    head = json.dumps(
        {"s": status, "h": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in headers]}
    ).encode()
    return _FORMAT + head + b"\n" + body


def _decode(payload: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
    if not payload.startswith(_FORMAT):
        return None
    head, sep, body = payload[1:].partition(b"\n")
    try:
        meta = json.loads(head)
        status = int(meta["s"])
        headers = [(str(k).encode("latin-1"), str(v).encode("latin-1")) for k, v in meta["h"]]
    except (ValueError, KeyError, TypeError):
        return None
    if not sep or not 100 <= status <= 599:
        return None
    return status, headers, body


async def _problem(send: _Send, status: int, detail: str, *, retry: bool = False) -> None:
    """An RFC 9457 problem document."""
    body = json.dumps(
        {
            "type": "about:blank",
            "title": http.HTTPStatus(status).phrase,
            "status": status,
            "detail": detail,
        }
    ).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if retry:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
