"""The blog example (examples/blog_api): httpx against the real app, on every backend.

Each test runs ``create_app(redis, tmp_path / "blog.db")`` under its lifespan
(httpx's ASGI transport does not run it, so :func:`serving` enters it) on
fakeredis, Redis and, where configured, a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from examples.blog_api import Blog, blog_of, create_app
from examples.blog_api.app import FAKEREDIS_LABEL
from examples.blog_api.auth import Identity, tokens_from_env
from examples.blog_api.db import PostRow, StaleFencingToken
from examples.blog_api.jobs import NightlyJob, nightly_scheduler, seconds_until
from tests._backends import Backend, Client
from tests._helpers import ttls_ms

PEER = ("203.0.113.5", 50000)
OTHER_PEER = ("198.51.100.9", 50000)
RATELIMIT = re.compile(r'"(?P<policy>[^"]+)";r=(?P<r>\d+);t=(?P<t>\d+)')
POLICY = re.compile(r'"(?P<policy>[^"]+)";q=(?P<q>\d+);w=(?P<w>\d+)')


#: Who may write, in these tests: ann (an admin) and bo, with their bearer tokens.
ANN, BO = "ann-" + "a" * 20, "bo-" + "b" * 20
TOKENS = {"ann": ANN, "bo": BO}


def make_app(redis: Any = None, database: Any = None, **options: Any) -> FastAPI:
    """``create_app`` with this module's users (ann is an admin)."""
    options.setdefault("tokens", TOKENS)
    options.setdefault("admins", {"ann"})
    if database is not None:
        options["database"] = database
    return create_app(redis, **options)


@asynccontextmanager
async def serving(
    app: FastAPI, peer: tuple[str, int] = PEER, token: str | None = ANN
) -> AsyncIterator[httpx.AsyncClient]:
    """The app started (its lifespan entered) and a client on it, as ``peer``,
    sending ``token`` (ann's by default; None: no Authorization header)."""
    async with app.router.lifespan_context(app), client_for(app, peer, token) as client:
        yield client


def client_for(app: FastAPI, peer: tuple[str, int], token: str | None = ANN) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=peer)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers)


