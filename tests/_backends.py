"""The Redis backends every behaviour test runs on.

Three backends, one parametrized ``backend`` fixture (see ``conftest.py``):

``fakeredis``
    In-process ``fakeredis.FakeAsyncRedis`` with Lua (``lupa``), one fresh
    ``FakeServer`` per test. Always available.
``redis``
    A real standalone server: the one at ``REDIS_URL`` when it is set and
    that database is empty (the tests FLUSHDB it before every test and once more
    at the end, so they refuse a database holding keys they did not create,
    unless ``AIOCACHE_PATTERNS_TESTS_MAY_FLUSH=1``); else a private
    ``redis-server`` the test session starts on a free loopback port (nothing
    on disk, killed at exit) when the binary is on PATH; else none. A Redis
    that happens to answer on 6379 is never used unless ``REDIS_URL`` names it.
``cluster``
    A real Redis Cluster at ``REDIS_CLUSTER_URL`` (no default; ``.ci/cluster start
    DIR`` makes one), when it is empty: the tests FLUSHALL every primary before
    every test and at the end, and refuse a cluster holding other keys, as above.

A real backend that is not available is not run (``conftest.py`` deselects its
tests and says so once, in the header), except with ``CI=true``, where its
tests run and fail.
"""

from __future__ import annotations

import atexit
import functools
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import fakeredis
import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisClusterException, RedisError

from tests._servers import RedisProcess, redis_server_binary

if TYPE_CHECKING:
    from collections.abc import Callable

#: Any client a test may get: ``FakeAsyncRedis`` is a ``redis.asyncio.Redis``.
Client: TypeAlias = aioredis.Redis | aioredis.RedisCluster

BackendName = Literal["fakeredis", "redis", "cluster"]
BACKEND_NAMES: tuple[BackendName, ...] = ("fakeredis", "redis", "cluster")

#: The database the private session server's tests use (as CI's ``REDIS_URL``).
PRIVATE_DB = 9

#: The fakeredis server mimics the Redis major version CI runs (7.x).
FAKE_SERVER_VERSION = (7,)

_PROBE_CONNECT_TIMEOUT = 0.5
_PROBE_TIMEOUT = 2.0


