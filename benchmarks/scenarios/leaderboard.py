"""``leaderboard``: bulk submit of 1,000,000 scores, then reads at that size.

Cases, each comparing :class:`~aiocache_patterns.Leaderboard` with the raw
redis-py calls it replaces, interleaved in rounds:

* ``bulk``: 1,000,000 scores (``--quick``: 50,000) into an empty board, one
  operation per batch of 10,000: the raw variant pipelines ten ``ZADD`` of
  1,000 members each, the library calls ``submit_many`` with the 10,000
  (which sends ten scripts of 1,000 in one round trip). A new board each
  round; the previous one is ``UNLINK``-ed.
* ``top10``: ``top(10)`` vs ``ZREVRANGE 0 9 WITHSCORES``;
* ``rank``: ``rank(member)`` vs ``ZREVRANK``, random members, the same ones
  every round: after the warm-up round the board object remembers their
  entries and ``rank`` is one ``ZREVRANK`` (checked, see ``Hints``);
* ``rank-first``: the same, but every lookup is a first one (the script);
* ``around``: ``around(member, 2)`` vs ``ZREVRANK`` then ``ZREVRANGE`` (the
  two round trips a raw caller needs: the window depends on the rank).

Reads run at concurrency 1 on boards of the full size, loaded once. Scores are
distinct, so the raw commands' tie order (by member bytes) cannot differ from
the library's (by time), and every read is checked against ranks computed
here. The library does more per operation than the raw call: it keeps the
tie-break hash and sequence, validates arguments, and returns entries with
1-based ranks and decoded members.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

from aiocache_patterns import Leaderboard, client_stats
from benchmarks._report import CaseResult, Goal, ScenarioResult, check_goals
from benchmarks._target import KEY_PREFIX, Target
from benchmarks.scenarios._base import Bound, Case, Group, RunContext, VariantSpec, measure_cases

__all__ = ["SCENARIO", "LeaderboardScenario"]

RAW = "raw redis-py"
LIBRARY = "Leaderboard"

SIZE_FULL: Final = 1_000_000
SIZE_QUICK: Final = 50_000
#: Members per bulk operation (one round trip), and per ZADD / script inside it.
BATCH: Final = 10_000
CHUNK: Final = 1_000
#: (reads per variant per round, measured rounds), full and quick. Many short
#: rounds: on a noisy VM their paired median settles far better than a few long
#: ones. ``--ops`` / ``--rounds`` override them.
READS_FULL: Final = (500, 41)
READS_QUICK: Final = (200, 7)
#: Measured rounds of the bulk case (each loads the whole board, seconds).
BULK_ROUNDS_FULL: Final = 9
BULK_ROUNDS_QUICK: Final = 3
RADIUS: Final = 2

#: Within 1.2x of the raw call: at least 1 / 1.2 of its throughput.
WITHIN_1_2: Final = 1 / 1.2
GOALS = [
    Goal("bulk", LIBRARY, RAW, 0.8),
    Goal("top10", LIBRARY, RAW, WITHIN_1_2),
    Goal("rank", LIBRARY, RAW, WITHIN_1_2),
    Goal("rank-first", LIBRARY, RAW, WITHIN_1_2),
    Goal("around", LIBRARY, RAW, WITHIN_1_2),
]


@dataclasses.dataclass(frozen=True)
class Data:
    """The members, their distinct scores, and the true ranking."""

    members: list[str]
    scores: list[int]
    order: list[int]  # member indices, best first

    @classmethod
    def make(cls, size: int) -> Data:
        rng = random.Random(20240607)
        scores = [s * 7 + 3 for s in rng.sample(range(size * 4), size)]
        order = sorted(range(size), key=lambda i: -scores[i])
        return cls([f"player:{i}" for i in range(size)], scores, order)

    def batches(self) -> list[dict[str, int]]:
        pairs = list(zip(self.members, self.scores, strict=True))
        return [dict(pairs[i : i + BATCH]) for i in range(0, len(pairs), BATCH)]

    def top(self, n: int) -> list[tuple[str, int]]:
        return [(self.members[i], self.scores[i]) for i in self.order[:n]]

    def around(self, rank0: int) -> list[str]:
        start = max(0, min(rank0 - RADIUS, len(self.order) - (2 * RADIUS + 1)))
        return [self.members[i] for i in self.order[start : start + 2 * RADIUS + 1]]


def _client(target: Target) -> Any:
    return target.client()


# -- bulk ---------------------------------------------------------------------------


def _bulk_raw(
    batches: list[dict[str, int]],
) -> Callable[[Target], AbstractAsyncContextManager[Bound]]:
    chunked = [
        [dict(list(batch.items())[i : i + CHUNK]) for i in range(0, len(batch), CHUNK)]
        for batch in batches
    ]

    @contextlib.asynccontextmanager
    async def open_raw(target: Target) -> AsyncIterator[Bound]:
        client = _client(target)
        rounds = 0
        key = ""

        async def op(i: int) -> Any:
            nonlocal rounds, key
            if i == 0:  # a new round: a new, empty board
                if key:
                    await client.unlink(key)
                rounds += 1
                key = f"{KEY_PREFIX}:lb-raw-bulk:{rounds}"
            async with client.pipeline(transaction=False) as pipe:
                for chunk in chunked[i]:
                    pipe.zadd(key, chunk)
                return sum(await pipe.execute())

        try:
            yield Bound(op)
        finally:
            await client.aclose()

    return open_raw


def _bulk_library(
    batches: list[dict[str, int]],
) -> Callable[[Target], AbstractAsyncContextManager[Bound]]:
    @contextlib.asynccontextmanager
    async def open_library(target: Target) -> AsyncIterator[Bound]:
        client = _client(target)
        rounds = 0
        board: Leaderboard[str] | None = None

        async def op(i: int) -> Any:
            nonlocal rounds, board
            if i == 0:
                if board is not None:
                    await board.clear()
                rounds += 1
                board = Leaderboard(client, f"bulk-{rounds}", namespace=KEY_PREFIX)
            assert board is not None
            return await board.submit_many(batches[i])

        def counters() -> dict[str, int]:
            return {"round_trips": client_stats(client).round_trips}

        try:
            yield Bound(op, counters)
        finally:
            await client.aclose()

    return open_library


# -- reads --------------------------------------------------------------------------

RAW_KEY = f"{KEY_PREFIX}:lb-raw-read"
BOARD = "read"


async def _load(target: Target, data: Data) -> None:
    """The read cases' boards: one raw sorted set, one library board, same scores."""
    client = _client(target)
    try:
        batches = data.batches()
        for batch in batches:
            async with client.pipeline(transaction=False) as pipe:
                items = list(batch.items())
                for i in range(0, len(items), CHUNK):
                    pipe.zadd(RAW_KEY, dict(items[i : i + CHUNK]))
                await pipe.execute()
        board = Leaderboard(client, BOARD, namespace=KEY_PREFIX, timeout=30)
        await board.submit_many(dict(zip(data.members, data.scores, strict=True)))
        if await board.size() != len(data.members):
            raise RuntimeError("the library board did not load completely")
    finally:
        await client.aclose()


