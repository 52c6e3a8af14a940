"""A ``RedisCluster``'s nodes used directly: one pipeline per node per batch,
and the executor owning the resends.

Why: redis-py's cluster client resends a command whose reply was lost. Its
``execute_command`` retries the whole command on ``ConnectionError`` and
``TimeoutError`` (``retry``: 10 attempts by default, with a topology refresh
between them), and its pipeline resends every command of a node whose
connection failed while its replies were being read: a rate-limit hit or an
increment whose reply was lost runs twice. Its per-node connections have no
retries of their own (``Retry(NoBackoff(), 0)``), so the resends are all in
those two loops; the executor replaces them with its own:

* commands are routed by the slot of their first key with the client's slot
  map (``nodes_manager.get_node_from_slot``: the primary), grouped per node,
  and sent as one pipeline per node, the nodes side by side; a connection is
  taken from the node's free list and given back after (``acquire_connection``,
  ``release``), and used through ``_wire.Wire`` as on a standalone client;
* a ``MOVED``, ``ASK`` or ``TRYAGAIN`` reply means the command did not run: it
  is sent again through redis-py with ``target_nodes`` set, which follows the
  redirect (and updates the slot map) but never resends after a lost reply
  (``target_nodes`` turns redis-py's retries off);
* a lost reply is resent only when safe (``_resend.py``), with the retry count
  and backoff of the client's ``retry``; before each new attempt a node whose
  connection failed is pinged through redis-py (which asks for a topology
  refresh if it is down) and the client's ``initialize()`` runs the refresh,
  so the resend goes to the slot's new owner after a failover;
* ``NOSCRIPT`` and other error replies come back in place (the executor loads
  the script and resends);
* each node has a circuit breaker of its own (``_breaker.NodeBreakers``): the
  commands for a node whose circuit is open come back as ``CircuitOpen`` in
  place without being sent, and only that node's failures open it, so a dead
  shard does not fail the keys of the healthy ones.

Reads go to primaries (``read_from_replicas`` is not used for the library's
own commands): a cache read after a write sees it.

This is also the shape the executor's later speed work wants: one round trip
per node per batch. Connections are still taken per batch (a node's free list
costs a ``popleft``, not a pool lock); keeping one per node, like the
standalone lane, would be the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, Final

from redis.asyncio.cluster import RedisCluster
from redis.client import NEVER_DECODE
from redis.crc import key_slot
from redis.exceptions import AskError, MaxConnectionsError, TryAgainError

from ..errors import CircuitOpen
from .breaker import BreakerSettings, CircuitBreaker, NodeBreakers
from .wire import CONNECTION_FAILURES, Lost, Wire, resend_lost

__all__ = ["ClusterDirect", "routable"]

_RAW: Final = {NEVER_DECODE: True}
_SCRIPTS: Final = frozenset({"EVALSHA", "EVAL", b"EVALSHA", b"EVAL", "evalsha", "eval"})


class _Sent:
    """Commands written on a node's connection, their replies still to be read."""

    __slots__ = ("breaker", "commands", "conn", "node", "trial")

    def __init__(
        self,
        node: Any,
        conn: Any,
        commands: list[tuple[Any, ...]],
        breaker: CircuitBreaker,
        trial: bool,
    ) -> None:
        self.node = node
        self.conn = conn
        self.commands = commands
        self.breaker = breaker
        self.trial = trial


