"""The read methods a board and a rolling view share.

``Ranking`` holds them (``top``,
``page``, ``around``, ``rank``, ``ranks``, ``score``, ``size``); a subclass
says where its keys are (``Ranking._keys()``) and how its commands travel
(``Ranking._run()``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Final, Generic

from .._redis.executor import executor_for
from .._validate import positive_int
from ..errors import RedisCommandError
from ..keys import KeyT
from ._scripts import DAMAGED, FLAG, SCRIPTS, Call, Keys, signal
from ._values import (
    LeaderboardEntry,
    M,
    RankStyle,
    entries,
    member_bytes,
    parse_score,
)

__all__ = ["CHUNK", "HEAL_STEP", "MAX_ENTRIES", "MAX_RADIUS", "MAX_REPAIRS", "Hints", "Ranking"]

#: Members per script call (Redis's Lua unpacks at most ~8,000 values at once).
CHUNK: Final = 1000
#: The most entries one read returns (``top(n)``, ``page(size=)``; ``around``
#: returns ``2 * radius + 1`` with ``radius`` at most half of it): per-call work
#: is bounded by the library, not by the caller's argument or the board's size.
MAX_ENTRIES: Final = 1000
#: The largest ``radius`` of ``around``.
MAX_RADIUS: Final = MAX_ENTRIES // 2
#: Board entries scanned per step when a member index is rebuilt.
HEAL_STEP: Final = 1000
#: Index rebuilds one call runs before it gives up (the index keeps disagreeing
#: with the board: something keeps evicting or deleting it).
MAX_REPAIRS: Final = 3
#: Members whose current encoded entry a board object remembers (see ``Hints``).
HINTS_MAX: Final = 10_000

_RANK: Final = SCRIPTS["rank"]
_RANGE: Final = SCRIPTS["range"]
_HEAL: Final = SCRIPTS["heal"]


class Hints:
    """What a board object remembers of members it has looked up: prefix and score.

    An encoded member (prefix + member) is written once with its score and
    never changes: a new score always gets a new prefix and the old entry goes
    in the same script. So while ``ZREVRANK board prefix+member`` finds the
    entry, the remembered score is still the member's, and a position rank is
    one plain command; when it does not (a new score, a removal), the caller
    asks the script. Remembering is only ever a shortcut, never an answer.
    Bounded (oldest first out); reset when the board's key changes (periods).
    """

    __slots__ = ("_board", "_known")

    def __init__(self) -> None:
        self._board = b""
        self._known: dict[bytes, tuple[bytes, bytes]] = {}

    def get(self, board: bytes, member: bytes) -> tuple[bytes, bytes] | None:
        if board != self._board:
            self._board = board
            self._known = {}
        return self._known.get(member)

    def put(self, board: bytes, member: bytes, prefix: bytes, score: bytes) -> None:
        if board != self._board:
            self._board = board
            self._known = {}
        known = self._known
        if len(known) >= HINTS_MAX and member not in known:
            del known[next(iter(known))]
        known[member] = (prefix, score)

    def forget(self, member: bytes) -> None:
        self._known.pop(member, None)


class Ranking(Generic[M]):
    """The reads every board and view share; subclasses say where the keys are."""

    _as_str: bool
    _desc: bool
    _style: RankStyle
    _timeout: float
    #: ``None`` where entries are rebuilt in place (rolling views): no shortcut.
    _hints: Hints | None = None

    def __init__(self, redis: Any) -> None:
        self._ex = executor_for(redis)

    def _keys(self) -> Keys:
        raise NotImplementedError

    def _read_keys(self, keys: Keys) -> tuple[bytes, ...]:
        """The keys a read script needs: the distinct scores only for dense ranks."""
        return keys.reads if self._style == "dense" else keys.lookups

    async def _run(self, keys: Keys, calls: list[Call]) -> list[Any]:
        """Send ``calls`` in one round trip; their replies, in order."""
        if len(calls) == 1:
            return [await self._send(calls[0])]
        return list(await asyncio.gather(*(self._send(call) for call in calls)))

    async def _ask(self, keys: Keys, calls: list[Call]) -> list[Any]:
        """``_run()`` until no script answers ``DAMAGED`` (the member index is
        rebuilt first) or ``BUILDING`` (each such answer built one more step)."""
        repairs = 0
        while True:
            replies = await self._run(keys, calls)
            found = {signal(reply) for reply in replies}
            if found == {None}:
                return replies
            if DAMAGED in found:
                repairs += 1
                await self._repair(keys, repairs)

    async def _repair(self, keys: Keys, attempt: int) -> None:
        """Rebuild the board's member index (``attempt``: how many times this call has)."""
        if attempt > MAX_REPAIRS:
            raise RedisCommandError(
                f"leaderboard {keys.z!r}: its member index keeps disagreeing with the "
                f"board after {MAX_REPAIRS} rebuilds; is Redis evicting its keys? "
                "(see docs/eviction.md)"
            )
        await self._rebuild_index(keys)

    async def _rebuild_index(self, keys: Keys) -> None:
        """Rebuild the member index from the board, a bounded step a round trip."""
        args = (FLAG[self._desc], HEAL_STEP)
        heal_keys = (*keys.board, keys.heal)
        while not int(await self._ex.script(_HEAL, heal_keys, args, self._timeout)):
            pass

    async def _send(self, call: Call) -> Any:
        script, keys, args = call
        if script is None:
            return await self._ex.command(*args, timeout=self._timeout)
        return await self._ex.script(script, keys, args, self._timeout)

    @property
    def rank_style(self) -> RankStyle:
        """How ties share ranks: ``position``, ``competition`` or ``dense``."""
        return self._style

    @property
    def ascending(self) -> bool:
        """True if the lowest score ranks first."""
        return not self._desc

    async def top(self, n: int = 10) -> list[LeaderboardEntry[M]]:
        """The first ``n`` entries (fewer if the board is smaller), best first;
        ``n`` is at most 1,000 (read further with ``page()``)."""
        count = _bounded(n, "n")
        return await self._slice(0, count)

    async def page(self, page: int, size: int = 10) -> list[LeaderboardEntry[M]]:
        """Page ``page`` (1-based) of ``size`` entries (at most 1,000); the last page
        may be short, a page past the end is empty."""
        number = positive_int(page, "page")
        count = _bounded(size, "size")
        offset = (number - 1) * count
        if offset >= _MAX_OFFSET:
            raise ValueError(f"page must be at most {_MAX_OFFSET // count} with size={count}")
        return await self._slice(offset, count)

    async def _slice(self, offset: int, count: int) -> list[LeaderboardEntry[M]]:
        keys: Keys = self._keys()
        if offset == 0 or self._style == "position":
            # Ranks follow from the offset alone: one plain range read.
            command = "ZREVRANGE" if self._desc else "ZRANGE"
            args = (command, keys.z, offset, offset + count - 1, "WITHSCORES")
            (reply,) = await self._run(keys, [(None, (), args)])
            first = offset + 1 if self._style == "position" else 1
            return self._entries(reply, offset, first)
        range_args = (FLAG[self._desc], self._style, b"page", offset, count)
        (reply,) = await self._ask(keys, [(_RANGE, self._read_keys(keys), range_args)])
        return self._entries(reply[2:], int(reply[0]), int(reply[1]))

    def _entries(self, reply: Any, offset: int, first: int) -> list[LeaderboardEntry[M]]:
        return entries(
            reply, offset=offset, first_rank=first, style=self._style, as_str=self._as_str
        )

    async def around(self, member: KeyT, radius: int = 2) -> list[LeaderboardEntry[M]]:
        """``member`` with up to ``radius`` entries on each side, in rank order.

        Near either end of the board the window shifts instead of shrinking,
        so it always holds ``2 * radius + 1`` entries when the board has that
        many. Empty if ``member`` is not on the board. ``radius`` is at most 500.
        """
        data = member_bytes(member)
        width = positive_int(radius, "radius", allow_zero=True)
        if width > MAX_RADIUS:
            raise ValueError(
                f"radius must be at most {MAX_RADIUS} (one read returns at most "
                f"{MAX_ENTRIES} entries; read further with page()), got {width}"
            )
        keys: Keys = self._keys()
        args = (FLAG[self._desc], self._style, b"around", data, width)
        (reply,) = await self._ask(keys, [(_RANGE, self._read_keys(keys), args)])
        if not reply:
            return []
        return self._entries(reply[2:], int(reply[0]), int(reply[1]))

    async def rank(self, member: KeyT) -> LeaderboardEntry[M] | None:
        """``member``'s entry (score and rank), or ``None`` if it is not on the board.

        In ``position`` style, a member this object has looked up before costs
        one ``ZREVRANK`` (see ``Hints``); otherwise one script.
        """
        data = member_bytes(member)
        keys: Keys = self._keys()
        hints = self._hints
        if hints is not None and self._style == "position":
            known = hints.get(keys.z, data)
            if known is not None:
                command = "ZREVRANK" if self._desc else "ZRANK"
                place = await self._ex.command(
                    command, keys.z, known[0] + data, timeout=self._timeout
                )
                if place is not None:
                    return LeaderboardEntry(
                        self._member(member, data), parse_score(known[1]), int(place) + 1
                    )
        reply = await self._look_up(keys, self._read_keys(keys), self._style, data)
        if reply is None:
            return None
        return LeaderboardEntry(self._member(member, data), parse_score(reply[0]), int(reply[1]))

    async def ranks(self, members: Iterable[KeyT]) -> dict[M, LeaderboardEntry[M]]:
        """The entries of many members (say, a friends list) in one round trip.

        Keys are the members as the board returns them (``str`` or ``bytes``),
        in the order given; members not on the board are left out. Sort the
        values by ``rank`` for a friends leaderboard.
        """
        if isinstance(members, (str, bytes, bytearray, memoryview)):
            raise TypeError("members must be an iterable of members, not a single member")
        wanted: dict[bytes, Any] = {}
        for member in members:
            data = member_bytes(member, "members")
            wanted.setdefault(data, member)
        if not wanted:
            return {}
        keys: Keys = self._keys()
        order = list(wanted)
        head: tuple[Any, ...] = (FLAG[self._desc], self._style)
        read_keys = self._read_keys(keys)
        calls: list[Call] = [
            (_RANK, read_keys, head + tuple(order[i : i + CHUNK]))
            for i in range(0, len(order), CHUNK)
        ]
        replies = await self._ask(keys, calls)
        result: dict[Any, LeaderboardEntry[M]] = {}
        flat = [value for reply in replies for value in reply]
        for i, data in enumerate(order):
            raw = flat[3 * i]
            if raw is not None:
                member = self._member(wanted[data], data)
                result[member] = LeaderboardEntry(member, parse_score(raw), int(flat[3 * i + 1]))
        return result

    async def score(self, member: KeyT) -> int | float | None:
        """``member``'s score, or ``None`` if it is not on the board."""
        data = member_bytes(member)
        keys: Keys = self._keys()
        hints = self._hints
        if hints is not None:
            known = hints.get(keys.z, data)
            if known is not None:
                score = await self._ex.command(
                    "ZSCORE", keys.z, known[0] + data, timeout=self._timeout
                )
                if score is not None:
                    return parse_score(score)
        reply = await self._look_up(keys, keys.lookups, b"none", data)
        return None if reply is None else parse_score(reply[0])

    async def _look_up(
        self, keys: Keys, read_keys: tuple[bytes, ...], style: str | bytes, data: bytes
    ) -> list[Any] | None:
        """The rank script for one member: ``[score, rank, prefix]``, or None if it is not
        on the board; what it learns about the member's entry goes into the hints."""
        args = (FLAG[self._desc], style, data)
        (reply,) = await self._ask(keys, [(_RANK, read_keys, args)])
        hints = self._hints
        if reply[0] is None:
            if hints is not None:
                hints.forget(data)
            return None
        if hints is not None:
            hints.put(keys.z, data, reply[2], reply[0])
        return reply  # type: ignore[no-any-return]

    async def size(self) -> int:
        """How many members are on the board."""
        keys: Keys = self._keys()
        (reply,) = await self._run(keys, [(None, (), ("ZCARD", keys.z))])
        return int(reply)

    def _member(self, given: Any, data: bytes) -> Any:
        """A member as the board returns it: the caller's own object when it has that type."""
        if self._as_str:
            return given if isinstance(given, str) else data.decode("utf-8", "surrogateescape")
        return data


#: Offsets past this are not a board's (2**53: Redis's ranks are exact below it).
_MAX_OFFSET: Final = 2**53


def _bounded(value: object, argname: str) -> int:
    """A positive count of entries, at most ``MAX_ENTRIES``."""
    count = positive_int(value, argname)
    if count > MAX_ENTRIES:
        raise ValueError(
            f"{argname} must be at most {MAX_ENTRIES} (one read returns at most "
            f"{MAX_ENTRIES} entries; read further with page()), got {count}"
        )
    return count
