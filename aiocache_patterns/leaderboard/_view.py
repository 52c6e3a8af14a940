"""The rolling view: the last N daily boards of a leaderboard, read as one board.

The view is materialized on the server (script ``lua/view.lua``) into a
board of its own whose keys expire, and rebuilt when older than ``max_age``.
Each read sends the freshness check and the read itself in one pipeline, in
that order, as ``EVAL`` (so the order holds even when a script is not loaded
yet: ``EVALSHA`` would fail with NOSCRIPT and be resent after the read).

A view knows its board only through a ``ViewSource`` the board gives it
(where its keys are, its order and rank style, its clock), never by reading
the board's private state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from .._redis.executor import Executor
from ..keys import KeyBuilder
from ._periods import KEY_WORDS, Span, previous
from ._reads import Ranking
from ._scripts import FLAG, SCRIPTS, Call, Keys
from ._values import M, RankStyle

__all__ = ["LeaderboardView", "ViewAggregate", "ViewSource"]

#: How a rolling view combines a member's period scores: ``sum``, or its ``best``.
ViewAggregate = Literal["sum", "best"]

#: A rolling view's keys outlive its freshness by this much (ms), so a read
#: sent right behind the freshness check always finds them.
_VIEW_GRACE_MS: Final = 10_000
_VIEW: Final = SCRIPTS["view"]


@dataclass(frozen=True, slots=True)
class ViewSource:
    """What a rolling view needs of its board: given by the board, read by the view."""

    #: The board's executor (its client).
    executor: Executor
    #: The board's key before its period (``<namespace>:{<name>}``).
    base: bytes
    #: Members come back as ``str`` (else ``bytes``).
    as_str: bool
    #: Highest score first.
    descending: bool
    rank_style: RankStyle
    #: Deadline of each Redis operation.
    timeout: float
    #: The board's current daily period, by the board's clock.
    today: Callable[[], Span]
    #: How the board shows itself (for the view's ``repr``).
    label: str


class LeaderboardView(Ranking[M]):
    """A read-only board built from the last N daily boards (see ``Leaderboard.last_days``).

    It reads like a board (``top``, ``page``, ``rank``, ``ranks``, ``around``,
    ``score``, ``size``), with the parent board's rank style and order. Each
    read checks, in the same round trip, that the view is fresh (rebuilding
    it on the server if not) and then reads it. The window moves with the
    parent's clock: after midnight UTC the view covers the new day.
    """

    def __init__(
        self, source: ViewSource, days: int, aggregate: ViewAggregate, max_age: float
    ) -> None:
        self._source = source
        self._ex = source.executor
        self._as_str = source.as_str
        self._desc = source.descending
        self._style = source.rank_style
        self._timeout = source.timeout
        self._days = days
        self._aggregate = aggregate
        self._fresh_ms = round(max_age * 1000)
        self._cached: tuple[str, Keys] | None = None

    def __repr__(self) -> str:
        return (
            f"<LeaderboardView last {self._days} days of {self._source.label} ({self._aggregate})>"
        )

    @property
    def days(self) -> int:
        """How many daily boards the view covers (today included)."""
        return self._days

    @property
    def aggregate(self) -> ViewAggregate:
        """``sum`` or ``best``: how a member's daily scores combine."""
        return self._aggregate

    def _keys(self) -> Keys:
        source = self._source
        newest = source.today()
        cached = self._cached
        if cached is not None and cached[0] == newest.id:
            return cached[1]
        spans = [newest]
        for _ in range(self._days - 1):
            spans.append(previous("daily", spans[-1]))
        word = KEY_WORDS["daily"]
        sources = tuple(KeyBuilder.derived(source.base, f"{word}:{s.id}") for s in spans)
        z = KeyBuilder.derived(source.base, f"last:{self._days}:{self._aggregate}:{newest.id}")
        keys = Keys.of(z, sources=sources)
        self._cached = (newest.id, keys)
        return keys

    def _ensure(self, keys: Keys, *, force: bool = False) -> tuple[Any, ...]:
        all_keys: tuple[bytes, ...] = keys.board + keys.sources
        fresh = self._fresh_ms
        head: tuple[Any, ...] = ("EVAL", _VIEW.source, len(all_keys))
        args = (FLAG[self._desc], self._aggregate, fresh, fresh + _VIEW_GRACE_MS, FLAG[force])
        return head + all_keys + args

    async def _run(self, keys: Keys, calls: list[Call]) -> list[Any]:
        """The freshness check and ``calls`` in one pipeline, in this order."""
        commands = [self._ensure(keys)]
        for script, call_keys, args in calls:
            if script is None:
                commands.append(args)
            else:
                head: tuple[Any, ...] = ("EVAL", script.source, len(call_keys))
                commands.append(head + call_keys + args)
        replies = await self._ex.commands(commands, self._timeout)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies[1:]

    async def _rebuild_index(self, keys: Keys) -> None:
        """A view whose index was evicted is rebuilt whole (the view script checks that
        too; this covers an eviction between that check and the read)."""
        await self.refresh()

    async def refresh(self) -> None:
        """Rebuild the view now, whatever its age."""
        keys: Keys = self._keys()
        replies = await self._ex.commands([self._ensure(keys, force=True)], self._timeout)
        if isinstance(replies[0], BaseException):
            raise replies[0]
