"""A small blog API on SQLite, with every aiocache_patterns pattern used as a user would.

* ``GET /posts/{id}``: cache-aside through ``@cache.cached`` (one loader per key
  across processes, early recomputation near expiry: the library's defaults).
  A missing post is cached too (``None`` is a value), so a flood of requests
  for it does not reach the database.
* ``PUT /posts/{id}``: write the database, then invalidate the cached post.
* ``POST /posts``: write-through: the database first, then the cache, so the
  first read of a new post is already a hit (and replaces a cached "not found").
  With an ``Idempotency-Key`` header it runs once per key and writer
  (``IdempotencyMiddleware``): a client that retries after a timeout gets the
  post it created, marked ``Idempotent-Replayed: true``, not a second post.
* ``POST /posts/{id}/like`` and ``GET /posts/top``: a leaderboard of likes;
  equal counts rank by who got there first.
* Rate limits: every request per client IP (``RateLimitMiddleware``; IPv6
  clients per /64), and a stricter one on the write routes
  (``RateLimitDependency``), both with the IETF ``RateLimit`` headers.
* ``POST /jobs/nightly``: the nightly job (see ``jobs.py``) run now, under a
  lock with a fencing token the database checks; 409 while another holder
  has the lock.

Safe habits, since examples get copied: every write needs a bearer token (the
author of a post is whoever's token wrote it, and only they may edit it; only
admins may run the job); ids are bounded; ``/health`` says only whether the
app is healthy (the details are at ``/admin/stats``, for admins); every error
is an RFC 9457 problem document that never carries exception text. SQL is
parameterised throughout.

``create_app()`` builds the app; its lifespan opens the database (creating it
on first run) and owns the cache's background tasks and the nightly scheduler.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import redis as sync_redis
import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from aiocache_patterns import (
    Cache,
    Leaderboard,
    LockLost,
    LockNotAcquired,
    RateLimiter,
    RateLimitResult,
    RedisUnavailable,
)
from aiocache_patterns.integrations.asgi import (
    IdempotencyMiddleware,
    RateLimitDependency,
    RateLimitMiddleware,
    Scope,
)

from .auth import Identity, Tokens, tokens_from_env
from .db import Database, JobRun, PostRow, StaleFencingToken, utcnow
from .jobs import NIGHTLY, NightlyJob, nightly_scheduler
from .problems import install_problem_handlers, problem

__all__ = [
    "DEFAULT_DATABASE",
    "DEFAULT_REDIS_URL",
    "FAKEREDIS_LABEL",
    "Blog",
    "blog_of",
    "connect_redis",
    "create_app",
]

logger = logging.getLogger("examples.blog_api")

#: Where the database is created when none is given: beside this file.
DEFAULT_DATABASE = Path(__file__).resolve().parent / "blog.db"
#: The Redis used when neither ``redis`` nor ``REDIS_URL`` says otherwise.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: What ``/admin/stats`` reports when the app fell back to an in-process fakeredis.
FAKEREDIS_LABEL = "fakeredis (in-process fallback)"
#: The largest post id (SQLite's INTEGER): a larger one in a path is a 422, not a 500.
MAX_POST_ID = 2**63 - 1


class Blog:
    """What the routes use: one per running app, built by its lifespan.

    Every Redis key is namespaced by the database's ``instance_id``: a new
    database file never sees what was cached or counted for a deleted one.
    """

    def __init__(
        self,
        redis: Any,
        redis_label: str,
        db: Database,
        *,
        cache_ttl: float,
        write_limit: RateLimitDependency,
        tokens: Tokens,
    ) -> None:
        self.redis = redis
        self.redis_label = redis_label
        self.db = db
        self.write_limit = write_limit
        #: Who may write: bearer tokens and the identities they stand for.
        self.tokens = tokens
        namespace = f"blog-{db.instance_id}"
        self.cache = Cache(redis, namespace=namespace, ttl=cache_ttl)
        #: Likes per post id, best first; equal counts: who got there first.
        self.board: Leaderboard[str] = Leaderboard(redis, f"{namespace}:likes")
        self.nightly = NightlyJob(redis, db, self.board)

        @self.cache.cached(key="post:{post_id}")
        async def get_post(post_id: int) -> PostRow | None:
            return await db.get_post(post_id)

        #: The cached read: ``await blog.get_post(7)``;
        #: after an update, ``await blog.get_post.invalidate(post_id=7)``.
        self.get_post = get_post


def blog_of(app: FastAPI) -> Blog:
    """The running app's :class:`Blog` (only between its lifespan's start and end)."""
    blog = getattr(app.state, "blog", None)
    if not isinstance(blog, Blog):
        raise RuntimeError("the blog app is not running: enter its lifespan first")
    return blog


def _blog(request: Request) -> Blog:
    return blog_of(request.app)


BlogDep = Annotated[Blog, Depends(_blog)]


async def _write_limit(request: Request, response: Response) -> RateLimitResult | None:
    """The stricter per-client limit of the write routes (``policy="writes"``).

    It runs before the token check, so guessing tokens is rate limited too."""
    return await blog_of(request.app).write_limit(request, response)


def _identity(request: Request) -> Identity:
    """Who is writing: the ``Authorization: Bearer <token>`` of the request (401 if none)."""
    return blog_of(request.app).tokens.identify(request.headers.get("authorization"))


def _admin(request: Request) -> Identity:
    identity = _identity(request)
    if not identity.admin:
        raise HTTPException(403, "this needs an admin token")
    return identity


WRITES = [Depends(_write_limit)]
Writer = Annotated[Identity, Depends(_identity)]
Admin = Annotated[Identity, Depends(_admin)]
PostId = Annotated[int, PathParam(ge=1, le=MAX_POST_ID)]


# -- the wire format ------------------------------------------------------------------


class NewPost(BaseModel):
    """A new post; its author is whoever's token wrote it (an ``author`` field is refused)."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=100_000)


class PostUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    body: str = Field(max_length=100_000)


class Post(BaseModel):
    id: int
    title: str
    body: str
    author: str
    created_at: str
    updated_at: str


class Liked(BaseModel):
    id: int
    likes: int
    rank: int


class TopPost(BaseModel):
    rank: int
    id: int
    title: str
    author: str
    likes: int


class NightlyRun(BaseModel):
    job: str
    fencing_token: int
    ran_at: str | None
    posts_synced: int

    @classmethod
    def of(cls, run: JobRun) -> NightlyRun:
        return cls(
            job=run.name,
            fencing_token=run.fencing_token,
            ran_at=run.ran_at,
            posts_synced=run.posts_synced,
        )


class Health(BaseModel):
    status: str


class Stats(BaseModel):
    """What ``/admin/stats`` shows admins: where the data lives, how the cache does."""

    redis: str
    database: str
    db_post_reads: int
    cache: dict[str, int]
    nightly_lock: str


# -- routes -----------------------------------------------------------------------------

router = APIRouter()


@router.get("/health")
async def health(blog: BlogDep) -> Health:
    """Liveness only: nothing about where the data lives (that is ``/admin/stats``)."""
    try:
        redis_ok = bool(await asyncio.wait_for(blog.redis.ping(), timeout=1.0))
    except (RedisError, OSError, asyncio.TimeoutError):
        redis_ok = False
    return Health(status="ok" if redis_ok else "degraded")


@router.get("/admin/stats")
async def stats(blog: BlogDep, admin: Admin) -> Stats:
    """Where the data lives and how well the cache is doing (admins only)."""
    return Stats(
        redis=blog.redis_label,
        database=blog.db.path,
        db_post_reads=blog.db.post_reads,
        cache=asdict(blog.cache.stats),
        nightly_lock=blog.nightly.lock_name,
    )


@router.post("/posts", status_code=201, dependencies=WRITES)
async def create_post(new: NewPost, blog: BlogDep, writer: Writer, response: Response) -> Post:
    """Write-through: the database first, then the cache (a failed insert caches nothing)."""
    post_id = await blog.db.next_post_id()
    now = utcnow()
    row = PostRow(
        id=post_id,
        title=new.title,
        body=new.body,
        author=writer.name,
        created_at=now,
        updated_at=now,
    )
    key = blog.get_post.key_for(post_id=post_id)  # the very key GET /posts/{id} reads
    await blog.cache.write_through(key, row, blog.db.insert_post)
    response.headers["Location"] = f"/posts/{post_id}"
    return Post.model_validate(row)


@router.get("/posts/top")
async def top_posts(blog: BlogDep, n: Annotated[int, Query(ge=1, le=100)] = 10) -> list[TopPost]:
    """The ``n`` most liked posts, with their titles (cached reads, sent as one MGET)."""
    entries = await blog.board.top(n)
    posts = await asyncio.gather(*(blog.get_post(int(entry.member)) for entry in entries))
    return [
        TopPost(
            rank=entry.rank,
            id=post["id"],
            title=post["title"],
            author=post["author"],
            likes=int(entry.score),
        )
        for entry, post in zip(entries, posts, strict=True)
        if post is not None
    ]


