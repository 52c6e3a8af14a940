"""Leaderboards on sorted sets: fair ties, rank styles, around-me, pages, periods.

* Equal scores rank by who reached the score first, in the server's order.
  The board's sorted set holds each member behind a 7-byte prefix made from
  a per-board sequence number, and a hash maps each member to its prefix, so
  scores stay exactly what was submitted (any int within ±2**53, any finite
  float) and Redis's own ordering breaks the ties.
* Ranks come in three styles, computed atomically by the server: ``position``
  (1,2,3,4), ``competition`` (1,2,2,4) and ``dense`` (1,2,2,3; backed by a
  sorted set of the distinct scores, built the first time it is needed).
* Every write is one Lua script; a bulk submit sends many of them per round
  trip; reads are one command or one script.
* Periodic boards (daily, weekly, monthly, aligned in UTC) expire on their
  own; ``Leaderboard.last_days()`` reads the last N daily boards as one.

See docs/leaderboards.md for the guarantees, the key layout and the figures.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any, Final, Literal, TypeAlias, get_args, overload

from .._redis.eviction import LEADERBOARD, PERIODIC_LEADERBOARD, warn_if_evictable
from .._redis.scripts import Script
from .._telemetry import TELEMETRY
from .._validate import Seconds, callable_arg, positive_int, seconds
from ..keys import KeyBuilder, KeyT
from ._periods import KEY_WORDS, BoardPeriod, Span, as_utc, check_period, span_of
from ._reads import CHUNK, Hints, Ranking
from ._scripts import DAMAGED, FLAG, SCRIPTS, Keys, signal
from ._values import (
    RANK_STYLES,
    LeaderboardEntry,
    M,
    RankStyle,
    bulk_scores,
    by_score,
    check_choice,
    member_bytes,
    packed,
    parse_score,
    score_arg,
)
from ._view import LeaderboardView, ViewAggregate, ViewSource

__all__ = [
    "BoardPeriod",
    "KeepPolicy",
    "Leaderboard",
    "LeaderboardEntry",
    "LeaderboardView",
    "RankStyle",
    "ViewAggregate",
]

#: What a submit keeps: the ``latest`` score, or the ``best`` one (ZADD GT/LT).
KeepPolicy = Literal["latest", "best"]

_KEEPS: Final[tuple[KeepPolicy, ...]] = get_args(KeepPolicy)
_AGGREGATES: Final[tuple[ViewAggregate, ...]] = get_args(ViewAggregate)

#: Script calls per round trip of ``submit_many`` (so 20,000 members).
CALLS_PER_ROUND_TRIP: Final = 20
#: Extra deadline per member of a bulk round trip, on top of ``timeout``.
BULK_SECONDS_PER_MEMBER: Final = 50e-6
#: Periodic boards are kept this long after their period ends, by default.
DEFAULT_RETENTION: Final = timedelta(days=30)


_SUBMIT: Final = SCRIPTS["submit"]
_INCREMENT: Final = SCRIPTS["increment"]
_REMOVE: Final = SCRIPTS["remove"]


#: What ``submit_many`` takes: a mapping of member to score, or (member, score) pairs.
Scores: TypeAlias = (
    Mapping[str, float]
    | Mapping[bytes, float]
    | Mapping[KeyT, float]
    | Iterable[tuple[KeyT, float]]
)


#: The operations that make a span when tracing is on (method: span name).
_SPANS: Final = {
    name: f"leaderboard.{name}"
    for name in (
        "submit",
        "submit_many",
        "increment",
        "remove",
        "clear",
        "top",
        "page",
        "around",
        "rank",
        "ranks",
        "score",
        "size",
    )
}


class Leaderboard(Ranking[M]):
    """A leaderboard: members with scores, ranked best first, ties by who got there first.

    >>> board = Leaderboard(redis, "scores")  # doctest: +SKIP
    >>> await board.submit_many({"alice": 300, "bob": 150, "carol": 300})
    >>> await board.top(3)
    [LeaderboardEntry(member='alice', score=300, rank=1),
     LeaderboardEntry(member='carol', score=300, rank=2),
     LeaderboardEntry(member='bob', score=150, rank=3)]

    Args:
        redis: a ``redis.asyncio.Redis``, ``RedisCluster`` or ``FakeAsyncRedis``
            (``decode_responses`` either way).
        name: the board's name (``str`` or ``bytes``, not empty); all its keys
            share the hash tag ``{name}``.
        rank_style: ``"position"`` (1,2,3,4: ties by who reached the score
            first), ``"competition"`` (1,2,2,4) or ``"dense"`` (1,2,2,3).
            Every style reads the same data; ``dense`` also keeps a set of the
            distinct scores (built on first use, then kept up to date).
        ascending: the lowest score ranks first (golf, lap times). A board's
            order is part of its identity: an ascending board is a separate
            board (``:asc`` follows the hash tag in its keys) from a descending
            one of the same name.
        keep: what ``submit`` keeps by default: the ``"latest"`` score, or the
            ``"best"`` one (like ``ZADD GT``, or ``LT`` when ascending).
        period: ``"daily"``, ``"weekly"`` (ISO, from Monday) or ``"monthly"``:
            one board per UTC period, written and read for the current period
            (``at(when)`` for another one); each expires ``retention`` after
            its period ends. ``None`` (default): one board that lives until removed.
        retention: how long a periodic board is kept after its period ends.
        member_type: ``str`` (default; members come back decoded from UTF-8)
            or ``bytes``. Either kind can be passed in.
        namespace: prefix of the board's keys.
        timeout: deadline of each Redis operation (a bulk submit's round trips
            get 50 µs more per member they carry).
        clock: Unix time, used only to pick the current period (injectable).
        tracing: make an OpenTelemetry span per operation (``True``), none
            (``False``), or as ``configure_telemetry(tracing=...)`` says (``None``).
    """

    _hints: Hints

    @overload
    def __init__(
        self: Leaderboard[str],
        redis: Any,
        name: KeyT,
        *,
        rank_style: RankStyle = "position",
        ascending: bool = False,
        keep: KeepPolicy = "latest",
        period: BoardPeriod | None = None,
        retention: Seconds = DEFAULT_RETENTION,
        member_type: type[str] = str,
        namespace: str = "leaderboard",
        timeout: Seconds = 1.0,
        clock: Callable[[], float] = time.time,
        tracing: bool | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self: Leaderboard[bytes],
        redis: Any,
        name: KeyT,
        *,
        rank_style: RankStyle = "position",
        ascending: bool = False,
        keep: KeepPolicy = "latest",
        period: BoardPeriod | None = None,
        retention: Seconds = DEFAULT_RETENTION,
        member_type: type[bytes],
        namespace: str = "leaderboard",
        timeout: Seconds = 1.0,
        clock: Callable[[], float] = time.time,
        tracing: bool | None = None,
    ) -> None: ...

    def __init__(
        self,
        redis: Any,
        name: KeyT,
        *,
        rank_style: RankStyle = "position",
        ascending: bool = False,
        keep: KeepPolicy = "latest",
        period: BoardPeriod | None = None,
        retention: Seconds = DEFAULT_RETENTION,
        member_type: type[str] | type[bytes] = str,
        namespace: str = "leaderboard",
        timeout: Seconds = 1.0,
        clock: Callable[[], float] = time.time,
        tracing: bool | None = None,
    ) -> None:
        super().__init__(redis)
        base = KeyBuilder(namespace).key(name, "name")
        self._name = name
        self._style: RankStyle = check_choice(rank_style, RANK_STYLES, "rank_style")
        if not isinstance(ascending, bool):
            raise TypeError(f"ascending must be a bool, not {type(ascending).__name__}")
        self._desc = not ascending
        self._base = KeyBuilder.derived(base, "asc") if ascending else base
        self._keep = check_choice(keep, _KEEPS, "keep")
        self._period = check_period(period)
        self._retention = seconds(retention, "retention", allow_zero=True)
        if member_type is not str and member_type is not bytes:
            raise TypeError(f"member_type must be str or bytes, not {member_type!r}")
        self._as_str = member_type is str
        self._timeout = seconds(timeout, "timeout")
        self._clock = callable_arg(clock, "clock")
        self._fixed: Span | None = None  # a periodic board pinned by at()
        self._static = Keys.of(self._base)
        self._hints = Hints()
        self._current: tuple[str, Keys] | None = None
        self._eviction_checked = False
        TELEMETRY.traceable(self, tracing, _SPANS, redis, namespace)

    def __repr__(self) -> str:
        period = f", period={self._period!r}" if self._period else ""
        pinned = f" ({self._fixed.id})" if self._fixed else ""
        return f"<Leaderboard {self._name!r}{pinned} {self._style}{period}>"

    @property
    def name(self) -> KeyT:
        """The board's name."""
        return self._name

    @property
    def period(self) -> BoardPeriod | None:
        """``daily``, ``weekly``, ``monthly``, or ``None`` for a board without periods."""
        return self._period

    @property
    def period_id(self) -> str | None:
        """The id of the period this board reads and writes now (``2024-06-01``,
        ``2024-W22``, ``2024-06``), or ``None`` for a board without periods."""
        return self._span().id if self._period else None

    def _span(self) -> Span:
        assert self._period is not None
        return self._fixed or span_of(self._period, as_utc(self._clock()))

    def _keys(self) -> Keys:
        if self._period is None:
            return self._static
        span = self._span()
        current = self._current
        if current is None or current[0] != span.id:
            z = KeyBuilder.derived(self._base, f"{KEY_WORDS[self._period]}:{span.id}")
            expire_at = str(span.expire_at(self._retention)).encode()
            current = self._current = (span.id, Keys.of(z, expire_at))
        return current[1]

    def at(self, when: datetime | date | float) -> Leaderboard[M]:
        """The board of the period that contains ``when`` (a periodic board only).

        ``when`` is an aware ``datetime``, a ``date``, or Unix seconds; a naive
        ``datetime`` is taken as UTC. The result reads and writes that period.
        """
        if self._period is None:
            raise ValueError("at() needs a periodic board (period='daily', 'weekly' or 'monthly')")
        pinned = copy.copy(self)
        pinned._fixed = span_of(self._period, as_utc(when))
        pinned._current = None
        pinned._hints = Hints()
        TELEMETRY.copied(self, pinned)  # its spans are its own, not the original's
        return pinned

    def last_days(
        self, n: int, *, aggregate: ViewAggregate = "sum", max_age: Seconds = 5.0
    ) -> LeaderboardView[M]:
        """A read-only view of the last ``n`` daily boards (today included) as one.

        A member's score in the view is the ``sum`` of its daily scores, or its
        ``best`` one. The view is built on the server into a board of its own
        (whose keys expire) and rebuilt when older than ``max_age`` seconds;
        ``max_age=0`` rebuilds it on every read. Needs ``period="daily"`` and
        a ``retention`` of at least ``n - 1`` days.
        """
        if self._period != "daily":
            raise ValueError("last_days() needs a daily board (period='daily')")
        days = positive_int(n, "n")
        if (days - 1) * 86400 > self._retention:
            raise ValueError(
                f"n must be at most {int(self._retention // 86400) + 1}: "
                f"daily boards are kept only {self._retention:g} s after their day ends"
            )
        how: ViewAggregate = check_choice(aggregate, _AGGREGATES, "aggregate")
        fresh = seconds(max_age, "max_age", allow_zero=True)
        source = ViewSource(
            executor=self._ex,
            base=self._base,
            as_str=self._as_str,
            descending=self._desc,
            rank_style=self._style,
            timeout=self._timeout,
            today=self._span,
            label=repr(self),
        )
        return LeaderboardView(source, days, how, fresh)

    # -- writes ------------------------------------------------------------------

    def _keep_flag(self, keep: KeepPolicy | None) -> bytes:
        chosen = self._keep if keep is None else check_choice(keep, _KEEPS, "keep")
        return FLAG[chosen == "best"]

    def _write_head(self, keys: Keys, keep: KeepPolicy | None) -> tuple[bytes, ...]:
        dense = FLAG[self._style == "dense"]
        return (self._keep_flag(keep), FLAG[self._desc], dense, keys.expire_at)

    async def submit(self, member: KeyT, score: float, *, keep: KeepPolicy | None = None) -> bool:
        """Set ``member``'s score; True if it changed (a new member or a new score).

        With ``keep="best"`` only a better score replaces the stored one.
        Resubmitting the current score changes nothing: the member keeps its
        place among equal scores.
        """
        data = member_bytes(member)
        value = score_arg(score)
        keys: Keys = self._keys()
        args = self._write_head(keys, keep) + packed([data], [value])
        self._hints.forget(data)
        return bool(await self._write(keys, _SUBMIT, args))

    async def submit_many(
        self,
        scores: Scores,
        *,
        keep: KeepPolicy | None = None,
    ) -> int:
        """Set many scores; returns how many changed. Thousands go in one round trip.

        Equal new scores rank in the order given (the first given ranks
        first among them); a member given twice counts once, with the later
        score (the better one with ``keep="best"``). Every argument is checked
        before anything is sent. More than 1,000 members are sent in batches
        of 1,000, lowest scores first (Redis inserts neighbours faster); each
        batch is atomic, so a failure part way (Redis down) can leave the
        lower-scored batches written.
        """
        best = self._keep_flag(keep) == b"1"
        members, values = bulk_scores(scores, best=best, desc=self._desc)
        if not members:
            return 0
        self._hints = Hints()  # a shortcut only: cheaper to drop than to sort out
        keys: Keys = self._keys()
        write_head: tuple[bytes, ...] = self._write_head(keys, keep)
        if len(members) <= CHUNK:
            args = write_head + packed(members, values)
            return int(await self._write(keys, _SUBMIT, args))
        members, values = by_score(members, values)
        # Several scripts per round trip, as EVAL: with EVALSHA, a NOSCRIPT
        # answer would have them resent after later ones, out of order.
        head: tuple[Any, ...] = ("EVAL", _SUBMIT.source, 4, *keys.board)
        head += write_head
        calls = [
            head + packed(members[i : i + CHUNK], values[i : i + CHUNK])
            for i in range(0, len(members), CHUNK)
        ]
        changed = 0
        repairs = 0
        for i in range(0, len(calls), CALLS_PER_ROUND_TRIP):
            group = calls[i : i + CALLS_PER_ROUND_TRIP]
            deadline = self._timeout + len(group) * CHUNK * BULK_SECONDS_PER_MEMBER
            while group:
                refused: list[tuple[Any, ...]] = []
                replies = await self._ex.commands(group, deadline)
                for call, reply in zip(group, replies, strict=True):
                    if isinstance(reply, BaseException):
                        raise reply
                    if int(reply) < 0:
                        refused.append(call)  # the index was damaged: nothing written
                    else:
                        changed += int(reply)
                if refused:
                    repairs += 1
                    await self._repair(keys, repairs)
                group = refused
        return changed

    async def increment(self, member: KeyT, amount: float = 1) -> int | float:
        """Add ``amount`` to ``member``'s score (from 0 if absent); returns the new score.

        An ``int`` amount is exact integer arithmetic: a result beyond ±2**53
        raises ``ValueError`` (nothing changes) instead of being rounded. A
        ``float`` amount is float arithmetic. The member takes its place among
        equal scores as the latest to reach the new score. ``keep`` does not
        apply: an increment always changes the score.
        """
        data = member_bytes(member)
        value = score_arg(amount, "amount")
        exact = FLAG[isinstance(value, int)]
        keys: Keys = self._keys()
        args = (
            FLAG[self._desc],
            FLAG[self._style == "dense"],
            keys.expire_at,
            data,
            value,
            exact,
        )
        self._hints.forget(data)
        reply = await self._write(keys, _INCREMENT, args)
        if reply[0] == b"ok":
            return parse_score(reply[1])
        if reply[0] == b"inexact":
            raise ValueError(
                f"amount {value} would take the score of {member!r} beyond ±2**53, where "
                "integers are no longer exact; pass a float amount to accept rounding"
            )
        raise ValueError(f"amount {value!r} would make the score of {member!r} infinite")

    async def remove(self, member: KeyT) -> bool:
        """Take ``member`` off the board; True if it was there."""
        data = member_bytes(member)
        keys: Keys = self._keys()
        self._hints.forget(data)
        return bool(await self._write(keys, _REMOVE, (data,)))

    async def _write(self, keys: Keys, script: Script, args: tuple[Any, ...]) -> Any:
        """Run a write script; when it refused because the board's member index
        disagrees with the board (evicted, deleted), rebuild the index and run it again."""
        if not self._eviction_checked:
            self._eviction_checked = True
            risk = PERIODIC_LEADERBOARD if self._period else LEADERBOARD
            warn_if_evictable(self._ex, risk)
        repairs = 0
        while True:
            reply = await self._ex.script(script, keys.board, args, self._timeout)
            if not (reply == -1 or signal(reply) == DAMAGED):
                return reply
            repairs += 1
            await self._repair(keys, repairs)

    async def clear(self) -> None:
        """Delete the whole board (for a periodic board: the current period's).

        ``UNLINK``: Redis frees a big board's memory in the background instead
        of blocking (a million members take it about a second).
        """
        keys: Keys = self._keys()
        await self._ex.command("UNLINK", *keys.board, timeout=self._timeout)