#: One read: (raw client, library board, member) -> the value to check.
Reader = Callable[[Any, Leaderboard[str], str], Awaitable[Any]]


def _read_spec(name: str, group: Group, data: Data, read: Reader) -> VariantSpec:
    @contextlib.asynccontextmanager
    async def open_read(target: Target) -> AsyncIterator[Bound]:
        client = _client(target)
        board = Leaderboard(client, BOARD, namespace=KEY_PREFIX)

        async def op(i: int) -> Any:
            return await read(client, board, data.members[i])

        def counters() -> dict[str, int]:
            return {"round_trips": client_stats(client).round_trips}

        try:
            yield Bound(op, counters if group == "library" else None)
        finally:
            await client.aclose()

    return VariantSpec(name, group, open_read)


async def _raw_top(client: Any, board: Leaderboard[str], member: str) -> Any:
    rows = await client.zrevrange(RAW_KEY, 0, 9, withscores=True)
    return [(m.decode(), int(s)) for m, s in rows]


async def _library_top(client: Any, board: Leaderboard[str], member: str) -> Any:
    return [(e.member, e.score) for e in await board.top(10)]


async def _raw_rank(client: Any, board: Leaderboard[str], member: str) -> Any:
    return await client.zrevrank(RAW_KEY, member) + 1


async def _library_rank(client: Any, board: Leaderboard[str], member: str) -> Any:
    entry = await board.rank(member)
    return None if entry is None else entry.rank


async def _library_rank_first(client: Any, board: Leaderboard[str], member: str) -> Any:
    # A member this board object has not looked up before: the script, every time.
    # (Benchmark only: forgets what ``rank`` remembered, see Hints.)
    board._hints.forget(member.encode())
    return await _library_rank(client, board, member)