@router.get("/posts/{post_id}")
async def read_post(post_id: PostId, blog: BlogDep) -> Post:
    """Cache-aside: a hit is one GET; a miss loads from SQLite once, whoever asks."""
    post = await blog.get_post(post_id)
    if post is None:
        raise HTTPException(404, f"post {post_id} not found")
    return Post.model_validate(post)


@router.put("/posts/{post_id}", dependencies=WRITES)
async def update_post(post_id: PostId, change: PostUpdate, blog: BlogDep, writer: Writer) -> Post:
    """Update the database, then invalidate: the next read loads the new row.

    Only the post's author may change it (checked in the same statement as the
    update, so a concurrent change of author cannot slip between)."""
    post = await blog.db.update_post(post_id, change.title, change.body, author=writer.name)
    if post is None:
        if await blog.get_post(post_id) is None:
            raise HTTPException(404, f"post {post_id} not found")
        raise HTTPException(403, "only the post's author may change it")
    await blog.get_post.invalidate(post_id=post_id)
    return Post.model_validate(post)


@router.post("/posts/{post_id}/like", dependencies=WRITES)
async def like_post(post_id: PostId, blog: BlogDep, writer: Writer) -> Liked:
    if await blog.get_post(post_id) is None:
        raise HTTPException(404, f"post {post_id} not found")
    likes = await blog.board.increment(str(post_id), 1)
    entry = await blog.board.rank(str(post_id))
    return Liked(id=post_id, likes=int(likes), rank=entry.rank if entry else 0)


@router.post("/jobs/nightly", dependencies=WRITES)
async def run_nightly(blog: BlogDep, admin: Admin) -> NightlyRun:
    """Run the nightly job now, under its lock (admins only); 409 if another holder has it."""
    try:
        run = await blog.nightly.run()
    except LockNotAcquired:
        raise HTTPException(409, "the nightly job is already running") from None
    except (StaleFencingToken, LockLost):
        logger.warning("nightly job run by %s lost its lock before it could write", admin.name)
        raise HTTPException(409, "this run lost its lock before it could write") from None
    return NightlyRun.of(run)


@router.get("/jobs/nightly")
async def last_nightly(blog: BlogDep) -> NightlyRun:
    """The last run the database accepted (its fencing token is the newest it has seen)."""
    run = await blog.db.last_run(NIGHTLY)
    if run is None:
        raise HTTPException(404, "the nightly job has not run yet")
    return NightlyRun.of(run)


async def _redis_unavailable(request: Request, exc: Exception) -> Response:
    # Reads fail open (served from SQLite); what needs Redis (an invalidation,
    # a lock, a leaderboard write) cannot be done without it. The reason is
    # logged, never sent: it may name hosts, ports or keys.
    logger.warning("%s %s: Redis is unavailable (%s)", request.method, request.url.path, exc)
    detail = "a service this request needs is unavailable; try again shortly"
    return problem(503, detail, headers={"Retry-After": "1"})


# -- wiring -----------------------------------------------------------------------------


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _describe(redis: Any) -> str:
    if type(redis).__module__.startswith("fakeredis"):
        return "fakeredis"
    if isinstance(redis, aioredis.RedisCluster):
        return "redis cluster"
    kwargs = redis.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


def connect_redis(url: str) -> tuple[Any, str]:
    """A Redis client for ``url`` if a server answers there, else an in-process fakeredis.

    Returns the client and a label for logs and ``/health``. The probe is
    synchronous (it runs before any event loop) and gives up after a second.
    """
    shown = _redacted(url)
    try:
        probe = sync_redis.Redis.from_url(
            url, socket_connect_timeout=1.0, socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
        )
        with probe:
            probe.ping()
    except (RedisError, OSError, ValueError) as exc:
        logger.warning(
            "no Redis answers at %s (%s): falling back to an in-process fakeredis. "
            "Cache, likes and rate limits are then per process and lost when it stops.",
            shown,
            exc,
        )
        try:
            import fakeredis
        except ImportError:
            raise RuntimeError(
                f"no Redis at {shown}, and fakeredis is not installed for the fallback: "
                "python -m pip install 'fakeredis[lua]'"
            ) from exc
        return fakeredis.FakeAsyncRedis(), FAKEREDIS_LABEL
    logger.info("using Redis at %s", shown)
    return aioredis.Redis.from_url(url), shown


