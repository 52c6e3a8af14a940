"""Helpers the leaderboard tests share."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from aiocache_patterns import (
    Leaderboard,
    LeaderboardEntry,
)


async def whole(board: Leaderboard[Any]) -> list[LeaderboardEntry[Any]]:
    """Every entry of ``board``, a page of 1,000 (the most one read returns) at a time."""
    found: list[LeaderboardEntry[Any]] = []
    page = 1
    while True:
        entries = await board.page(page, size=1000)
        found += entries
        if len(entries) < 1000:
            return found
        page += 1


SEED = (("alice", 300), ("bob", 150), ("carol", 300))


def table(board_entries: list[LeaderboardEntry[Any]]) -> list[tuple[Any, Any, int]]:
    """Entries as (member, score, rank) rows, easy to compare with a hand-made table."""
    return [(e.member, e.score, e.rank) for e in board_entries]


def at(day: str, hour: int = 12) -> float:
    """Unix time of ``day`` (YYYY-MM-DD) at ``hour``:00 UTC."""
    moment = datetime.fromisoformat(day).replace(hour=hour, tzinfo=timezone.utc)
    return moment.timestamp()


class Clock:
    """A settable wall clock for periodic boards."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