class ClusterDirect:
    """Direct use of one ``RedisCluster`` client's nodes. See the module docs."""

    __slots__ = (
        "_breakers",
        "_client",
        "_counted",
        "_failed",
        "_initialized",
        "_stalled",
        "_wire",
    )

    def __init__(self, client: RedisCluster, breakers: NodeBreakers | None = None) -> None:
        self._client: Any = client
        self._breakers = breakers if breakers is not None else NodeBreakers(BreakerSettings())
        self._wire: Wire | None = None
        self._initialized = False
        #: Nodes whose connection failed in the last attempt (name -> node).
        self._failed: dict[str, Any] = {}
        #: Nodes a cancelled attempt was still waiting on, by task (see ``stalled()``).
        self._stalled: dict[asyncio.Task[Any] | None, list[str]] = {}
        #: Nodes whose failure the call running in a task has already counted on their
        #: breaker: a call's resends after a failed attempt do not count again (the
        #: breaker counts failed calls, as on a single server).
        self._counted: dict[asyncio.Task[Any] | None, set[str]] = {}

    @classmethod
    def for_client(cls, client: Any, breakers: NodeBreakers | None = None) -> ClusterDirect | None:
        """Direct use of ``client``, or None if it is not a cluster client this can drive.
        ``breakers``: the client's breakers, one per node."""
        return cls(client, breakers) if routable(client) else None

    async def call(self, args: tuple[Any, ...], safe: bool) -> Any:
        """Send ``args``; its reply. An error reply raises, and so does a lost reply
        that was not sent again (``ReplyLost``) or a connection failure."""
        reply = (await self.pipeline([args], [safe]))[0]
        if isinstance(reply, BaseException):
            raise reply
        return reply

    async def pipeline(
        self, commands: Sequence[tuple[Any, ...]], safe: Sequence[bool]
    ) -> list[Any]:
        """Send ``commands`` (one pipeline per node); their replies in order, an error
        (reply, lost reply, failed connection) as an exception in place."""
        if not self._initialized:
            await self._client.initialize()
            self._initialized = True
        task = asyncio.current_task()
        self._counted[task] = set()
        try:
            return await self._pipeline(commands, safe)
        finally:
            self._counted.pop(task, None)

    async def _pipeline(
        self, commands: Sequence[tuple[Any, ...]], safe: Sequence[bool]
    ) -> list[Any]:
        replies = await self._send(commands)
        redirected = [
            i for i, r in enumerate(replies) if isinstance(r, (AskError, TryAgainError))
        ]  # MovedError is an AskError
        if redirected:
            again = await asyncio.gather(
                *(self._follow(commands[i], replies[i]) for i in redirected)
            )
            for i, reply in zip(redirected, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if type(reply) is Lost:
                return await resend_lost(
                    self._client.retry, commands, safe, replies, self._send, self._recover
                )
        return replies

    # -- internals -------------------------------------------------------------

    async def _send(
        self, commands: list[tuple[Any, ...]] | Sequence[tuple[Any, ...]]
    ) -> list[Any]:
        """One attempt: every command to its slot's primary, one pipeline per node."""
        replies: list[Any] = [None] * len(commands)
        groups: dict[str, tuple[Any, list[int]]] = {}
        manager = self._client.nodes_manager
        for i, args in enumerate(commands):
            try:
                node = self._node(manager, args)
            except Exception as exc:  # no node for the slot (yet): nothing was sent
                replies[i] = Lost(exc, False)
                continue
            group = groups.get(node.name)
            if group is None:
                groups[node.name] = (node, [i])
            else:
                group[1].append(i)
        waiting = set(groups)
        try:
            if len(groups) == 1:
                ((node, indices),) = groups.values()
                outcomes = [await self._on_node(node, [commands[i] for i in indices], waiting)]
            else:
                outcomes = await self._on_nodes(
                    [(node, [commands[i] for i in idx]) for node, idx in groups.values()], waiting
                )
        except asyncio.CancelledError:
            if waiting:
                self._stalled[asyncio.current_task()] = list(waiting)
            raise
        for (_, indices), got in zip(groups.values(), outcomes, strict=True):
            for i, reply in zip(indices, got, strict=True):
                replies[i] = reply
        return replies

    def _node(self, manager: Any, args: tuple[Any, ...]) -> Any:
        """The primary serving the slot of the first key of ``args`` (the client's default
        node for a command without keys)."""
        if args[0] in _SCRIPTS:
            key = args[3] if int(args[2]) > 0 else None
        else:
            key = args[1] if len(args) > 1 else None
        if key is None:
            return self._client.get_default_node()
        slot = key_slot(key) if isinstance(key, bytes) else int(self._client.keyslot(key))
        return manager.get_node_from_slot(slot)

    async def load_script(self, source: str | bytes, commands: Sequence[tuple[Any, ...]]) -> None:
        """``SCRIPT LOAD source`` on the nodes ``commands`` go to (not on every primary:
        a dead shard must not fail the scripts of the others). Raises what failed."""
        manager = self._client.nodes_manager
        nodes = {}
        for args in commands:
            node = self._node(manager, args)
            nodes[node.name] = node
        outcomes = await asyncio.gather(
            *(self._on_node(node, [("SCRIPT", "LOAD", source)], set()) for node in nodes.values())
        )
        for (reply,) in outcomes:
            if type(reply) is Lost:
                raise reply.error
            if isinstance(reply, BaseException):
                raise reply

    def stalled(self, task: asyncio.Task[Any], timed_out: bool) -> None:
        """``task``'s attempt was cancelled; ``timed_out``: by its deadline, so the nodes
        it was still waiting on count a failure on their breakers (a node that stalls
        opens its circuit like one that refuses)."""
        names = self._stalled.pop(task, ())
        if timed_out:
            for name in names:
                self._breakers.get(name).record_failure()

    async def _on_node(
        self, node: Any, commands: list[tuple[Any, ...]], waiting: set[str]
    ) -> list[Any]:
        """``commands`` on ``node``'s connection: their outcomes in place."""
        started = await self._start(node, commands, waiting)
        if type(started) is not _Sent:
            return started  # type: ignore[return-value]
        try:
            return await self._finish(started, waiting)
        finally:
            node.release(started.conn)

    async def _on_nodes(
        self, work: list[tuple[Any, list[tuple[Any, ...]]]], waiting: set[str]
    ) -> list[list[Any]]:
        """Each node's commands, the nodes side by side without a task each: every
        node's pipeline is written first, then each one's replies are read (the
        servers work while the client reads the first); their outcomes in place.

        A failure or cancellation part way leaves no reply unread: every connection
        written to and not read to the end is closed (as redis-py does)."""
        sent: list[_Sent | list[Any]] = []
        finished: set[int] = set()
        try:
            for node, commands in work:
                sent.append(await self._start(node, commands, waiting))
            outcomes: list[list[Any]] = []
            for i, item in enumerate(sent):
                if type(item) is _Sent:
                    outcomes.append(await self._finish(item, waiting))
                    finished.add(i)
                else:
                    outcomes.append(item)  # type: ignore[arg-type]
            return outcomes
        except BaseException:
            for i, item in enumerate(sent):
                if type(item) is _Sent and i not in finished:
                    if item.trial:
                        item.breaker.release_trial()
                    with contextlib.suppress(Exception):
                        await item.conn.disconnect(nowait=True)
            raise
        finally:
            for item in sent:
                if type(item) is _Sent:
                    item.node.release(item.conn)

    async def _start(
        self, node: Any, commands: list[tuple[Any, ...]], waiting: set[str]
    ) -> _Sent | list[Any]:
        """Take a connection of ``node`` and write ``commands`` on it: a ``_Sent`` to
        read the replies from (its connection to give back), or the outcomes if
        nothing can be read (the node's circuit is open, no connection, a failed
        write: the connection is given back)."""
        wire = self._wire
        if wire is None:
            wire = self._wire = Wire(
                node.response_callbacks,
                node.connection_kwargs,
                node.connection_class,
                probe=True,
            )
        breaker = self._breakers.get(node.name)
        try:
            trial = breaker.before_call()
        except CircuitOpen as exc:
            waiting.discard(node.name)
            return [CircuitOpen(*exc.args) for _ in commands]
        try:
            conn = node.acquire_connection()
        except MaxConnectionsError as exc:
            if trial:
                breaker.release_trial()
            waiting.discard(node.name)
            return [exc] * len(commands)
        try:
            if conn.is_connected:
                reconnect = getattr(node, "disconnect_if_needed", None)
                if reconnect is not None:
                    await reconnect(conn)
            failed = await wire.send(conn, commands)
        except BaseException:
            if trial:
                breaker.release_trial()
            node.release(conn)
            raise
        sent = _Sent(node, conn, commands, breaker, trial)
        if failed is None:
            return sent
        node.release(conn)
        self._settle_node(sent, failed, waiting)
        return failed

    async def _finish(self, sent: _Sent, waiting: set[str]) -> list[Any]:
        """The replies of what ``_start`` wrote (the caller gives the connection back)."""
        assert self._wire is not None
        try:
            outcomes = await self._wire.receive(sent.conn, sent.commands)
        except BaseException:
            if sent.trial:
                sent.breaker.release_trial()
                sent.trial = False
            raise
        self._settle_node(sent, outcomes, waiting)
        return outcomes

    def _settle_node(self, sent: _Sent, outcomes: list[Any], waiting: set[str]) -> None:
        """A node's attempt is over: its breaker learns how it went."""
        node = sent.node
        if any(type(reply) is Lost for reply in outcomes):
            self._failed[node.name] = node
            counted = self._counted.get(asyncio.current_task())
            if counted is None or node.name not in counted:
                sent.breaker.record_failure(sent.trial)
                if counted is not None:
                    counted.add(node.name)
            elif sent.trial:
                sent.breaker.release_trial()
        else:
            sent.breaker.record_success(sent.trial)
        sent.trial = False
        waiting.discard(node.name)

    async def _follow(self, args: tuple[Any, ...], redirect: BaseException) -> Any:
        """A command that was redirected (so did not run), sent again through redis-py,
        which follows the redirect but does not resend after a lost reply."""
        try:
            node = self._node(self._client.nodes_manager, args)
            return await self._client.execute_command(*args, target_nodes=node, **_RAW)
        except CONNECTION_FAILURES as exc:
            return Lost(exc, True)
        except Exception as exc:
            return exc

    async def _recover(self, _error: BaseException) -> None:
        """After a failed attempt: let redis-py find out whether the nodes that failed
        are down (a ping it sends asks for a topology refresh if so), then refresh."""
        failed, self._failed = self._failed, {}
        for node in failed.values():
            with contextlib.suppress(Exception):
                await self._client.execute_command("PING", target_nodes=node)
        with contextlib.suppress(Exception):
            await self._client.initialize()


def routable(client: Any) -> bool:
    """Whether ``client`` is a redis-py cluster client with a slot map to route by."""
    manager = getattr(client, "nodes_manager", None)
    return isinstance(client, RedisCluster) and callable(
        getattr(manager, "get_node_from_slot", None)
    )