def problem(status: int, detail: str | None = None) -> dict[str, Any]:
    """The RFC 9457 document the app answers an error with."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": http.HTTPStatus(status).phrase,
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    return body


@dataclass
class Api:
    app: FastAPI
    http: httpx.AsyncClient

    @property
    def blog(self) -> Blog:
        return blog_of(self.app)

    async def new_post(self, title: str, token: str = ANN) -> int:
        response = await self.http.post(
            "/posts", json={"title": title}, headers={"authorization": f"Bearer {token}"}
        )
        assert response.status_code == 201, response.text
        post_id = response.json()["id"]
        assert isinstance(post_id, int)
        return post_id

    async def like(self, post_id: int) -> dict[str, Any]:
        response = await self.http.post(f"/posts/{post_id}/like")
        assert response.status_code == 200, response.text
        liked: dict[str, Any] = response.json()
        return liked

    async def top(self) -> list[tuple[int, str, int, int]]:
        response = await self.http.get("/posts/top")
        assert response.status_code == 200, response.text
        return [(p["id"], p["title"], p["likes"], p["rank"]) for p in response.json()]


@pytest.fixture
async def api(redis: Client, tmp_path: Path) -> AsyncIterator[Api]:
    app = make_app(redis, tmp_path / "blog.db", nightly_at=None)
    async with serving(app) as http:
        yield Api(app, http)


def limits(response: httpx.Response) -> dict[str, tuple[int, int]]:
    """``{policy: (remaining, limit)}`` from the ``RateLimit`` / ``RateLimit-Policy`` fields."""
    remaining = {
        m["policy"]: int(m["r"]) for m in RATELIMIT.finditer(response.headers.get("ratelimit", ""))
    }
    quota = {
        m["policy"]: int(m["q"])
        for m in POLICY.finditer(response.headers.get("ratelimit-policy", ""))
    }
    assert remaining.keys() == quota.keys()
    return {policy: (remaining[policy], quota[policy]) for policy in remaining}


# -- cached reads, invalidation, write-through ----------------------------------------------


async def test_a_read_loads_from_the_database_once_then_is_served_from_cache(api: Api) -> None:
    row = PostRow(
        id=7,
        title="Straight into SQLite",
        body="not through the API, so not cached",
        author="ann",
        created_at="2024-01-01T00:00:00+00:00",
        updated_at="2024-01-01T00:00:00+00:00",
    )
    await api.blog.db.insert_post(row)
    assert api.blog.db.post_reads == 0

    first = await api.http.get("/posts/7")
    assert first.status_code == 200
    assert first.json() == row
    assert api.blog.db.post_reads == 1

    again = await asyncio.gather(*(api.http.get("/posts/7") for _ in range(5)))
    assert [r.json() for r in again] == [row] * 5
    assert api.blog.db.post_reads == 1  # served from Redis
    assert api.blog.cache.stats.hits >= 5


async def test_concurrent_reads_of_a_cold_post_reach_the_database_once(api: Api) -> None:
    await api.blog.db.insert_post(
        PostRow(id=1, title="Hot", body="", author="bo", created_at="x", updated_at="x")
    )
    responses = await asyncio.gather(*(api.http.get("/posts/1") for _ in range(20)))
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["title"] for r in responses} == {"Hot"}
    assert api.blog.db.post_reads == 1  # one loader for the stampede


async def test_a_new_post_is_written_through_to_the_cache(api: Api) -> None:
    response = await api.http.post("/posts", json={"title": "Hello", "body": "first!"})
    assert response.status_code == 201
    post = response.json()
    assert response.headers["location"] == f"/posts/{post['id']}"
    assert (post["title"], post["body"], post["author"]) == ("Hello", "first!", "ann")

    # in the cache before anyone read it, under the key the reads use
    key = api.blog.get_post.key_for(post_id=post["id"])
    assert await api.blog.cache.get(key) == post

    read = await api.http.get(f"/posts/{post['id']}")
    assert read.json() == post
    assert api.blog.db.post_reads == 0  # the first read was already a hit


async def test_write_through_replaces_a_cached_not_found(api: Api) -> None:
    missing = await api.http.get("/posts/1")
    assert missing.status_code == 404
    assert (await api.http.get("/posts/1")).status_code == 404
    assert api.blog.db.post_reads == 1  # "no such post" is cached too

    assert await api.new_post("Now it exists") == 1
    found = await api.http.get("/posts/1")
    assert found.status_code == 200
    assert found.json()["title"] == "Now it exists"
    assert api.blog.db.post_reads == 1


async def test_an_update_invalidates_the_cached_post(api: Api) -> None:
    post_id = await api.new_post("Old title")
    assert (await api.http.get(f"/posts/{post_id}")).json()["title"] == "Old title"

    updated = await api.http.put(
        f"/posts/{post_id}", json={"title": "New title", "body": "edited"}
    )
    assert updated.status_code == 200
    assert (updated.json()["title"], updated.json()["body"]) == ("New title", "edited")

    read = await api.http.get(f"/posts/{post_id}")
    assert (read.json()["title"], read.json()["body"]) == ("New title", "edited")
    assert api.blog.db.post_reads == 1  # loaded again once, after the invalidation
    assert (await api.http.get(f"/posts/{post_id}")).json()["title"] == "New title"
    assert api.blog.db.post_reads == 1

    nothing = await api.http.put("/posts/99", json={"title": "x", "body": "y"})
    assert nothing.status_code == 404


async def test_bad_input_is_refused(api: Api) -> None:
    assert (await api.http.post("/posts", json={"title": ""})).status_code == 422
    assert (await api.http.post("/posts", json={})).status_code == 422
    assert (await api.http.get("/posts/abc")).status_code == 422
    assert (await api.http.get("/posts/top?n=0")).status_code == 422


# -- the leaderboard -------------------------------------------------------------------------


async def test_likes_reorder_the_top_posts_ties_by_who_got_there_first(
    api: Api, redis: Client
) -> None:
    a = await api.new_post("A")
    b = await api.new_post("B")
    c = await api.new_post("C")
    assert await api.top() == []

    assert await api.like(b) == {"id": b, "likes": 1, "rank": 1}
    assert await api.like(c) == {"id": c, "likes": 1, "rank": 2}  # b reached 1 first
    assert await api.top() == [(b, "B", 1, 1), (c, "C", 1, 2)]

    await api.like(c)
    assert await api.top() == [(c, "C", 2, 1), (b, "B", 1, 2)]
    assert await api.like(b) == {"id": b, "likes": 2, "rank": 2}  # c reached 2 first
    assert await api.top() == [(c, "C", 2, 1), (b, "B", 2, 2)]

    for _ in range(3):
        await api.like(a)
    assert await api.top() == [(a, "A", 3, 1), (c, "C", 2, 2), (b, "B", 2, 3)]
    assert [p["id"] for p in (await api.http.get("/posts/top?n=2")).json()] == [a, c]

    # titles follow updates
    await api.http.put(f"/posts/{a}", json={"title": "A, edited", "body": ""})
    assert (await api.top())[0] == (a, "A, edited", 3, 1)

    assert (await api.http.post("/posts/42/like")).status_code == 404
    assert len(await api.top()) == 3

    # Only the leaderboard (user data) may live without a TTL.
    immortal = [k for k, ttl in (await ttls_ms(redis)).items() if ttl == -1]
    assert immortal
    assert all(b":likes}" in key for key in immortal), immortal


# -- rate limits -------------------------------------------------------------------------------


async def test_each_client_ip_is_limited_with_headers(redis: Client, tmp_path: Path) -> None:
    app = make_app(redis, tmp_path / "blog.db", rate_limit=3, nightly_at=None)
    async with serving(app) as http:
        for remaining in (2, 1, 0):
            response = await http.get("/posts/top")
            assert response.status_code == 200
            assert limits(response) == {"per-ip": (remaining, 3)}
            assert "retry-after" not in response.headers

        refused = await http.get("/posts/top")
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json() == problem(429, "Too Many Requests")
        assert limits(refused) == {"per-ip": (0, 3)}
        policy = POLICY.fullmatch(refused.headers["ratelimit-policy"])
        assert policy is not None
        assert policy["w"] == "60"
        assert 1 <= int(refused.headers["retry-after"]) <= 120

        # another client has its own quota; /health is never limited
        async with client_for(app, OTHER_PEER) as other:
            assert (await other.get("/posts/top")).status_code == 200
        health = await http.get("/health")
        assert health.status_code == 200
        assert "ratelimit" not in health.headers


async def test_write_routes_have_a_stricter_limit(redis: Client, tmp_path: Path) -> None:
    app = make_app(redis, tmp_path / "blog.db", write_limit=2, nightly_at=None)
    async with serving(app) as http:
        api = Api(app, http)
        post_id = await api.new_post("one")
        liked = await http.post(f"/posts/{post_id}/like")
        assert liked.status_code == 200
        assert limits(liked) == {"writes": (0, 2), "per-ip": (98, 100)}

        refused = await http.post("/posts", json={"title": "two"})
        assert refused.status_code == 429
        assert limits(refused)["writes"] == (0, 2)
        assert int(refused.headers["retry-after"]) >= 1
        assert await api.top() == [(post_id, "one", 1, 1)]  # nothing was written
        assert (await http.get("/posts/2")).status_code == 404

        read = await http.get(f"/posts/{post_id}")  # reads are not writes
        assert read.status_code == 200
        assert set(limits(read)) == {"per-ip"}


# -- the nightly job: lock and fencing token ------------------------------------------------


async def test_the_nightly_job_saves_likes_and_is_refused_while_another_holder_runs(
    api: Api,
) -> None:
    a = await api.new_post("A")
    b = await api.new_post("B")
    await api.like(a)
    await api.like(a)
    await api.like(b)
    assert (await api.http.get("/jobs/nightly")).status_code == 404  # never ran

    holder = api.blog.nightly.lock()  # another process, say, is running it
    assert await holder.acquire()
    assert holder.lease is not None
    held_token = holder.lease.fencing_token
    busy = await api.http.post("/jobs/nightly")
    assert busy.status_code == 409
    assert busy.json() == problem(409, "the nightly job is already running")
    assert await api.blog.db.stored_likes() == {}
    assert (await api.http.get("/jobs/nightly")).status_code == 404
    await holder.release()

    ran = await api.http.post("/jobs/nightly")
    assert ran.status_code == 200
    run = ran.json()
    assert run["job"] == "nightly"
    assert run["posts_synced"] == 2
    assert run["fencing_token"] > held_token
    assert await api.blog.db.stored_likes() == {a: 2, b: 1}
    assert (await api.http.get("/jobs/nightly")).json() == run
    assert not await api.blog.nightly.lock().locked()  # released

    await api.like(b)
    await api.like(b)
    again = (await api.http.post("/jobs/nightly")).json()
    assert again["fencing_token"] > run["fencing_token"]
    assert await api.blog.db.stored_likes() == {a: 2, b: 3}


async def test_a_stale_fencing_token_is_refused_by_the_database(api: Api) -> None:
    a = await api.new_post("A")
    b = await api.new_post("B")
    await api.like(a)

    paused, resume = asyncio.Event(), asyncio.Event()

    async def pause() -> None:  # a GC pause, a stalled VM...
        paused.set()
        await resume.wait()

    blog = api.blog
    stale = NightlyJob(blog.redis, blog.db, blog.board, lock_ttl=0.1, auto_renew=False)
    stale_run = asyncio.create_task(stale.run(before_commit=pause))
    await asyncio.wait_for(paused.wait(), 5)  # it holds the lock and read {a: 1}
    probe = blog.nightly.lock()
    deadline = asyncio.get_running_loop().time() + 5
    while await probe.locked():  # ... and its lease runs out meanwhile
        assert asyncio.get_running_loop().time() < deadline, "the stale lease never ended"
        await asyncio.sleep(0.02)

    await api.like(b)
    newer = await api.http.post("/jobs/nightly")  # a newer holder runs and writes
    assert newer.status_code == 200
    newer_token = newer.json()["fencing_token"]
    assert await blog.db.stored_likes() == {a: 1, b: 1}

    resume.set()  # the stale holder wakes up and writes what it read
    with pytest.raises(StaleFencingToken) as refused:
        await stale_run
    assert refused.value.token < newer_token
    assert refused.value.current == newer_token
    assert await blog.db.stored_likes() == {a: 1, b: 1}  # the stale {a: 1} was not applied
    last = (await api.http.get("/jobs/nightly")).json()
    assert last["fencing_token"] == newer_token


async def test_the_scheduler_runs_the_job_at_its_hour_and_skips_when_it_is_taken(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="examples.blog_api.jobs")
    post_id = await api.new_post("A")
    await api.like(post_id)
    utc = timezone.utc
    clock: Iterator[datetime] = iter(
        [
            datetime(2024, 5, 1, 2, 0, tzinfo=utc),
            datetime(2024, 5, 2, 3, 0, 5, tzinfo=utc),
            datetime(2024, 5, 2, 3, 0, 9, tzinfo=utc),
        ]
    )
    slept: list[float] = []
    holder = api.blog.nightly.lock()

    class Stop(Exception):
        pass

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:  # after the first run, another process takes the lock
            assert await holder.acquire()
        if len(slept) == 3:
            raise Stop

    with pytest.raises(Stop):
        await nightly_scheduler(api.blog.nightly, time(3, 0), sleep=sleep, now=lambda: next(clock))

    assert slept == [3600.0, 86400.0 - 5, 86400.0 - 9]
    first = await api.blog.db.last_run("nightly")
    assert first is not None
    assert holder.lease is not None
    assert first.fencing_token < holder.lease.fencing_token  # the second run wrote nothing
    assert await api.blog.db.stored_likes() == {post_id: 1}
    assert "another process is running it" in caplog.text
    await holder.release()


def test_seconds_until_the_next_run() -> None:
    utc = timezone.utc
    assert seconds_until(time(3, 0), datetime(2024, 5, 1, 2, 59, 30, tzinfo=utc)) == 30
    assert seconds_until(time(3, 0), datetime(2024, 5, 1, 3, 0, tzinfo=utc)) == 86400
    paris = timezone(timedelta(hours=2))
    assert seconds_until(time(3, 0), datetime(2024, 5, 1, 4, 0, tzinfo=paris)) == 3600  # 02:00Z


# -- wiring: database lifecycle, Redis from a URL, the fakeredis fallback ---------------------


async def test_the_database_is_created_on_first_run_and_kept(
    redis: Client, tmp_path: Path
) -> None:
    path = tmp_path / "data" / "blog.db"
    app = make_app(redis, path)  # with its nightly scheduler, stopped at shutdown
    async with serving(app) as http:
        assert await Api(app, http).new_post("Kept") == 1
    assert path.exists()

    async with serving(make_app(redis, path, nightly_at=None)) as http:
        assert (await http.get("/posts/1")).json()["title"] == "Kept"

    # A new database file under the same Redis: nothing cached for the old one shows.
    for leftover in tmp_path.joinpath("data").iterdir():
        leftover.unlink()
    async with serving(make_app(redis, path, nightly_at=None)) as http:
        assert (await http.get("/posts/1")).status_code == 404
        assert (await http.get("/posts/top")).json() == []


@pytest.mark.real_only
async def test_the_app_connects_to_the_redis_at_redis_url(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend.is_cluster or backend.url is None:
        pytest.skip("the app connects by URL to a standalone server")
    monkeypatch.setenv("REDIS_URL", backend.url)
    app = make_app(database=tmp_path / "blog.db", nightly_at=None)
    async with serving(app) as http:
        assert (await http.get("/health")).json() == {"status": "ok"}
        assert (await http.get("/admin/stats")).json()["redis"] == backend.url
        api = Api(app, http)
        await api.like(await api.new_post("Stored in the real Redis"))
    check = await backend.client()
    assert await check.keys("blog-*"), "nothing was written to the Redis at REDIS_URL"


async def test_with_no_redis_the_app_falls_back_to_fakeredis(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    caplog.set_level(logging.INFO, logger="examples.blog_api")
    app = make_app(database=tmp_path / "blog.db", nightly_at=None)
    assert "falling back to an in-process fakeredis" in caplog.text
    async with serving(app) as http:
        assert (await http.get("/health")).json() == {"status": "ok"}
        assert (await http.get("/admin/stats")).json()["redis"] == FAKEREDIS_LABEL
        api = Api(app, http)
        post_id = await api.new_post("Works without Redis")
        await api.like(post_id)
        assert await api.top() == [(post_id, "Works without Redis", 1, 1)]
        assert (await http.post("/jobs/nightly")).status_code == 200


async def test_admin_stats_report_the_cache_and_the_database(api: Api, tmp_path: Path) -> None:
    post_id = await api.new_post("A")
    await api.http.get(f"/posts/{post_id}")
    stats = (await api.http.get("/admin/stats")).json()
    assert stats["database"] == str(tmp_path / "blog.db")
    assert stats["db_post_reads"] == 0
    assert stats["cache"]["hits"] == 1
    assert stats["nightly_lock"] == api.blog.nightly.lock_name
    as_bo = await api.http.get("/admin/stats", headers={"authorization": f"Bearer {BO}"})
    assert as_bo.status_code == 403  # not an admin
    anonymous = await api.http.get("/admin/stats", headers={"authorization": ""})
    assert anonymous.status_code == 401


async def test_with_redis_down_reads_fail_open_and_what_needs_redis_is_a_503(
    tmp_path: Path,
) -> None:
    dead = aioredis.Redis.from_url("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        app = make_app(dead, tmp_path / "blog.db", nightly_at=None)
        async with serving(app) as http:
            post_id = await Api(app, http).new_post("Written to SQLite")  # write-through: DB only
            read = await http.get(f"/posts/{post_id}")
            assert read.status_code == 200
            assert read.json()["title"] == "Written to SQLite"
            assert "ratelimit" not in read.headers  # allowed without a known quota
            assert blog_of(app).db.post_reads == 1  # served from SQLite

            for method, path in (("POST", f"/posts/{post_id}/like"), ("POST", "/jobs/nightly")):
                refused = await http.request(method, path)
                assert refused.status_code == 503, (path, refused.text)
                assert refused.headers["retry-after"] == "1"
                # a problem document, and nothing of the exception (host, port, errno)
                assert refused.headers["content-type"] == "application/problem+json"
                assert refused.json().keys() == {"type", "title", "status", "detail"}
                assert not any(word in refused.text for word in ("127.0.0.1", "port", "Errno"))
            assert (await http.get("/health")).json() == {"status": "degraded"}
            assert (await http.get("/admin/stats")).json()["cache"]["errors"] >= 1
    finally:
        await dead.aclose()


# -- safe habits: tokens on writes, bounded ids, a quiet /health, problem documents -------------


async def test_every_write_needs_a_token_and_the_author_is_whoever_wrote(api: Api) -> None:
    anonymous = {"authorization": ""}
    wrong = {"authorization": "Bearer " + "x" * 30}
    for method, path, body in (
        ("POST", "/posts", {"title": "spam"}),
        ("PUT", "/posts/1", {"title": "defaced", "body": "!"}),
        ("POST", "/posts/1/like", None),
        ("POST", "/jobs/nightly", None),
    ):
        for headers in (anonymous, wrong):
            refused = await api.http.request(method, path, json=body, headers=headers)
            assert refused.status_code == 401, (method, path, refused.text)
            assert refused.headers["www-authenticate"] == "Bearer"
            assert refused.json() == problem(401, "a valid bearer token is required")
    assert await api.top() == []  # nothing was written
    assert (await api.http.get("/posts/1")).status_code == 404

    post_id = await api.new_post("ann's", token=ANN)
    assert (await api.http.get(f"/posts/{post_id}")).json()["author"] == "ann"
    claimed = await api.http.post("/posts", json={"title": "x", "author": "ann"})
    assert claimed.status_code == 422  # the author is not the client's to say

    as_bo = {"authorization": f"Bearer {BO}"}
    defaced = await api.http.put(
        f"/posts/{post_id}", json={"title": "x", "body": ""}, headers=as_bo
    )
    assert defaced.status_code == 403
    assert (await api.http.get(f"/posts/{post_id}")).json()["title"] == "ann's"
    job = await api.http.post("/jobs/nightly", headers=as_bo)
    assert job.status_code == 403  # bo is no admin
    liked = await api.http.post(f"/posts/{post_id}/like", headers=as_bo)
    assert liked.status_code == 200  # but may like
    bos = await api.new_post("bo's", token=BO)
    assert (await api.http.get(f"/posts/{bos}")).json()["author"] == "bo"


def test_tokens_must_be_long_enough_and_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match="too short"):
        create_app(fakeredis.FakeAsyncRedis(), ":memory:", tokens={"ann": "secret"})
    with pytest.raises(ValueError, match="admins"):
        create_app(fakeredis.FakeAsyncRedis(), ":memory:", tokens=TOKENS, admins={"eve"})
    monkeypatch.setenv("BLOG_TOKENS", f"ann={ANN}, bo={BO}")
    monkeypatch.setenv("BLOG_ADMINS", "bo")
    users = tokens_from_env()
    assert users.identify(f"Bearer {BO}") == Identity("bo", admin=True)
    assert users.identify(f"bearer {ANN}") == Identity("ann", admin=False)


async def test_ids_are_bounded(api: Api) -> None:
    for path in ("/posts/99999999999999999999", "/posts/0", "/posts/-1"):
        refused = await api.http.get(path)
        assert refused.status_code == 422, (path, refused.text)  # not a 500 (OverflowError)
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["errors"][0]["loc"] == ["path", "post_id"]
        assert "99999999999999999999" not in refused.text  # the input is not echoed
    put = await api.http.put("/posts/99999999999999999999", json={"title": "x", "body": ""})
    assert put.status_code == 422
    assert (await api.http.get(f"/posts/{2**63 - 1}")).status_code == 404


async def test_health_says_only_whether_the_app_is_healthy(api: Api, tmp_path: Path) -> None:
    health = await api.http.get("/health", headers={"authorization": ""})
    assert health.json() == {"status": "ok"}
    assert str(tmp_path) not in health.text
    assert api.blog.nightly.lock_name not in health.text


async def test_ipv6_clients_of_one_64_share_the_per_ip_limit(
    redis: Client, tmp_path: Path
) -> None:
    app = make_app(redis, tmp_path / "blog.db", rate_limit=5, nightly_at=None)
    statuses = []
    async with serving(app, ("2001:db8:77::1", 1)):
        for i in range(20):
            async with client_for(app, (f"2001:db8:77::{i + 1:x}", 40000)) as client:
                statuses.append((await client.get("/posts/top")).status_code)
    assert statuses.count(200) == 5


# -- idempotency keys on POST /posts ----------------------------------------------------------


async def test_a_retried_create_with_an_idempotency_key_makes_one_post(api: Api) -> None:
    headers = {"Idempotency-Key": "create-1"}
    first = await api.http.post("/posts", json={"title": "Once"}, headers=headers)
    again = await api.http.post("/posts", json={"title": "Once"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert (await api.http.get("/posts/2")).status_code == 404  # no second post
    other = await api.http.post("/posts", json={"title": "Twice"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["status"] == 422
    # another writer's same key is another record: bo's post is made
    bo = await api.http.post(
        "/posts",
        json={"title": "Once"},
        headers={**headers, "authorization": f"Bearer {BO}"},
    )
    assert bo.status_code == 201
    assert "idempotent-replayed" not in bo.headers
    assert bo.json()["author"] == "bo"


async def test_a_refused_create_is_not_stored(api: Api) -> None:
    headers = {"Idempotency-Key": "create-2", "authorization": "Bearer not-a-valid-token"}
    refused = await api.http.post("/posts", json={"title": "Later"}, headers=headers)
    assert refused.status_code == 401
    headers["authorization"] = f"Bearer {ANN}"
    made = await api.http.post("/posts", json={"title": "Later"}, headers=headers)
    assert made.status_code == 201
    assert "idempotent-replayed" not in made.headers
