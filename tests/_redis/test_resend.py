"""Lost replies: a command is applied once, or the call raises and it was applied at most once.

redis-py's default ``Retry`` (and ``RedisCluster``'s own retry loops) send a
command again when its reply was lost, which runs it twice. The executor owns
the resends of its commands: it resends what is safe to resend (reads, a plain
``SET``, scripts marked ``-- Resend: safe (...)``, anything that never left),
and raises ``RedisUnavailable`` for the rest.

Every test runs on a default client (its default ``Retry``) whose traffic goes
through fault proxies (``tests/_proxy.py``): a private ``redis-server``, and the
test cluster (``REDIS_CLUSTER_URL``) with a proxy in front of each primary
(``address_remap``). ``cut_replies`` lets the command reach Redis and run, then
resets the connection before its reply gets back: exactly the lost reply
redis-py resends. Each runs with the fast paths on and off (``_compat.py``).

Before arming a cut, each test makes the same kind of call once, so that the
connection the next call uses is connected and its script loaded: otherwise
the cut would take the reply of a connection handshake or of a NOSCRIPT
(neither ran anything, so those are resent, as they must be).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from aiocache_patterns import Cache, Leaderboard, RateLimiter, RedisUnavailable
from aiocache_patterns._redis import compat as _compat
from aiocache_patterns._redis import eviction as _eviction
from aiocache_patterns._redis.executor import executor_for
from aiocache_patterns._redis.resend import is_resend_safe
from aiocache_patterns._redis.scripts import Script
from tests._backends import cluster_availability, in_ci
from tests._proxy import FaultProxy
from tests._servers import private_redis, redis_server_binary

TIMEOUT = 2.0

COUNTED = Script("test_resend_counted", b"return redis.call('INCR', KEYS[1])")
#: Not really safe to resend (it counts): which is how a test can see that it was resent.
MARKED = Script(
    "test_resend_marked",
    b"-- Resend: safe (a test script: it counts, to show it ran twice)\n"
    b"return redis.call('INCR', KEYS[1])",
)


@dataclass
class Through:
    """A default client on a Redis whose every connection passes through a fault proxy."""

    client: Any
    proxies: list[FaultProxy] = field(default_factory=list)

    def cut_replies(self, after: int = 0) -> None:
        for proxy in self.proxies:
            proxy.cut_replies(after)

    def cut_request(self) -> None:
        for proxy in self.proxies:
            proxy.cut_request()

    def disarm(self) -> None:
        """Only the proxy the command went through has cut; the others must not, later."""
        for proxy in self.proxies:
            proxy.cut_replies(None)

    @property
    def cuts(self) -> int:
        return sum(proxy.cuts for proxy in self.proxies)

    async def drop_all(self) -> None:
        for proxy in self.proxies:
            await proxy.drop_all()


@pytest.fixture(params=["fast", "fallback"])
def paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The fast paths on, or off as when redis-py's internals are not what they expect."""
    if request.param == "fallback":
        monkeypatch.setattr(_compat, "FAST_PATHS", False)
    return str(request.param)