async def _raw_around(client: Any, board: Leaderboard[str], member: str) -> Any:
    rank = await client.zrevrank(RAW_KEY, member)
    # The board's size is known here (it does not change during the reads),
    # which spares the raw caller a ZCARD: flattering it, if anything.
    start = max(0, min(rank - RADIUS, _SIZES[RAW_KEY] - (2 * RADIUS + 1)))
    rows = await client.zrevrange(RAW_KEY, start, start + 2 * RADIUS)
    return [m.decode() for m in rows]


async def _library_around(client: Any, board: Leaderboard[str], member: str) -> Any:
    return [e.member for e in await board.around(member, RADIUS)]


#: The size of the raw sorted set the reads use, set once it is loaded.
_SIZES: dict[str, int] = {}

READS: Sequence[tuple[str, str, Reader, Reader]] = (
    ("top10", "top(10) vs ZREVRANGE 0 9 WITHSCORES", _raw_top, _library_top),
    ("rank", "rank(member) vs ZREVRANK, members looked up before", _raw_rank, _library_rank),
    (
        "rank-first",
        "rank(member) vs ZREVRANK, first lookup of each member",
        _raw_rank,
        _library_rank_first,
    ),
    ("around", "around(member, 2) vs ZREVRANK + ZREVRANGE", _raw_around, _library_around),
)


class LeaderboardScenario:
    name = "leaderboard"
    description = "bulk submit of 1,000,000 scores; top(10), rank, around at that size"

    async def run(self, ctx: RunContext) -> ScenarioResult:
        size = SIZE_QUICK if ctx.quick else SIZE_FULL
        reads, read_rounds = READS_QUICK if ctx.quick else READS_FULL
        reads = ctx.ops or reads
        data = Data.make(size)
        groups = {RAW: "raw", LIBRARY: "library"}
        cases: list[CaseResult] = []

        batches = data.batches()
        bulk_specs = [
            VariantSpec(RAW, "raw", _bulk_raw(batches)),
            VariantSpec(LIBRARY, "library", _bulk_library(batches)),
        ]
        label = f"bulk submit of {size:,} scores, {BATCH:,} per operation"
        bulk_rounds = BULK_ROUNDS_QUICK if ctx.quick else BULK_ROUNDS_FULL
        bulk = Case("bulk", label, 1, list(range(len(batches))), bulk_rounds)
        expected_bulk = [len(batch) for batch in batches]
        cases += await measure_cases(self.name, ctx, bulk_specs, [bulk], expected_bulk, RAW)

        await _load(ctx.target, data)
        _SIZES[RAW_KEY] = size
        rng = random.Random(7)
        picks = [rng.randrange(size) for _ in range(reads)]
        rank_of = {member_index: r for r, member_index in enumerate(data.order)}
        expectations: dict[str, list[Any]] = {
            "top10": [data.top(10)] * size,
            "rank": [rank_of[i] + 1 for i in range(size)],
            "rank-first": [rank_of[i] + 1 for i in range(size)],
            "around": [data.around(rank_of[i]) for i in range(size)],
        }
        for case_name, case_label, raw_read, library_read in READS:
            specs = [
                _read_spec(RAW, "raw", data, raw_read),
                _read_spec(LIBRARY, "library", data, library_read),
            ]
            label = f"{case_label}, {size:,} members, concurrency 1"
            case = Case(case_name, label, 1, picks, read_rounds)
            cases += await measure_cases(
                self.name, ctx, specs, [case], expectations[case_name], RAW
            )

        description = self.description.replace("1,000,000", f"{size:,}")
        result = ScenarioResult(self.name, description, RAW, groups, cases)
        result.units["bulk"] = ("scores/s", float(BATCH))
        result.goals = check_goals(cases, GOALS, ctx.target.speed_figure)
        for outcome in cases[0].outcomes:
            if outcome.ops_per_s:
                result.notes.append(
                    f"bulk, {outcome.name}: {outcome.ops_per_s * BATCH:,.0f} scores/s "
                    "(median round)"
                )
        result.notes.append(
            "targets: bulk at least 0.8 of the raw throughput; top/rank/around within 1.2 "
            f"times the raw calls' time, i.e. at least {WITHIN_1_2:.3f} of their throughput"
        )
        return result


SCENARIO = LeaderboardScenario()
