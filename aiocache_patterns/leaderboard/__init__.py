"""Leaderboards on sorted sets: fair ties, rank styles, around-me, pages, periods.

``Leaderboard`` (``_board``: the writes) builds on the reads
(``_reads``); the scripts and the key layout are in ``_scripts`` and
``lua/``, member and score values in ``_values``, periods in ``_periods``,
and the rolling view of several periodic boards in ``_view``. See
docs/leaderboards.md.
"""

from ._board import KeepPolicy as KeepPolicy
from ._board import Leaderboard as Leaderboard
from ._periods import BoardPeriod as BoardPeriod
from ._values import LeaderboardEntry as LeaderboardEntry
from ._values import RankStyle as RankStyle
from ._view import LeaderboardView as LeaderboardView
from ._view import ViewAggregate as ViewAggregate

__all__ = (
    "BoardPeriod",
    "KeepPolicy",
    "Leaderboard",
    "LeaderboardEntry",
    "LeaderboardView",
    "RankStyle",
    "ViewAggregate",
)
