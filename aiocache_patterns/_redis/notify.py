"""Wake-ups over Redis pub/sub: one subscription per process, shared by waiters.

Waiters (for a lock, a semaphore, a recompute) register a token on a channel
and wait in an ``Inbox``. Scripts that free something PUBLISH
``<token>[:<payload>]`` naming the waiter whose turn it is (an empty token
means "anyone"); the payload reaches that waiter. One ``PubSub``
connection and one reader task per client carry every channel this process
waits on; a channel is subscribed while someone waits on it.

Notifications are a fast path, never the only path: a waiter always has a
fallback deadline (the holder's remaining lease, or a short poll), so a lost
message (a reconnect, a failover) costs at most that delay. They are hints,
never proof: anyone who can PUBLISH can send one, so a waiter that is woken
goes and looks in Redis.

Subscribing runs in a task of the notifier's own, which the waiter awaits: a
waiter that is cancelled meanwhile always sees its ``CancelledError`` (awaiting
redis-py's write directly could lose it: redis-py writes under
``asyncio.wait_for``, which on Python 3.11 may swallow a cancellation,
CPython gh-86296), and the subscription, shared, carries on.

Without channel permissions (Redis 7 ACL users get none by default), SUBSCRIBE
and the scripts' PUBLISH are refused: the notifier logs one warning naming the
permission to grant (``&<namespace>:*`` or ``allchannels``), and waiters on
those channels poll (every ``poll_interval``) instead of subscribing, trying
again every ``DENIED_RETRY`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from typing import Any, Final

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.crc import key_slot

from ..errors import RedisUnavailable
from .clients import NO_PERMISSION_ERRORS
from .cluster import routable
from .executor import executor_for

__all__ = [
    "DENIED_RETRY",
    "Inbox",
    "Notifier",
    "ShardedNotifier",
    "channel_pattern",
    "hand_over_locally",
    "local_releases",
    "notifier_for",
    "releasing",
]

logger = logging.getLogger("aiocache_patterns.notify")

_ANYONE = b""
_MESSAGES: Final = frozenset({"message", "smessage", b"message", b"smessage"})
_SUBSCRIBED: Final = frozenset({"subscribe", "ssubscribe", b"subscribe", b"ssubscribe"})

#: Unsubscribing and closing a pub/sub connection never take longer than this.
_CLEANUP_TIMEOUT = 1.0
_RECANCEL = 0.05  # how often a reader that swallowed its cancel is cancelled again

#: After Redis refused a channel (no ACL permission), waiters on channels of the same
#: pattern poll instead of subscribing for this long (seconds), then try again.
DENIED_RETRY: Final = 60.0


class Inbox:
    """Where one waiter's wake-ups arrive. A wake-up that comes while nobody
    waits is kept for the next ``wait()``, never lost.

    ``granted`` is set only by ``hand_over_locally``: a lock handed to this
    waiter, as the release script's own reply told a releaser in this process:
    ``(fencing token, ms of the hand-off lease it was given)``.
    """

    __slots__ = ("_future", "_loop", "_pending", "granted")

    def __init__(self) -> None:
        self._future: asyncio.Future[bytes | None] | None = None
        self._pending: bytes | None = None
        self._loop = asyncio.get_running_loop()
        #: A lock handed to this waiter (Redis's reply to the releaser): its fencing
        #: token and its lease in ms.
        self.granted: tuple[int, int] | None = None

    def deliver(self, payload: bytes) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_result(payload)
        elif self._pending is None or payload:
            self._pending = payload

    async def wait(self, timeout: float) -> bytes | None:
        """The next wake-up's payload (``b""`` if it had none), or None after ``timeout``."""
        if self._pending is not None:
            payload, self._pending = self._pending, None
            return payload
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes | None] = loop.create_future()
        self._future = future
        timer = loop.call_later(timeout, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()
            self._future = None


def _expire(future: asyncio.Future[bytes | None]) -> None:
    if not future.done():
        future.set_result(None)


class Notifier:
    """Pub/sub wake-ups for one client. Use ``notifier_for``.

    ``sharded``: subscribe with SSUBSCRIBE (a cluster node's shard channels) rather
    than SUBSCRIBE; see ``ShardedNotifier``.
    """

    def __init__(self, client: Any, *, sharded: bool = False) -> None:
        self._client = client
        self._sharded = sharded
        self._executor = executor_for(client)
        self._waiters: dict[bytes, dict[bytes, Inbox]] = {}
        self._subscribed: set[bytes] = set()
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cleanup: set[asyncio.Task[None]] = set()
        #: Subscriptions being made, by channel (awaited by every waiter on it).
        self._subscribing: dict[bytes, asyncio.Task[None]] = {}
        #: Channels whose SUBSCRIBE awaits Redis's confirmation, in the order sent.
        self._unconfirmed: deque[bytes] = deque()
        #: Channel patterns Redis refused (no ACL permission): until when to poll instead.
        self._denied: dict[bytes, float] = {}
        #: Patterns already warned about (one warning each, for the notifier's life).
        self._warned: set[bytes] = set()

    @property
    def channels(self) -> frozenset[bytes]:
        """Channels subscribed right now (for leak checks)."""
        return frozenset(self._subscribed)

    @contextlib.asynccontextmanager
    async def waiting(self, channel: bytes, token: bytes, timeout: float) -> AsyncIterator[Inbox]:
        """Register ``token`` on ``channel`` while the block runs; wake-ups land in the inbox.

        Subscribing obeys ``timeout`` and the client's circuit breaker like any
        command, and fails with ``RedisUnavailable``/``RedisTimeout``.
        """
        self._bind()
        inbox = Inbox()
        self._waiters.setdefault(channel, {})[token] = inbox
        _LOCAL[token] = inbox
        _WAITED_ON[channel] = _WAITED_ON.get(channel, 0) + 1
        try:
            if channel not in self._subscribed and not self._is_denied(channel):
                subscribing = self._subscribing.get(channel)
                if subscribing is None:
                    subscribing = asyncio.get_running_loop().create_task(
                        self._subscribe(channel, timeout)
                    )
                    self._subscribing[channel] = subscribing
                    subscribing.add_done_callback(self._subscribed_callback(channel))
                # Shielded: cancelling this waiter raises here, always; the subscription
                # (shared with the other waiters on the channel) carries on.
                await asyncio.shield(subscribing)
            yield inbox
        finally:
            if _LOCAL.get(token) is inbox:
                del _LOCAL[token]
            left = _WAITED_ON.get(channel, 1) - 1
            if left > 0:
                _WAITED_ON[channel] = left
            else:
                _WAITED_ON.pop(channel, None)
            waiters = self._waiters.get(channel)
            if waiters is not None:
                waiters.pop(token, None)
                if not waiters:
                    del self._waiters[channel]
                    self._spawn_cleanup()

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._lock = asyncio.Lock()
            self._pubsub = None
            self._reader = None
            self._subscribed = set()
            self._waiters = {}
            self._cleanup = set()
            self._subscribing = {}
            self._unconfirmed = deque()

    def _subscribed_callback(self, channel: bytes) -> Any:
        def done(task: asyncio.Task[None]) -> None:
            if self._subscribing.get(channel) is task:
                del self._subscribing[channel]
            if not task.cancelled():
                task.exception()  # retrieved: the waiters that still wait get it raised

        return done

    async def _subscribe(self, channel: bytes, timeout: float) -> None:
        assert self._lock is not None
        async with self._lock:
            if channel in self._subscribed or channel not in self._waiters:
                return
            if self._pubsub is None:
                self._pubsub = self._client.pubsub()
            try:
                self._unconfirmed.append(channel)
                subscribe = self._pubsub.ssubscribe if self._sharded else self._pubsub.subscribe
                await self._executor.guarded(subscribe(channel), timeout)
            except BaseException as exc:
                # The connection is in an unknown state: drop it and every subscription
                # on it. Waiters already in fall back to their polls; new ones resubscribe.
                self._discard_pubsub()
                if isinstance(exc, (RuntimeError, AttributeError)):
                    # redis-py's pub/sub raises these when a subscribe races its own
                    # reconnect: to our callers that is Redis being unavailable.
                    raise RedisUnavailable(f"pub/sub connection lost: {exc!r}") from exc
                raise
            self._subscribed.add(channel)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.get_running_loop().create_task(self._read())

    def _spawn_cleanup(self) -> None:
        self._spawn(self._unsubscribe_idle())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._cleanup.add(task)
        task.add_done_callback(self._cleanup.discard)

    async def _unsubscribe_idle(self) -> None:
        assert self._lock is not None
        async with self._lock:
            idle = [c for c in self._subscribed if c not in self._waiters]
            if not idle:
                return
            pubsub = self._pubsub
            self._subscribed.difference_update(idle)
            if self._subscribed:
                try:
                    unsubscribe = pubsub.sunsubscribe if self._sharded else pubsub.unsubscribe
                    await asyncio.wait_for(unsubscribe(*idle), _CLEANUP_TIMEOUT)
                except Exception:  # a broken connection: start afresh next time
                    self._discard_pubsub()
                return
            # Nobody waits on anything: close the connection and the reader, never
            # holding the lock longer than a cleanup deadline.
            self._pubsub = None
            reader, self._reader = self._reader, None
            if reader is not None:
                await _stop(reader)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), _CLEANUP_TIMEOUT)

    def _discard_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        reader, self._reader = self._reader, None
        self._subscribed = set()
        self._unconfirmed.clear()
        if reader is not None:
            self._spawn(_stop(reader))
        if pubsub is not None:
            self._spawn(_close_quietly(pubsub))

    async def _read(self) -> None:
        pubsub = self._pubsub
        while pubsub is not None and pubsub is self._pubsub:
            try:
                async for message in pubsub.listen():
                    kind = message.get("type")
                    if kind in _MESSAGES:
                        self._dispatch(_as_bytes(message["channel"]), _as_bytes(message["data"]))
                    elif kind in _SUBSCRIBED:
                        self._confirmed(_as_bytes(message["channel"]))
            except asyncio.CancelledError:
                raise
            except NO_PERMISSION_ERRORS:
                # The reply to the oldest SUBSCRIBE not yet confirmed (replies come in order).
                if self._unconfirmed:
                    self._refused(self._unconfirmed.popleft())
                continue  # the connection is fine: read on at once
            except Exception as exc:  # connection trouble: waiters fall back to polling
                self._unconfirmed.clear()
                logger.debug("pub/sub read failed (%s); retrying", exc)
            # listen() ends when nothing is subscribed (or after an error): look again soon.
            await asyncio.sleep(0.1)

    def _confirmed(self, channel: bytes) -> None:
        with contextlib.suppress(ValueError):
            self._unconfirmed.remove(channel)

    def _refused(self, channel: bytes) -> None:
        """Redis refused to subscribe to ``channel``: no ACL permission for it."""
        self._subscribed.discard(channel)
        self._deny(channel, "SUBSCRIBE")

    def publish_refused(self, channel: bytes) -> None:
        """A script could not PUBLISH a wake-up on ``channel``: no ACL permission for it.

        Logs one warning per channel pattern, and waiters on such channels poll
        instead of subscribing for a while.
        """
        self._deny(channel, "PUBLISH")

    def _deny(self, channel: bytes, command: str) -> None:
        pattern = channel_pattern(channel)
        self._denied[pattern] = time.monotonic() + DENIED_RETRY
        if pattern in self._warned:
            return
        self._warned.add(pattern)
        logger.warning(
            "Redis refused %s on the wake-up channel %r: the Redis user has no permission "
            "for it (Redis 7 ACL users get no channels by default). Waiters fall back to "
            "polling every poll_interval. Grant the channels with "
            "ACL SETUSER <user> '&%s' (or allchannels).",
            command,
            channel[:200],
            pattern.decode("utf-8", "backslashreplace"),
        )

    def _is_denied(self, channel: bytes) -> bool:
        if not self._denied:
            return False
        until = self._denied.get(channel_pattern(channel))
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        del self._denied[channel_pattern(channel)]  # time to try again
        return False

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        waiters = self._waiters.get(channel)
        if not waiters:
            return
        token, _, payload = data.partition(b":")
        if token == _ANYONE:
            for inbox in waiters.values():
                inbox.deliver(payload)
            return
        target = waiters.get(token)
        if target is not None:
            target.deliver(payload)

    async def aclose(self) -> None:
        """Close the subscription (tests and shutdown)."""
        self._waiters.clear()
        await self._unsubscribe_idle()