@pytest.fixture(autouse=True)
def no_eviction_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first write of a limiter or board reads the eviction policy in the
    background; its reply must not be the one a test cuts."""

    async def unchecked(client: Any, risk: Any) -> None:
        return None

    monkeypatch.setattr(_eviction, "_check", unchecked)


@pytest.fixture(params=["redis", "cluster"])
async def through(request: pytest.FixtureRequest, paths: str) -> AsyncIterator[Through]:
    if request.param == "redis":
        if redis_server_binary() is None:
            if in_ci():
                pytest.fail("redis-server is required in CI", False)
            pytest.skip("redis-server is not on PATH")
        async with private_redis() as server, FaultProxy("127.0.0.1", server.port) as proxy:
            client = aioredis.Redis(host="127.0.0.1", port=proxy.port)
            try:
                yield Through(client, [proxy])
            finally:
                await client.aclose()
        return
    url = cluster_availability().url
    if url is None:
        if in_ci():
            pytest.fail("the cluster backend is required in CI (REDIS_CLUSTER_URL)", False)
        pytest.skip("REDIS_CLUSTER_URL is not set")
    plain = aioredis.RedisCluster.from_url(url)
    try:
        await plain.initialize()
        primaries = [(str(n.host), int(n.port)) for n in plain.get_primaries()]
        await plain.flushall(target_nodes=aioredis.RedisCluster.PRIMARIES)  # as the backends do
    finally:
        await plain.aclose()
    async with contextlib.AsyncExitStack() as stack:
        proxies: dict[tuple[str, int], FaultProxy] = {}
        for host, port in primaries:
            proxies[(host, port)] = await stack.enter_async_context(FaultProxy(host, port))

        def remap(address: tuple[str, int]) -> tuple[str, int]:
            proxy = proxies.get(address)
            return address if proxy is None else ("127.0.0.1", proxy.port)

        cluster = aioredis.RedisCluster.from_url(url, address_remap=remap)
        try:
            await cluster.initialize()
            direct_ports = {port for _, port in primaries}
            assert all(node.port not in direct_ports for node in cluster.get_primaries())
            yield Through(cluster, list(proxies.values()))
        finally:
            await cluster.aclose()


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_log", "gcra"])
async def test_a_hit_whose_reply_was_lost_is_charged_once(
    through: Through, algorithm: Any
) -> None:
    limiter = RateLimiter(
        through.client, limit=10, window=600, algorithm=algorithm, timeout=TIMEOUT
    )
    assert (await limiter.peek("user")).remaining == 10  # connected, script loaded
    through.cut_replies()
    result = await limiter.hit("user")
    through.disarm()
    assert through.cuts == 1
    # The reply was lost and the script is not safe to resend: the limiter could not
    # tell, so it followed its policy (fail_open: allowed, marked degraded)...
    assert result.degraded
    assert result.allowed
    # ... and the hit counted once (a resend made it 8).
    assert (await limiter.peek("user")).remaining == 9


async def test_an_increment_whose_reply_was_lost_raises_and_applied_once(
    through: Through,
) -> None:
    board = Leaderboard(through.client, "resend", timeout=TIMEOUT)
    await board.submit("ann", 10)
    assert await board.increment("bob", 1) == 1  # warm: the script is loaded
    through.cut_replies()
    with pytest.raises(RedisUnavailable, match="may have been applied"):
        await board.increment("ann", 5)
    through.disarm()
    entry = await board.rank("ann")
    assert entry is not None
    assert entry.score == 15  # once, not 20


async def test_writes_whose_reply_was_lost_never_report_false(through: Through) -> None:
    """A resent DEL finds nothing and says 0, a resent submit says 'unchanged': a lie
    about a write that took effect. Now the call raises instead."""
    cache = Cache(through.client, namespace="resend", ttl=60, timeout=TIMEOUT)
    await cache.set("k", "v")
    assert await cache.delete("other") == 0  # warm
    through.cut_replies()
    with pytest.raises(RedisUnavailable):
        await cache.delete("k")
    through.disarm()
    assert await cache.get("k") is None  # it was deleted (once)

    loads = 0

    @cache.cached(key="post:{post_id}")
    async def get_post(post_id: int) -> str:
        nonlocal loads
        loads += 1
        return f"post {post_id}"

    assert await get_post(1) == "post 1"
    assert not await get_post.invalidate(post_id=2)  # warm
    through.cut_replies()
    with pytest.raises(RedisUnavailable):
        await get_post.invalidate(post_id=1)
    through.disarm()
    assert await get_post(1) == "post 1"
    assert loads == 2  # the invalidation took effect

    board = Leaderboard(through.client, "resend-submit", timeout=TIMEOUT)
    assert await board.submit("warm", 1)
    through.cut_replies()
    with pytest.raises(RedisUnavailable):
        await board.submit("bob", 3)
    through.disarm()
    entry = await board.rank("bob")
    assert entry is not None
    assert entry.score == 3
    assert through.cuts == 3


async def test_reads_and_plain_sets_are_resent(through: Through) -> None:
    cache = Cache(through.client, namespace="resend", ttl=60, timeout=TIMEOUT, fail_open=False)
    await cache.set("k", "v")
    through.cut_replies()
    assert await cache.get("k") == "v"
    through.disarm()
    assert await cache.get("k") == "v"  # warm: connected again
    through.cut_replies()
    await cache.set("k", "w")  # resent: the same value again
    through.disarm()
    assert await cache.get("k") == "w"
    assert through.cuts == 2
    assert cache.stats.errors == 0


async def test_a_pipeline_cut_midway_resends_only_what_is_safe(through: Through) -> None:
    """Replies 1-2 arrive, 3-4 are lost: the answered INCR is not sent again (redis-py's
    pipelines resend every command of a failed connection), the lost INCR raises, the
    lost GET is resent."""
    ex = executor_for(through.client)
    await ex.command("SET", b"t:{p}g", b"got", timeout=TIMEOUT)
    assert await ex.commands([("GET", b"t:{p}g")], TIMEOUT) == [b"got"]  # warm
    through.cut_replies(after=2)
    replies = await ex.commands(
        [
            ("INCR", b"t:{p}a"),
            ("GET", b"t:{p}g"),
            ("INCR", b"t:{p}b"),
            ("GET", b"t:{p}g"),
        ],
        TIMEOUT,
    )
    through.disarm()
    assert through.cuts == 1
    assert replies[0] == 1
    assert replies[1] == b"got"
    assert isinstance(replies[2], RedisUnavailable)
    assert replies[3] == b"got"
    counts = await ex.commands([("GET", b"t:{p}a"), ("GET", b"t:{p}b")], TIMEOUT)
    assert counts == [b"1", b"1"]


async def test_a_script_is_resent_only_if_it_says_it_is_safe(through: Through) -> None:
    ex = executor_for(through.client)
    assert await ex.script(COUNTED, [b"t:{s}c"], [], TIMEOUT) == 1  # loaded
    assert await ex.script(MARKED, [b"t:{s}m"], [], TIMEOUT) == 1
    through.cut_replies()
    with pytest.raises(RedisUnavailable, match="not sent again"):
        await ex.script(COUNTED, [b"t:{s}c"], [], TIMEOUT)
    through.disarm()
    assert await ex.get(b"t:{s}m", TIMEOUT) == b"1"  # warm: connected again
    through.cut_replies()
    assert await ex.script(MARKED, [b"t:{s}m"], [], TIMEOUT) == 3  # resent: it ran twice
    through.disarm()
    assert await ex.command("GET", b"t:{s}c", timeout=TIMEOUT) == b"2"  # once
    # a caller may vouch for one call of a script (a read-only mode of it, say)
    assert await ex.get(b"t:{s}c", TIMEOUT) == b"2"  # warm: connected again
    through.cut_replies()
    assert await ex.script(COUNTED, [b"t:{s}c"], [], TIMEOUT, resend_safe=True) == 4
    through.disarm()


async def test_a_command_that_never_left_is_sent_again(through: Through) -> None:
    """Connections the server closed while idle, and a reconnect that fails at first, are
    not lost replies: nothing was sent, so the INCR is sent (once) when it can be."""
    ex = executor_for(through.client)
    assert await ex.command("INCR", b"t:{n}", timeout=TIMEOUT) == 1
    await through.drop_all()
    await asyncio.sleep(0.05)  # the client's event loop sees the resets
    assert await ex.command("INCR", b"t:{n}", timeout=TIMEOUT) == 2
    await through.drop_all()
    for proxy in through.proxies:
        proxy.refuse = True  # accepted, then reset: the handshake fails
    incr = asyncio.create_task(ex.command("INCR", b"t:{n}", timeout=TIMEOUT))
    await asyncio.sleep(0.1)
    for proxy in through.proxies:
        proxy.refuse = False
    assert await incr == 3


async def test_a_request_cut_after_the_write_is_applied_at_most_once(through: Through) -> None:
    ex = executor_for(through.client)
    assert await ex.command("INCR", b"t:{w}", timeout=TIMEOUT) == 1
    through.cut_request()
    with pytest.raises(RedisUnavailable):
        await ex.command("INCR", b"t:{w}", timeout=TIMEOUT)
    through.disarm()
    assert await ex.command("GET", b"t:{w}", timeout=TIMEOUT) in (b"1", b"2")


async def test_a_moved_command_runs_once_on_its_new_node(paths: str) -> None:
    """A command the slot map sends to the wrong node gets MOVED (it did not run there)
    and is sent to the right one, once."""
    url = cluster_availability().url
    if url is None:
        if in_ci():
            pytest.fail("the cluster backend is required in CI (REDIS_CLUSTER_URL)", False)
        pytest.skip("REDIS_CLUSTER_URL is not set")
    client = aioredis.RedisCluster.from_url(url)
    try:
        await client.initialize()
        ex = executor_for(client)
        key = b"t:{moved}"
        await ex.command("DEL", key, timeout=TIMEOUT)
        slot = key_slot(key)
        manager = client.nodes_manager
        owner = manager.slots_cache[slot][0]
        wrong = next(n for n in client.get_primaries() if n.name != owner.name)
        manager.slots_cache[slot] = [wrong]  # a stale map, as after a resharding
        assert await ex.command("INCR", key, timeout=TIMEOUT) == 1
        assert manager.slots_cache[slot][0].name == owner.name  # redis-py learnt the move
        assert await ex.command("GET", key, timeout=TIMEOUT) == b"1"
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("args", "safe"),
    [
        (("GET", b"k"), True),
        ((b"get", b"k"), True),
        (("MGET", b"a", b"b"), True),
        (("ZREVRANGE", b"z", 0, 9, "WITHSCORES"), True),
        (("SET", b"k", b"v"), True),
        (("SET", b"k", b"v", "PX", 1000), True),
        (("set", b"k", b"v", b"ex", 10, "KEEPTTL"), True),
        (("SET", b"k", b"v", "NX", "PX", 1000), False),  # a second run answers nil
        (("SET", b"k", b"v", "GET"), False),  # a second run answers the new value
        (("SET", b"k"), False),
        (("DEL", b"k"), False),
        (("UNLINK", b"k"), False),
        (("INCR", b"k"), False),
        (("PEXPIRE", b"k", 100), False),
        (("PUBLISH", b"c", b"m"), False),
        (("EVALSHA", "0" * 40, 1, b"k"), False),
    ],
)
def test_which_commands_are_resent(args: tuple[Any, ...], safe: bool) -> None:
    assert is_resend_safe(args) is safe


def test_a_script_is_resent_as_its_source_says() -> None:
    assert is_resend_safe(("EVALSHA", MARKED.sha, 1, b"k"), MARKED)
    assert not is_resend_safe(("EVALSHA", COUNTED.sha, 1, b"k"), COUNTED)
