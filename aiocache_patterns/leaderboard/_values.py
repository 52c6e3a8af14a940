"""Leaderboard values: checking members and scores, reading entries back.

Members are ``str`` (stored as UTF-8) or ``bytes``. A board made for ``str``
decodes members with ``surrogateescape``, so a member that is not valid UTF-8
still comes back as a ``str`` that finds the same member when passed back.

Scores are ``int`` within ±2**53 (the integers a double holds exactly) or
finite ``float``. A score comes back as an ``int`` when it is a whole number
within ±2**53, else as a ``float``: an int you submitted comes back equal and
of the same type, and no score is ever rounded on the way.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeVar, cast, get_args

__all__ = [
    "EXACT",
    "PREFIX_SIZE",
    "LeaderboardEntry",
    "M",
    "RankStyle",
    "bulk_scores",
    "by_score",
    "check_choice",
    "entries",
    "member_bytes",
    "packed",
    "parse_score",
    "score_arg",
]

#: The largest magnitude up to which every integer is exact in a double.
EXACT: Final = 2**53
#: Bytes of tie-break prefix in front of each member in the board's zset.
PREFIX_SIZE: Final = 7

#: How ties share ranks: ``position`` 1,2,3,4 (ties by who reached the score
#: first); ``competition`` 1,2,2,4; ``dense`` 1,2,2,3.
RankStyle = Literal["position", "competition", "dense"]

M = TypeVar("M", str, bytes)
S = TypeVar("S", bound=str)


@dataclass(frozen=True, slots=True)
class LeaderboardEntry(Generic[M]):
    """One member's place on a board.

    ``member`` is a ``str`` on boards made for ``str`` (the default), ``bytes``
    on boards made with ``member_type=bytes``; ``score`` is an ``int`` when it
    is a whole number within ±2**53, else a ``float``; ``rank`` is 1-based.
    """

    member: M
    score: int | float
    rank: int


def check_choice(value: object, choices: tuple[S, ...], argname: str) -> S:
    """``value`` if it is one of ``choices``; else ``TypeError``/``ValueError`` naming it."""
    if not isinstance(value, str):
        raise TypeError(f"{argname} must be one of {choices}, not {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{argname} must be one of {choices}, got {value!r}")
    return choices[choices.index(value)]  # typed as the choice it equals


RANK_STYLES: Final[tuple[RankStyle, ...]] = get_args(RankStyle)


def member_bytes(member: object, argname: str = "member") -> bytes:
    """A member as the bytes stored in Redis."""
    if isinstance(member, str):
        try:
            data = member.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise ValueError(
                f"{argname} must be valid Unicode (it has a lone surrogate)"
            ) from None
    elif isinstance(member, (bytes, bytearray, memoryview)):
        data = bytes(member)
    else:
        raise TypeError(f"{argname} must be str or bytes, not {type(member).__name__}")
    if not data:
        raise ValueError(f"{argname} must not be empty")
    return data


def score_arg(value: object, argname: str = "score") -> int | float:
    """A score to send: an ``int`` within ±2**53 or a finite ``float`` (``bool`` is refused)."""
    if isinstance(value, bool):
        raise TypeError(f"{argname} must be an int or a float, not bool")
    if isinstance(value, int):
        number = int(value)  # a plain int, also for subclasses (IntEnum)
        if -EXACT <= number <= EXACT:
            return number
        raise ValueError(
            f"{argname} must be within ±2**53 to be stored exactly, got {number}; "
            "pass a float to accept rounding"
        )
    if isinstance(value, float):
        number_f = float(value)
        if math.isfinite(number_f):
            return number_f
        raise ValueError(f"{argname} must be finite, got {number_f!r}")
    raise TypeError(f"{argname} must be an int or a float, not {type(value).__name__}")


def bulk_scores(
    scores: Any, *, best: bool, desc: bool
) -> tuple[list[bytes] | list[str], list[int | float]]:
    """The members and scores of ``submit_many``'s argument, all checked.

    A mapping of ``str`` or ``bytes`` to plain ``int``/``float`` is checked
    with whole-list operations (fast for a million entries); anything else
    goes through ``_bulk_slowly``, which also names a bad entry. Members
    come back as ``bytes``, or as the ``str`` keys themselves when every one
    is ASCII (their bytes are their characters: ``packed`` encodes a whole
    batch at once instead of one member at a time).
    """
    if isinstance(scores, (str, bytes, bytearray, memoryview)) or not isinstance(
        scores, (Mapping, Iterable)
    ):
        raise TypeError(
            "scores must be a mapping of member to score, or (member, score) pairs, "
            f"not {type(scores).__name__}"
        )
    if isinstance(scores, Mapping):
        keys = list(scores)
        values = list(scores.values())
        fast = _fast_members(keys) if _plain_scores(values) else None
        if fast is not None:
            return fast, values
        return _bulk_slowly(scores.items(), best, desc)
    return _bulk_slowly(scores, best, desc)


def by_score(
    members: list[bytes] | list[str], scores: list[int | float]
) -> tuple[list[bytes] | list[str], list[int | float]]:
    """``members`` and ``scores`` in ascending score order; equal scores keep their order.

    A bulk submit sends its members in this order: Redis then inserts them
    into the sorted set's skip list near each other (a third less time on a
    board of a million than random order), and the tie-break still follows
    the order given, since equal scores stay in it and sequence numbers are
    handed out in the order sent.
    """
    order = sorted(range(len(scores)), key=scores.__getitem__)  # sorted() is stable
    picked = cast("list[bytes] | list[str]", [members[i] for i in order])  # one kind in, same out
    return picked, [scores[i] for i in order]


def _plain_scores(values: list[Any]) -> bool:
    """Every value a plain ``int`` within ±2**53 or a finite plain ``float``."""
    kinds = set(map(type, values))
    if not kinds <= {int, float}:
        return False
    if values and (min(values) < -EXACT or max(values) > EXACT):
        return False
    return kinds == {int} or all(map(math.isfinite, values))  # ints are always finite


def _fast_members(keys: list[Any]) -> list[bytes] | list[str] | None:
    """``keys`` as members if they are all non-empty ``str`` or all non-empty ``bytes``
    (``str`` stay ``str`` when all ASCII); None sends them down the slow path."""
    kinds = set(map(type, keys))
    if kinds == {bytes}:
        return keys if all(keys) else None
    if kinds != {str} or not all(keys):
        return None
    if "".join(keys).isascii():
        return keys
    try:
        return [k.encode("utf-8", "surrogateescape") for k in keys]
    except UnicodeEncodeError:
        return None


def _bulk_slowly(
    items: Iterable[Any], best: bool, desc: bool
) -> tuple[list[bytes], list[int | float]]:
    members: list[bytes] = []
    values: list[int | float] = []
    index: dict[bytes, int] = {}
    for item in items:
        try:
            member, score = item
        except (TypeError, ValueError):
            raise TypeError(
                f"scores must hold (member, score) pairs, not {type(item).__name__}"
            ) from None
        data = member_bytes(member, "scores member")
        value = score_arg(score, f"scores[{member!r}]")
        at = index.get(data)
        if at is None:
            index[data] = len(members)
            members.append(data)
            values.append(value)
        elif not best or (value > values[at] if desc else value < values[at]):
            values[at] = value  # given twice: the later (or better) score counts
    return members, values


def packed(
    members: Sequence[bytes] | Sequence[str], scores: Sequence[int | float]
) -> tuple[bytes, bytes, bytes]:
    """A batch as the three arguments of ``leaderboard_submit``: scores, lengths, members.

    ``repr`` gives every float's shortest exact text, and an int's digits; the
    lengths are 4 bytes each, big-endian. ``str`` members must be ASCII (see
    ``bulk_scores``): one ``encode`` serves the whole batch.
    """
    if members and isinstance(members[0], str):
        blob = "".join(cast("Sequence[str]", members)).encode("ascii")
    else:
        blob = b"".join(cast("Sequence[bytes]", members))
    return (
        " ".join(map(repr, scores)).encode(),
        struct.pack(f">{len(members)}I", *map(len, members)),
        blob,
    )


def parse_score(raw: Any) -> int | float:
    """A score read from Redis (text, or a double from a RESP3 connection)."""
    if isinstance(raw, bytes):
        try:
            number = int(raw)  # most scores are whole: skip the float
        except ValueError:
            pass
        else:
            if -EXACT <= number <= EXACT:
                return number
    value = float(raw)
    if value.is_integer() and -EXACT <= value <= EXACT:
        return int(value)
    return value


def entries(
    reply: Sequence[Any], *, offset: int, first_rank: int, style: str, as_str: bool
) -> list[LeaderboardEntry[Any]]:
    """Entries from a slice of the board that starts at ``offset`` and ranks ``first_rank``.

    Within a slice, ranks follow from the scores: in ``position`` style each
    entry is one place lower; in the others a tie shares the rank of the entry
    above, and a lower score ranks at its position (``competition``) or one
    more than the entry above (``dense``).
    """
    if reply and isinstance(reply[0], (list, tuple)):  # RESP3: [[member, score], ...]
        reply = [value for pair in reply for value in pair]
    scores = [parse_score(raw) for raw in reply[1::2]]
    if as_str:
        members: list[Any] = [
            encoded[PREFIX_SIZE:].decode("utf-8", "surrogateescape") for encoded in reply[0::2]
        ]
    else:
        members = [encoded[PREFIX_SIZE:] for encoded in reply[0::2]]
    if style == "position":
        ranks: Iterable[int] = range(first_rank, first_rank + len(scores))
    else:
        ranks = _tied_ranks(scores, offset, first_rank, dense=style == "dense")
    return list(map(LeaderboardEntry, members, scores, ranks))


def _tied_ranks(
    scores: list[int | float], offset: int, first_rank: int, *, dense: bool
) -> list[int]:
    ranks: list[int] = []
    rank = first_rank
    previous = scores[0] if scores else None
    for i, score in enumerate(scores):
        if score != previous:
            rank = rank + 1 if dense else offset + i + 1
            previous = score
        ranks.append(rank)
    return ranks