async def _stop(reader: asyncio.Task[None]) -> None:
    """Cancel the reader and wait until it is over, cancelling it again every
    ``_RECANCEL`` seconds: a cancel can be swallowed below it (redis-py and
    fakeredis read under ``asyncio.wait_for``, which on Python 3.11 drops a
    cancel that races the read's own completion), and a reader that lives on
    would listen on a closed connection for ever. Gives up after a cleanup
    deadline."""
    deadline = time.monotonic() + _CLEANUP_TIMEOUT
    while not reader.done() and time.monotonic() < deadline:
        reader.cancel()
        await asyncio.wait([reader], timeout=_RECANCEL)


async def _close_quietly(pubsub: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(pubsub.aclose(), _CLEANUP_TIMEOUT)


def channel_pattern(channel: bytes) -> bytes:
    """The ACL channel pattern that covers ``channel``: its namespace, then ``*``.

    Channels are ``<namespace>:{<name>}:<suffix>``; ``lock:{invoice:42}:wake``
    gives ``lock:*``.
    """
    cut = channel.find(b":{")
    return channel[: cut + 1] + b"*" if cut > 0 else channel


def _as_bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


_NOTIFIERS: weakref.WeakKeyDictionary[Any, Notifier] = weakref.WeakKeyDictionary()

#: Every waiter of this process, by token (tokens are random: one waiter each).
_LOCAL: dict[bytes, Inbox] = {}


class _Releases:
    """Release scripts in flight in this process on one channel, and the waiters
    of this process waiting for them to be done."""

    __slots__ = ("count", "waiters")

    def __init__(self) -> None:
        self.count = 0
        self.waiters: list[asyncio.Future[None]] = []


#: Releases in flight in this process, by wake-up channel (and event loop). Their
#: replies may hand a lock to a waiter here: a waiter woken on such a channel
#: waits for them first.
_RELEASING: dict[tuple[bytes, asyncio.AbstractEventLoop], _Releases] = {}

#: Waiters of this process, by channel (how many).
_WAITED_ON: dict[bytes, int] = {}

_NOT_WAITED_ON: Final = contextlib.nullcontext()


class _Releasing:
    __slots__ = ("_key", "_releases")

    def __init__(self, channel: bytes) -> None:
        self._key = key = (channel, asyncio.get_running_loop())
        releases = _RELEASING.get(key)
        if releases is None:
            releases = _RELEASING[key] = _Releases()
        self._releases = releases

    def __enter__(self) -> None:
        self._releases.count += 1

    def __exit__(self, *exc_info: object) -> None:
        releases = self._releases
        releases.count -= 1
        if releases.count == 0:
            if _RELEASING.get(self._key) is releases:
                del _RELEASING[self._key]
            for waiter in releases.waiters:
                if not waiter.done():
                    waiter.set_result(None)


def releasing(channel: bytes) -> contextlib.AbstractContextManager[None]:
    """Around a release script and the handling of its reply (which may call
    ``hand_over_locally``). Free when nobody in this process waits on ``channel``."""
    if channel not in _WAITED_ON:
        return _NOT_WAITED_ON
    return _Releasing(channel)


async def local_releases(channel: bytes) -> None:
    """Wait for the releases of ``channel`` in flight in this process (each is
    bounded by its operation timeout): a waiter woken on the channel may be
    about to be handed the lock by one, which costs it no round trip, where
    asking Redis costs one."""
    loop = asyncio.get_running_loop()
    releases = _RELEASING.get((channel, loop))
    if releases is not None:
        done = loop.create_future()
        releases.waiters.append(done)
        await done  # our own future: cancelling us cancels only it


def hand_over_locally(token: bytes, fence: int, lease_ms: int) -> bool:
    """Tell the waiter ``token``, if it waits in this process (and loop), that Redis
    handed it a lock with ``fence`` and a lease of ``lease_ms``: what the release
    script replied to a releaser here, so the waiter needs no round trip to learn
    it. True if it was told.

    Only ever call it with a release script's reply: a wake-up message is a hint,
    this is Redis's word.
    """
    inbox = _LOCAL.get(token)
    if inbox is None or inbox._loop is not asyncio.get_running_loop():
        return False
    inbox.granted = (fence, lease_ms)
    inbox.deliver(b"")
    return True


def notifier_for(client: Any) -> Notifier:
    """The notifier of ``client``, shared by every waiter of this process."""
    notifier = _NOTIFIERS.get(client)
    if notifier is None:
        notifier = _NOTIFIERS[client] = (
            ShardedNotifier(client) if ShardedNotifier.can_drive(client) else Notifier(client)
        )
    return notifier


class ShardedNotifier(Notifier):
    """Wake-ups on a Redis Cluster: sharded pub/sub where the cluster has it.

    A PUBLISH on a cluster is broadcast over the cluster bus to every node
    (redis/redis#2672); the scripts' wake-ups, sent with SPUBLISH on a cluster
    node of Redis 7+ (``lock/lua/lib.lua``), stay on the shard that owns the
    channel's slot. Waiters then SSUBSCRIBE on that shard's primary: one
    pub/sub connection and reader per node that has waiters, each a
    ``Notifier(sharded=True)`` over a standalone client for the node. Before
    Redis 7 (no SSUBSCRIBE), or where redis-py's pub/sub has no ``ssubscribe``,
    this is the plain ``Notifier`` (SUBSCRIBE on one node, PUBLISH broadcast),
    as the scripts fall back to PUBLISH there. A slot that moves (a failover, a
    resharding) is followed at the next subscription; a waiter on the old node
    meanwhile falls back to its poll.
    """

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        #: Whether wake-ups are sharded on this cluster (None: not asked yet).
        self._use_shards: bool | None = None
        self._nodes: dict[str, Notifier] = {}
        self._node_clients: dict[str, Any] = {}

    @staticmethod
    def can_drive(client: Any) -> bool:
        """Whether ``client`` is a cluster client with a slot map to route by."""
        return routable(client)

    @property
    def channels(self) -> frozenset[bytes]:
        found = set(super().channels)
        for notifier in self._nodes.values():
            found.update(notifier.channels)
        return frozenset(found)

    @property
    def sharded(self) -> bool | None:
        """Whether wake-ups go over sharded pub/sub (None until the first waiter)."""
        return self._use_shards

    @contextlib.asynccontextmanager
    async def waiting(self, channel: bytes, token: bytes, timeout: float) -> AsyncIterator[Inbox]:
        if self._use_shards is None:
            self._use_shards = await self._shards_available(timeout)
        if not self._use_shards:
            async with super().waiting(channel, token, timeout) as inbox:
                yield inbox
            return
        async with self._node_notifier(channel).waiting(channel, token, timeout) as inbox:
            yield inbox

    def publish_refused(self, channel: bytes) -> None:
        if self._use_shards:
            self._node_notifier(channel).publish_refused(channel)
        else:
            super().publish_refused(channel)

    async def aclose(self) -> None:
        await super().aclose()
        nodes, self._nodes = self._nodes, {}
        clients, self._node_clients = self._node_clients, {}
        for notifier in nodes.values():
            await notifier.aclose()
        for client in clients.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), _CLEANUP_TIMEOUT)

    async def _shards_available(self, timeout: float) -> bool:
        """Redis 7+ (SSUBSCRIBE, and SPUBLISH in the scripts) and a redis-py pub/sub
        with ``ssubscribe``."""
        if not callable(getattr(PubSub, "ssubscribe", None)):
            return False
        info = await self._executor.command("INFO", "server", timeout=timeout, resend_safe=True)
        if isinstance(info, dict):  # parsed by the client's response callback
            version = str(info.get("redis_version", ""))
        else:
            text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
            lines = [ln for ln in text.splitlines() if ln.startswith("redis_version:")]
            version = lines[0].partition(":")[2] if lines else ""
        major = version.strip().split(".")[0]
        return major.isdigit() and int(major) >= 7

    def _node_notifier(self, channel: bytes) -> Notifier:
        """The notifier of the primary that owns ``channel``'s slot (made on first use)."""
        node = self._client.nodes_manager.get_node_from_slot(key_slot(channel))
        notifier = self._nodes.get(node.name)
        if notifier is None:
            pool = ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
            client = self._node_clients[node.name] = Redis(connection_pool=pool)
            notifier = self._nodes[node.name] = Notifier(client, sharded=True)
        return notifier
