"""IdempotencyMiddleware on every backend, driven through httpx's ASGI transport:
replays, mismatches, required keys, concurrent duplicates, failures, bounds, Redis down."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aiocache_patterns import Idempotency
from aiocache_patterns.integrations.asgi import IdempotencyMiddleware
from tests._backends import Backend
from tests._helpers import ttls_ms
from tests._servers import free_port


class Endpoint:
    """A POST /charges endpoint counting its calls; behaviour set per test."""

    def __init__(self) -> None:
        self.calls = 0
        self.fences: list[int] = []
        self.delay = 0.0
        self.status = 201
        self.raise_error = False
        self.body_size = 0
        self.started = asyncio.Event()

    async def handle(self, request: Request) -> Response:
        self.calls += 1
        self.fences.append(getattr(request.state, "fencing_token", 0))  # 0: no key
        self.started.set()
        body = await request.body()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.raise_error:
            raise RuntimeError("the endpoint failed")
        response = JSONResponse(
            {"charge": self.calls, "echo": body.decode(), "pad": "x" * self.body_size},
            status_code=self.status,
            headers={"x-charge-id": f"ch_{self.calls}"},
        )
        response.set_cookie("session", "secret")
        return response


def _app(endpoint: Endpoint, **options: Any) -> Any:
    app = Starlette(
        routes=[
            Route("/charges", endpoint.handle, methods=["POST", "GET"]),
            Route("/refunds", endpoint.handle, methods=["POST"]),
        ]
    )
    return IdempotencyMiddleware(app, **options)


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def _post(
    client: httpx.AsyncClient, key: str | None, body: str = "10 EUR", path: str = "/charges"
) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return await client.post(path, content=body, headers=headers)


def _problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = json.loads(response.content)
    assert problem["status"] == status
    assert problem["type"] == "about:blank"
    assert problem["title"]
    assert problem["detail"]


async def test_a_repeat_gets_the_stored_response(redis: Any) -> None:
    endpoint = Endpoint()
    async with _client(_app(endpoint, redis=redis)) as client:
        first = await _post(client, "key-1")
        again = await _post(client, "key-1")
    assert endpoint.calls == 1
    assert first.status_code == again.status_code == 201
    assert first.content == again.content
    assert again.headers["x-charge-id"] == "ch_1"
    assert again.headers["content-type"] == "application/json"
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert "set-cookie" in first.headers
    assert "set-cookie" not in again.headers  # never replayed: not the retrier's session
    assert int(again.headers["content-length"]) == len(again.content)


async def test_a_quoted_key_is_the_same_key(redis: Any) -> None:
    endpoint = Endpoint()
    async with _client(_app(endpoint, redis=redis)) as client:
        await _post(client, "abc")
        again = await _post(client, '"abc"')  # an RFC 8941 string, as the IETF draft has it
    assert endpoint.calls == 1
    assert again.headers["idempotent-replayed"] == "true"


async def test_another_request_with_the_key_gets_422(redis: Any) -> None:
    endpoint = Endpoint()
    async with _client(_app(endpoint, redis=redis)) as client:
        await _post(client, "k")
        _problem(await _post(client, "k", body="99 EUR"), 422)  # another body
        _problem(await _post(client, "k", path="/refunds"), 422)  # another endpoint
        _problem(
            await client.post("/charges?x=1", content="10 EUR", headers={"Idempotency-Key": "k"}),
            422,
        )
    assert endpoint.calls == 1


async def test_keys_are_required_only_when_asked(redis: Any) -> None:
    endpoint = Endpoint()
    async with _client(_app(endpoint, redis=redis, required=True)) as client:
        _problem(await _post(client, None), 400)
        _problem(await _post(client, "x" * 256), 400)  # over 255 characters
        _problem(await _post(client, '"a\\"b"'), 400)
        assert (await client.get("/charges")).status_code == 201  # GET: not concerned
    assert endpoint.calls == 1
    async with _client(_app(endpoint, redis=redis)) as client:
        await _post(client, None)
        await _post(client, None)  # no key: an ordinary request, each time
    assert endpoint.calls == 3


@pytest.mark.parametrize("concurrent", ["reject", "wait"])
async def test_concurrent_duplicates_run_once(
    redis: Any, backend: Backend, concurrent: str
) -> None:
    endpoint = Endpoint()
    endpoint.delay = 0.2
    # two "processes": two apps, two clients, one Redis
    apps = [
        _app(endpoint, redis=redis, concurrent=concurrent),
        _app(endpoint, redis=await backend.client(), concurrent=concurrent),
    ]
    async with _client(apps[0]) as one, _client(apps[1]) as two:
        responses = await asyncio.gather(*(_post((one, two)[i % 2], "k") for i in range(40)))
    assert endpoint.calls == 1
    ok = [r for r in responses if r.status_code == 201]
    if concurrent == "wait":
        assert len(ok) == 40
        assert len({r.content for r in ok}) == 1
    else:
        assert len(ok) == 1
        for response in responses:
            if response.status_code != 201:
                _problem(response, 409)
                assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize("failure", ["500", "429", "401", "raise"])
async def test_a_failed_request_is_not_stored(redis: Any, failure: str) -> None:
    endpoint = Endpoint()
    if failure == "raise":
        endpoint.raise_error = True
    else:
        endpoint.status = 503 if failure == "500" else int(failure)
    async with _client(_app(endpoint, redis=redis)) as client:
        if failure == "raise":
            with pytest.raises(RuntimeError):
                await _post(client, "k")
        else:
            assert (await _post(client, "k")).status_code == endpoint.status
        endpoint.status, endpoint.raise_error = 201, False
        retried = await _post(client, "k")
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers
    assert endpoint.calls == 2
    assert endpoint.fences[1] > endpoint.fences[0]


async def test_a_4xx_is_stored(redis: Any) -> None:
    endpoint = Endpoint()
    endpoint.status = 402
    async with _client(_app(endpoint, redis=redis)) as client:
        await _post(client, "k")
        again = await _post(client, "k")
    assert again.status_code == 402
    assert again.headers["idempotent-replayed"] == "true"
    assert endpoint.calls == 1


async def test_a_response_over_max_body_bytes_answers_409_then(redis: Any) -> None:
    endpoint = Endpoint()
    endpoint.body_size = 5000
    async with _client(_app(endpoint, redis=redis, max_body_bytes=1000)) as client:
        first = await _post(client, "k")
        assert first.status_code == 201
        assert len(first.content) > 5000  # the first caller gets all of it
        for _ in range(2):
            _problem(await _post(client, "k"), 409)
        _problem(await _post(client, "k", body="other"), 422)
    assert endpoint.calls == 1


async def test_a_request_body_over_max_request_bytes_gets_413(redis: Any) -> None:
    endpoint = Endpoint()
    async with _client(_app(endpoint, redis=redis, max_request_bytes=100)) as client:
        _problem(await _post(client, "k", body="x" * 101), 413)
    assert endpoint.calls == 0


async def test_the_principal_is_bound_into_the_key(redis: Any) -> None:
    endpoint = Endpoint()

    async def user(scope: Any) -> str | None:
        for name, value in scope["headers"]:
            if name == b"x-user":
                return str(value.decode())
        return None

    async with _client(_app(endpoint, redis=redis, principal=user)) as client:
        alice = await client.post(
            "/charges", content="1", headers={"Idempotency-Key": "k", "x-user": "alice"}
        )
        bob = await client.post(
            "/charges", content="1", headers={"Idempotency-Key": "k", "x-user": "bob"}
        )
        anon = await _post(client, "k", body="1")
        alice2 = await client.post(
            "/charges", content="1", headers={"Idempotency-Key": "k", "x-user": "alice"}
        )
    assert endpoint.calls == 3  # bob and the anonymous caller never reach alice's record
    assert "idempotent-replayed" not in bob.headers
    assert "idempotent-replayed" not in anon.headers
    assert alice2.content == alice.content


async def test_records_carry_the_ttl(redis: Any) -> None:
    endpoint = Endpoint()
    async with _client(_app(endpoint, redis=redis, ttl=120)) as client:
        await _post(client, "a")
        await _post(client, "b")
    ttls = await ttls_ms(redis)
    assert len(ttls) == 2
    assert all(0 < t <= 120_000 for t in ttls.values())


async def test_a_shared_idempotency_object(redis: Any) -> None:
    endpoint = Endpoint()
    idem = Idempotency(redis, namespace="api", ttl=60)
    async with _client(_app(endpoint, idempotency=idem)) as client:
        await _post(client, "k")
        await _post(client, "k")
    assert endpoint.calls == 1


@pytest.mark.parametrize("fail_open", [True, False])
async def test_redis_down_follows_fail_open(
    fail_open: bool, caplog: pytest.LogCaptureFixture
) -> None:
    down = aioredis.Redis(port=free_port(), socket_connect_timeout=0.2)
    endpoint = Endpoint()
    app = _app(endpoint, redis=down, fail_open=fail_open)
    async with _client(app) as client:
        response = await _post(client, "k")
    if fail_open:
        assert response.status_code == 201
        assert endpoint.calls == 1
        assert any("running without it" in r.getMessage() for r in caplog.records)
    else:
        _problem(response, 503)
        assert endpoint.calls == 0
    await down.aclose()


async def test_arguments_are_checked(redis: Any) -> None:
    endpoint = Endpoint()
    with pytest.raises(TypeError, match="redis"):
        _app(endpoint)
    with pytest.raises(TypeError, match="idempotency"):
        _app(endpoint, idempotency=object())
    with pytest.raises(TypeError, match="methods"):
        _app(endpoint, redis=redis, methods="POST")
    with pytest.raises(TypeError, match="required"):
        _app(endpoint, redis=redis, required="yes")
    with pytest.raises(ValueError, match="header"):
        _app(endpoint, redis=redis, header="")
    with pytest.raises(ValueError, match="concurrent"):
        _app(endpoint, redis=redis, concurrent="queue")


async def test_a_request_cancelled_mid_way_frees_the_key(redis: Any) -> None:
    """The client went away (the server cancels the request's task): a retry runs."""
    endpoint = Endpoint()
    endpoint.delay = 30
    app = _app(endpoint, redis=redis)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/charges",
        "query_string": b"",
        "headers": [(b"idempotency-key", b"k")],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"10 EUR", "more_body": False}

    async def send(message: Any) -> None:
        pass

    task = asyncio.create_task(app(scope, receive, send))
    await endpoint.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    endpoint.delay = 0
    async with _client(app) as client:
        retried = await _post(client, "k")
    assert retried.status_code == 201
    assert endpoint.calls == 2


async def test_a_client_gone_before_its_body_claims_nothing(redis: Any) -> None:
    endpoint = Endpoint()
    app = _app(endpoint, redis=redis)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/charges",
        "query_string": b"",
        "headers": [(b"idempotency-key", b"k")],
    }
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b"10 ", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent == []
    assert endpoint.calls == 0
    async with _client(app) as client:
        assert (await _post(client, "k")).status_code == 201  # the whole body: runs