def in_ci() -> bool:
    """True when a missing real backend must fail instead of skip (``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


@dataclass(frozen=True)
class Availability:
    """Outcome of probing one real backend: a usable URL, or why there is none.

    ``source`` says where the URL came from, for people (``"REDIS_URL"``, or
    ``"private redis-server ..."``).
    """

    url: str | None
    reason: str = ""
    source: str = ""


@functools.cache
def standalone_availability() -> Availability:
    """The standalone server, decided once per session (cached).

    ``REDIS_URL`` when set (probed with PING); else a private ``redis-server``
    started here on a free port when the binary is on PATH; else none.
    """
    env_url = os.environ.get("REDIS_URL", "").strip()
    if not env_url:
        return _private_availability()
    try:
        with redis.Redis.from_url(
            env_url,
            socket_connect_timeout=_PROBE_CONNECT_TIMEOUT,
            socket_timeout=_PROBE_TIMEOUT,
        ) as client:
            client.ping()
            refusal = _claim(env_url, "REDIS_URL", client.dbsize())
    except (RedisError, OSError) as exc:
        return Availability(None, f"REDIS_URL={env_url} does not answer PING: {exc}")
    if refusal:
        return Availability(None, refusal)
    return Availability(env_url, source="REDIS_URL")


#: Set to 1 to let the tests flush a database that already holds keys
#: (CI does, for its own scratch database).
MAY_FLUSH_ENV = "AIOCACHE_PATTERNS_TESTS_MAY_FLUSH"


def _claim(url: str, name: str, keys: int) -> str:
    """Take the database at ``url`` for this session, or say why not.

    The tests flush their database before every test, so they take only one
    that is empty (or that ``MAY_FLUSH_ENV`` declares disposable): data they
    did not create is never touched. A database taken is emptied again when
    the session ends, so the next run finds it empty too.
    """
    if keys and os.environ.get(MAY_FLUSH_ENV, "").strip() not in {"1", "true", "yes"}:
        return (
            f"{name}={url} holds {keys} keys the tests did not create, and the tests "
            f"flush their database: point {name} at an empty one (or set "
            f"{MAY_FLUSH_ENV}=1 if its data is disposable)"
        )
    atexit.register(_empty_quietly, url, name)
    return ""


def _empty_quietly(url: str, name: str) -> None:
    """Empty what the session used at ``url`` (its test data), at exit."""
    try:
        if name == "REDIS_CLUSTER_URL":
            with redis.RedisCluster.from_url(url, socket_timeout=_PROBE_TIMEOUT) as cluster:
                cluster.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
        else:
            with redis.Redis.from_url(url, socket_timeout=_PROBE_TIMEOUT) as client:
                client.flushdb()
    except (RedisClusterException, RedisError, OSError):
        pass  # gone already: nothing of ours is left to clean


def _private_availability() -> Availability:
    if redis_server_binary() is None:
        return Availability(
            None,
            "REDIS_URL is not set and no redis-server on PATH: install redis-server "
            "(the tests start a private one) or set REDIS_URL (its database is flushed)",
        )
    last: RuntimeError | None = None
    for _ in range(3):  # the free port can be taken between probe and bind
        server = RedisProcess()
        try:
            server.start_blocking()
        except RuntimeError as exc:
            server.close()
            last = exc
            continue
        atexit.register(server.close)
        url = f"redis://127.0.0.1:{server.port}/{PRIVATE_DB}"
        return Availability(url, source=f"private redis-server on 127.0.0.1:{server.port}")
    return Availability(None, f"a private redis-server did not start: {last}")


@functools.cache
def cluster_availability() -> Availability:
    """Probe the cluster at ``REDIS_CLUSTER_URL`` once per session (cached)."""
    url = os.environ.get("REDIS_CLUSTER_URL", "").strip()
    if not url:
        return Availability(
            None, "REDIS_CLUSTER_URL is not set: `bash .ci/cluster start DIR` makes one"
        )
    try:
        client = redis.RedisCluster.from_url(
            url,
            socket_connect_timeout=_PROBE_CONNECT_TIMEOUT,
            socket_timeout=_PROBE_TIMEOUT,
        )
        try:
            client.ping(target_nodes=redis.RedisCluster.PRIMARIES)
            keys = client.dbsize(target_nodes=redis.RedisCluster.PRIMARIES)  # summed
            refusal = _claim(url, "REDIS_CLUSTER_URL", int(keys))
        finally:
            client.close()
    except (RedisClusterException, RedisError, OSError) as exc:
        return Availability(None, f"REDIS_CLUSTER_URL={url} is not a usable cluster: {exc}")
    if refusal:
        return Availability(None, refusal)
    return Availability(url)


@dataclass(eq=False)
class Backend:
    """One backend for one test: makes clients, and closes them all at teardown.

    ``name`` is ``"fakeredis"``, ``"redis"`` or ``"cluster"``; ``url`` is the
    server's URL (``None`` for fakeredis).
    """

    name: BackendName
    url: str | None
    _make: Callable[..., Client] = field(repr=False)
    _clients: list[Client] = field(default_factory=list, repr=False)

    @property
    def is_fake(self) -> bool:
        return self.name == "fakeredis"

    @property
    def is_cluster(self) -> bool:
        return self.name == "cluster"

    async def client(self, *, decode_responses: bool = False, **kwargs: Any) -> Client:
        """A fresh client on this backend's data, closed when the test ends.

        Extra keyword arguments go to the client's constructor (e.g.
        ``socket_timeout``, ``max_connections``). A cluster client has already
        loaded the slot map when returned.
        """
        client = self._make(decode_responses=decode_responses, **kwargs)
        self._clients.append(client)
        if isinstance(client, aioredis.RedisCluster):
            await client.initialize()
        return client

    def sync_client(self, *, decode_responses: bool = False, **kwargs: Any) -> Client:
        """:meth:`client` for code that makes its client outside a coroutine: a
        cluster client loads its slot map on first use. Closed when the test ends."""
        client = self._make(decode_responses=decode_responses, **kwargs)
        self._clients.append(client)
        return client

    async def flush(self) -> None:
        """Empty the backend: FLUSHDB (standalone) / FLUSHALL on every primary."""
        client = self._make(decode_responses=False)
        try:
            if isinstance(client, aioredis.RedisCluster):
                await client.flushall(target_nodes=aioredis.RedisCluster.PRIMARIES)
            else:
                await client.flushdb()
        finally:
            await client.aclose()

    async def aclose(self) -> None:
        """Close every client :meth:`client` made (newest first)."""
        clients, self._clients = self._clients, []
        errors: list[BaseException] = []
        for client in reversed(clients):
            try:
                await client.aclose()
            except Exception as exc:  # close the rest, then report
                errors.append(exc)
        if errors:
            raise errors[0]


async def all_keys(client: Client, pattern: str = "*") -> list[Any]:
    """KEYS ``pattern`` over the whole keyspace.

    On a cluster, redis-py sends a bare KEYS (and DBSIZE) to ONE random node;
    this asks every primary.
    """
    if isinstance(client, aioredis.RedisCluster):
        keys: list[Any] = await client.keys(pattern, target_nodes=aioredis.RedisCluster.PRIMARIES)
        return keys
    return await client.keys(pattern)


async def key_count(client: Client) -> int:
    """DBSIZE over the whole keyspace (summed over every primary on a cluster)."""
    if isinstance(client, aioredis.RedisCluster):
        return await client.dbsize(target_nodes=aioredis.RedisCluster.PRIMARIES)
    return await client.dbsize()


def make_backend(name: BackendName, url: str | None) -> Backend:
    """Build the :class:`Backend` ``name`` (``url`` must come from a probe for real ones)."""
    if name == "fakeredis":
        server = fakeredis.FakeServer(version=FAKE_SERVER_VERSION)

        def make_fake(**kwargs: Any) -> Client:
            fake: aioredis.Redis = fakeredis.FakeAsyncRedis(server=server, **kwargs)
            return fake

        return Backend(name, None, make_fake)
    if url is None:
        raise ValueError(f"backend {name!r} needs a URL")
    if name == "redis":

        def make_standalone(**kwargs: Any) -> Client:
            return aioredis.Redis.from_url(url, **kwargs)

        return Backend(name, url, make_standalone)

    def make_cluster(**kwargs: Any) -> Client:
        return aioredis.RedisCluster.from_url(url, **kwargs)

    return Backend(name, url, make_cluster)
