"""Periodic leaderboards: which daily, weekly or monthly board a moment falls in.

Periods are aligned in UTC: a day starts at 00:00 UTC, a week on Monday
00:00 UTC (ISO 8601 weeks), a month on its first day at 00:00 UTC. Each
period has an id that sorts and reads well in a key: ``2024-06-01``,
``2024-W22``, ``2024-06``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Final, Literal, get_args

__all__ = ["KEY_WORDS", "BoardPeriod", "Span", "as_utc", "check_period", "previous", "span_of"]

#: How a periodic board is cut: one board per UTC day, ISO week or month.
BoardPeriod = Literal["daily", "weekly", "monthly"]

_PERIODS: Final[tuple[str, ...]] = get_args(BoardPeriod)
#: The word each period puts in its boards' keys.
KEY_WORDS: Final[dict[str, str]] = {"daily": "day", "weekly": "week", "monthly": "month"}


def check_period(value: object) -> BoardPeriod | None:
    """``value`` as a period (or ``None``), else ``ValueError``/``TypeError`` naming ``period``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"period must be one of {_PERIODS} or None, not {type(value).__name__}")
    if value not in _PERIODS:
        raise ValueError(f"period must be one of {_PERIODS} or None, got {value!r}")
    return value  # type: ignore[return-value]  # checked against the Literal's values


@dataclass(frozen=True, slots=True)
class Span:
    """One period: its id, and its start and end (UTC; the end is excluded)."""

    id: str
    start: datetime
    end: datetime

    def expire_at(self, retention: float) -> int:
        """Unix time (whole seconds, rounded up) at which the period's board expires."""
        return math.ceil(self.end.timestamp() + retention)


def as_utc(when: datetime | date | float) -> datetime:
    """A moment in UTC: an aware ``datetime``, a ``date`` (its midnight, UTC), or Unix seconds.

    A naive ``datetime`` is taken to be in UTC already.
    """
    if isinstance(when, datetime):
        if when.tzinfo is None:
            return when.replace(tzinfo=timezone.utc)
        return when.astimezone(timezone.utc)
    if isinstance(when, date):
        return datetime(when.year, when.month, when.day, tzinfo=timezone.utc)
    if isinstance(when, bool) or not isinstance(when, (int, float)):
        raise TypeError(
            f"when must be a datetime, a date or Unix seconds, not {type(when).__name__}"
        )
    if not math.isfinite(when):
        raise ValueError(f"when must be finite, got {when!r}")
    return datetime.fromtimestamp(when, timezone.utc)


def span_of(period: BoardPeriod, when: datetime) -> Span:
    """The period of kind ``period`` that contains ``when`` (an aware UTC datetime)."""
    day = datetime(when.year, when.month, when.day, tzinfo=timezone.utc)
    if period == "daily":
        return Span(day.date().isoformat(), day, day + timedelta(days=1))
    if period == "weekly":
        year, week, weekday = day.isocalendar()
        start = day - timedelta(days=weekday - 1)
        return Span(f"{year:04d}-W{week:02d}", start, start + timedelta(days=7))
    start = day.replace(day=1)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return Span(f"{start.year:04d}-{start.month:02d}", start, end)


def previous(period: BoardPeriod, span: Span) -> Span:
    """The period just before ``span``."""
    return span_of(period, span.start - timedelta(seconds=1))