@asynccontextmanager
async def _scheduled(job: NightlyJob, at: time | None) -> AsyncIterator[None]:
    if at is None:
        yield
        return
    task = asyncio.get_running_loop().create_task(nightly_scheduler(job, at))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _writer_of(users: Tokens) -> Callable[[Scope], str | None]:
    """Who wrote a request (its bearer token's user), bound into its idempotency key:
    one writer's key never reaches another's post. None for a missing or bad token
    (the route answers 401, which is never stored)."""

    def writer(scope: Scope) -> str | None:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                try:
                    return users.identify(value.decode("latin-1")).name
                except HTTPException:
                    return None
        return None

    return writer


def create_app(
    redis: Any = None,
    database: str | os.PathLike[str] = DEFAULT_DATABASE,
    *,
    redis_url: str | None = None,
    rate_limit: int = 100,
    rate_window: float = 60.0,
    write_limit: int = 20,
    write_window: float = 60.0,
    cache_ttl: float = 600.0,
    nightly_at: time | None = time(3, 0),
    tokens: Mapping[str, str] | None = None,
    admins: frozenset[str] | set[str] = frozenset(),
) -> FastAPI:
    """The blog app.

    Args:
        redis: a ``redis.asyncio.Redis``, ``RedisCluster`` or ``FakeAsyncRedis``
            (the caller closes it). ``None``: connect to ``redis_url``, else
            ``$REDIS_URL``, else ``redis://127.0.0.1:6379/0``; if nothing answers
            there, fall back to an in-process fakeredis (logged). The app closes
            a client it made.
        database: the SQLite file, created with its schema on first run.
        rate_limit, rate_window: requests per client IP per window (seconds),
            every route but ``/health``.
        write_limit, write_window: writes per client IP per window, on the
            write routes (on top of ``rate_limit``).
        cache_ttl: how long a post stays cached (seconds).
        nightly_at: when the nightly job runs (UTC); ``None``: only on demand.
        tokens: who may write: ``{user: bearer token}`` (tokens of at least 16
            characters). ``None``: from ``$BLOG_TOKENS`` (``ann=<token>,bo=<token>``);
            with none at all, every write is refused (401).
        admins: the users who may run the nightly job and read ``/admin/stats``
            (``None`` above: from ``$BLOG_ADMINS``, ``ann,bo``).
    """
    users = tokens_from_env() if tokens is None else Tokens(tokens, admins)
    if not users:
        logger.warning("no write tokens (BLOG_TOKENS): every write will be refused with 401")
    owns_redis = redis is None
    if redis is None:
        redis, redis_label = connect_redis(
            redis_url or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
        )
    else:
        redis_label = _describe(redis)
    client = redis
    writes = RateLimitDependency(
        RateLimiter(client, write_limit, write_window, namespace="blog-rl-writes"),
        policy="writes",
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            db = await Database.open(database)
            try:
                blog = Blog(
                    client,
                    redis_label,
                    db,
                    cache_ttl=cache_ttl,
                    write_limit=writes,
                    tokens=users,
                )
                app.state.blog = blog
                async with blog.cache, _scheduled(blog.nightly, nightly_at):
                    logger.info(
                        "blog example up: Redis %s, database %s (instance %s)",
                        redis_label,
                        db.path,
                        db.instance_id,
                    )
                    yield
            finally:
                app.state.blog = None
                await db.close()
        finally:
            if owns_redis:
                await client.aclose()

    app = FastAPI(title="aiocache_patterns blog example", lifespan=lifespan)
    app.include_router(router)
    install_problem_handlers(app)
    app.add_exception_handler(RedisUnavailable, _redis_unavailable)
    # Inside the rate limit (added first: Starlette runs the last added outermost), so
    # replays are rate limited too. Only POST /posts is documented as taking a key.
    app.add_middleware(
        IdempotencyMiddleware,
        redis=client,
        namespace="blog-idem",
        ttl=24 * 3600,
        methods=("POST",),
        principal=_writer_of(users),
    )
    app.add_middleware(
        RateLimitMiddleware,
        limiter=RateLimiter(client, rate_limit, rate_window, namespace="blog-rl-ip"),
        policy="per-ip",
        exempt={"/health"},
    )
    return app
