"""``soak``: minutes of mixed traffic while faults are injected; nothing unexpected, nothing leaks.

``python -m benchmarks --scenario soak`` (about 2.5 minutes; ``--quick``:
about 18 s). Not part of the default run: name it (``default = False``).

The soak starts its own ``redis-server`` on a free loopback port (it kills
it), with a fault proxy in front (``tests/_proxy.py``; the server helper is
``tests/_servers.py``: both are reused as they are, since ``python -m
benchmarks`` runs from the repository root). Two clients stand for two
application processes. Worker tasks, 13 per client, drive every pattern at
once: ``Cache`` get / get_or_load / set / delete over 100 keys, two
``RateLimiter`` s (``gcra`` with ``fail_open=True``, ``sliding_log`` with
``fail_open=False``), ``Lock`` (short ``blocking_timeout``), ``Semaphore``
and ``Leaderboard`` submit / top. Every answer is checked (see
``_soak_workload``).

The fault schedule is fixed (``_soak_faults``): latency below then above the
operation timeout, a stall, connection resets, refused connections, the
server killed and restarted empty, with healthy stretches in between; a
burst of 2,000 concurrent calls and a cancellation storm while healthy.

Resources are counted after a warm-up and again after the last fault and a
recovery period, both times with the workers stopped and the library idle
(``_soak_resources``). The run fails (exit status 1) on any unexpected
outcome or any resource that is not flat.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import redis.asyncio as aioredis

import aiocache_patterns
from benchmarks._report import Chart, Goal, GoalCheck, ScenarioResult, Table
from benchmarks.scenarios._base import RunContext
from benchmarks.scenarios._soak_faults import (
    Phase,
    PhaseRecord,
    Timeline,
    inject,
    schedule,
)
from benchmarks.scenarios._soak_resources import (
    ADMIN_NAME,
    Snapshot,
    flatness,
    rss_mb,
    settle,
    snapshot,
)
from benchmarks.scenarios._soak_workload import (
    BURST,
    LEADERBOARD,
    LIMITER_CLOSED,
    LIMITER_OPEN,
    PATTERNS,
    STORM,
    Tally,
    Workload,
)
from tests._proxy import FaultProxy
from tests._servers import private_redis, redis_server_binary

__all__ = ["SCENARIO", "SoakScenario"]

#: Operation timeout of every pattern in the soak.
TIMEOUT: Final = 0.5
SEED: Final = 8
#: Seconds between cache-stats samples.
SAMPLE: Final = 0.25
#: Waves of the cancellation storm: {quick: waves}.
STORM_WAVES: Final = {False: 5, True: 2}
WORKER_PATTERNS: Final = tuple(p for p in PATTERNS if p not in (BURST, STORM))


class _LogCounter(logging.Handler):
    """Counts log records by (logger, level) and keeps the first message of each."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: Counter[tuple[str, str]] = Counter()
        self.first: dict[tuple[str, str], str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key = (record.name, record.levelname)
        self.counts[key] += 1
        if key not in self.first:
            try:
                self.first[key] = record.getMessage()[:160]
            except Exception:  # a broken format string is still a line
                self.first[key] = str(record.msg)[:160]


@contextlib.contextmanager
def _captured_logs() -> Iterator[_LogCounter]:
    """Count the library's log lines (DEBUG up) and asyncio's warnings, instead of printing."""
    counter = _LogCounter()
    library = logging.getLogger("aiocache_patterns")
    loop_log = logging.getLogger("asyncio")
    saved = (library.level, library.propagate, loop_log.propagate)
    library.addHandler(counter)
    library.setLevel(logging.DEBUG)
    library.propagate = False
    loop_log.addHandler(counter)
    loop_log.propagate = False
    try:
        yield counter
    finally:
        library.removeHandler(counter)
        loop_log.removeHandler(counter)
        library.setLevel(saved[0])
        library.propagate = saved[1]
        loop_log.propagate = saved[2]


class _Series:
    """The time series, one point per bucket, in flat arrays: it grows without adding
    objects, so it does not blur the memory counts."""

    def __init__(self) -> None:
        self.t = array("d")
        self.rss_mb = array("d")
        self.fault = array("b")  # a fault window was open during the bucket
        self.useful = {name: array("d") for name in WORKER_PATTERNS}  # calls/s
        self.degraded = {name: array("d") for name in WORKER_PATTERNS}  # calls/s

    def __len__(self) -> int:
        return len(self.t)


@dataclass
class _Run:
    """What one soak produced, for the report."""

    server: str
    workers: int
    timeline: Timeline
    workload: Workload
    start: Snapshot
    end: Snapshot
    measured_from: float
    measured_to: float
    series: _Series
    problems: list[str] = field(default_factory=list)
    warm_up_unexpected: list[str] = field(default_factory=list)
    end_stats: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


class SoakScenario:
    name = "soak"
    description = "mixed traffic for minutes while faults are injected; errors and resources"
    #: Not in the default run (it takes minutes): ``--scenario soak``.
    default = False

    async def run(self, ctx: RunContext) -> ScenarioResult:
        result = ScenarioResult(self.name, self.description, "", {}, [])
        if redis_server_binary() is None:
            result.notes.append(
                "skipped: the soak needs a redis-server binary on PATH (it starts, kills and "
                f"restarts its own); the run's target ({ctx.target.label}) cannot stand in"
            )
            return result
        board = getattr(aiocache_patterns, "Leaderboard", None)
        warm_up, phases = schedule(ctx.quick, TIMEOUT)
        ctx.progress.start(self.name, len(phases) + 3)
        with _captured_logs() as logs:
            async with private_redis() as server, FaultProxy("127.0.0.1", server.port) as proxy:
                clients = [aioredis.Redis(host="127.0.0.1", port=proxy.port) for _ in range(2)]
                admin = aioredis.Redis(host="127.0.0.1", port=server.port, client_name=ADMIN_NAME)
                try:
                    info = await admin.info("server")
                    soak = await self._soak(
                        ctx, server, proxy, clients, admin, board, warm_up, phases
                    )
                    soak.server = f"redis {info.get('redis_version', '?')}"
                finally:
                    for client in (*clients, admin):
                        await client.aclose()
        _report(result, soak, logs, ctx, board is not None)
        return result

    async def _soak(
        self,
        ctx: RunContext,
        server: Any,
        proxy: FaultProxy,
        clients: list[aioredis.Redis],
        admin: aioredis.Redis,
        board: Any | None,
        warm_up: float,
        phases: list[Phase],
    ) -> _Run:
        timeline = Timeline()
        workload = Workload(clients, timeline, timeout=TIMEOUT, seed=SEED, leaderboard=board)

        # Warm-up: fill the cache, open the connections; then stop and count.
        # The burst and the storm run in it too: the process reaches its working size
        # (connections, memory high-water mark) before the first count.
        ctx.progress.step("warm-up")
        workload.start(0)
        await asyncio.sleep(warm_up)
        await workload.burst_and_storm(SEED, STORM_WAVES[ctx.quick])
        problems = [f"warm-up: worker hung: {h}" for h in await workload.stop()]
        warm_up_unexpected = _unexpected_lines(workload)
        start = await snapshot(timeline.now(), clients, admin, proxy, await settle(clients))
        if not start.settled:
            problems.append("the library did not go idle after the warm-up")

        # The measured run: fresh tallies, the faults, the recovery.
        workload.tallies = {
            name: Tally(name, tally.bound) for name, tally in workload.tallies.items()
        }
        workload.admissions.clear()
        workload.over.clear()
        workload.reset_samples()
        workload.max_lag = 0.0
        workload.samples.clear()
        timeline.started = time.monotonic()  # times in the report: from here
        measured_from = timeline.now()
        series = _Series()
        sampler = asyncio.create_task(self._sample(workload, timeline, ctx.quick, series))
        lag = asyncio.create_task(workload.watch_lag())
        workload.start(1)
        workers = workload.workers
        try:
            for number, phase in enumerate(phases):
                label = phase.label(TIMEOUT)
                ctx.progress.step(f"{number + 1}/{len(phases)}: {label}")
                record = PhaseRecord(label, phase.kind, timeline.now())
                before = _totals(workload)
                lag_before, workload.max_lag = workload.max_lag, 0.0
                await inject(
                    phase,
                    timeout=TIMEOUT,
                    proxy=proxy,
                    server=server,
                    timeline=timeline,
                    burst=functools.partial(
                        workload.burst_and_storm, SEED + number, STORM_WAVES[ctx.quick]
                    ),
                )
                workload.sample_caches(timeline.now() - SAMPLE)
                after = _totals(workload)
                record.end = timeline.now()
                record.ok_ops, record.degraded, record.unexpected = (
                    a - b for a, b in zip(after, before, strict=True)
                )
                record.window = timeline.windows[-1] if phase.degrades(TIMEOUT) else None
                record.lag = workload.max_lag
                workload.max_lag = max(lag_before, record.lag)
                timeline.phases.append(record)
            ctx.progress.step("stopping the workers")
            problems += [f"worker hung: {h}" for h in await workload.stop()]
        finally:
            await workload.stop()
            sampler.cancel()
            lag.cancel()
            await asyncio.gather(sampler, lag, return_exceptions=True)
        measured_to = timeline.now()
        workload.sample_caches(measured_to - SAMPLE)
        workload.check_admissions()  # all of them, and let them go before counting
        end_stats = _end_stats(workload)
        for client in workload.clients:
            await client.cache.aclose()
        ctx.progress.step("counting resources")
        settled = await settle(clients)
        end = await snapshot(timeline.now(), clients, admin, proxy, settled)
        if not settled:
            problems.append("the library did not go idle after the recovery period")
        return _Run(
            server="",
            workers=workers,
            timeline=timeline,
            workload=workload,
            start=start,
            end=end,
            measured_from=measured_from,
            measured_to=measured_to,
            series=series,
            problems=problems,
            warm_up_unexpected=warm_up_unexpected,
            end_stats=end_stats,
        )

    async def _sample(
        self,
        workload: Workload,
        timeline: Timeline,
        quick: bool,
        series: _Series,
    ) -> None:
        """Fold cache fail-opens in every SAMPLE s; one throughput point per bucket."""
        bucket = 0.5 if quick else 1.0
        last = timeline.now()
        last_bucket = last
        last_check = last
        useful = {n: workload.tallies[n].useful for n in WORKER_PATTERNS}
        degraded = {n: workload.tallies[n].degraded for n in WORKER_PATTERNS}
        while True:
            await asyncio.sleep(SAMPLE)
            now = timeline.now()
            workload.sample_caches(last)
            last = now
            if now - last_check >= 5.0:  # check admissions as we go, so they are not kept
                workload.check_admissions(now - 5.0)
                last_check = now
            if now - last_bucket < bucket:
                continue
            span = now - last_bucket
            tallies = workload.tallies
            series.t.append(now)
            series.rss_mb.append(rss_mb())
            series.fault.append(
                any(w.start <= now and w.end >= last_bucket for w in timeline.windows)
            )
            for n in WORKER_PATTERNS:
                series.useful[n].append((tallies[n].useful - useful[n]) / span)
                series.degraded[n].append((tallies[n].degraded - degraded[n]) / span)
            useful = {n: tallies[n].useful for n in WORKER_PATTERNS}
            degraded = {n: tallies[n].degraded for n in WORKER_PATTERNS}
            last_bucket = now


def _totals(workload: Workload) -> tuple[int, int, int]:
    tallies = workload.tallies.values()
    return (
        sum(t.useful for t in tallies),
        sum(t.degraded for t in tallies),
        sum(t.wrong for t in tallies),
    )


def _unexpected_lines(workload: Workload) -> list[str]:
    lines = []
    for tally in workload.tallies.values():
        for kind, count in tally.unexpected.most_common():
            sample = workload.samples.get(f"{tally.name}: {kind}", "")
            lines.append(f"{tally.name}: {kind} x{count} (first: {sample})")
    return lines


def _end_stats(workload: Workload) -> dict[str, list[tuple[str, int]]]:
    """``Cache.stats`` and ``RateLimiter.stats`` of both clients, summed (since construction)."""
    stats: dict[str, Counter[str]] = {"Cache.stats": Counter()}
    for client in workload.clients:
        cache = client.cache.stats
        for name in cache.__dataclass_fields__:
            stats["Cache.stats"][name] += getattr(cache, name)
        for label, limiter in (
            ("RateLimiter.stats (gcra, fail_open=True)", client.limiter_open),
            ("RateLimiter.stats (sliding_log, fail_open=False)", client.limiter_closed),
        ):
            counts = stats.setdefault(label, Counter())
            s = limiter.stats
            counts.update({"allowed": s.allowed, "denied": s.denied, "errors": s.errors})
    return {k: list(v.items()) for k, v in stats.items()}


# -- the report -------------------------------------------------------------------------------


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _breakdown(counter: Counter[str]) -> str:
    return "; ".join(f"{kind} {_n(count)}" for kind, count in counter.most_common()) or "—"


def _report(
    result: ScenarioResult, run: _Run, logs: _LogCounter, ctx: RunContext, has_board: bool
) -> None:
    workload, timeline = run.workload, run.timeline
    seconds = run.measured_to - run.measured_from
    tallies = workload.tallies

    rows = []
    for name in PATTERNS:
        tally = tallies[name]
        if name == LEADERBOARD and not has_board:
            rows.append([name, "—", "—", "—", "—", "—", "skipped: no Leaderboard yet"])
            continue
        rows.append(
            [
                name,
                _n(tally.ops),
                _n(tally.useful / seconds) if name not in (BURST, STORM) else "—",
                _breakdown(tally.expected),
                _n(tally.wrong),
                f"{tally.max_latency * 1000:,.0f} ({tally.bound * 1000:,.0f})",
                _breakdown(tally.info),
            ]
        )
    result.tables.append(
        Table(
            f"Patterns: {_n(seconds)} s measured, {run.workers} worker tasks on 2 clients, "
            f"operation timeout {TIMEOUT:g} s",
            [
                "pattern",
                "calls",
                "useful calls/s",
                "expected degradations",
                "unexpected",
                "slowest call ms (bound)",
                "details",
            ],
            rows,
        )
    )

    phase_rows = []
    for record in timeline.phases:
        window = record.window
        recovered = "—"
        if window is not None:
            after = window.last_degraded - window.end
            recovered = "none after" if after <= 0 else f"+{after:.1f} s"
        span = max(record.end - record.start, 1e-9)
        phase_rows.append(
            [
                f"{record.start - run.measured_from:.1f} to {record.end - run.measured_from:.1f}",
                record.label,
                _n(max(record.ok_ops, 0) / span),
                _n(record.degraded),
                _n(record.unexpected),
                recovered,
                f"{record.lag * 1000:.0f}",
            ]
        )
    result.tables.append(
        Table(
            "Fault timeline (t in seconds from the start of the measured run)",
            [
                "t (s)",
                "phase",
                "useful calls/s",
                "expected degradations",
                "unexpected",
                "last degradation after the fault ended",
                "max loop lag ms",
            ],
            phase_rows,
        )
    )

    checks = _checks(run, logs, has_board)
    result.tables.append(
        Table(
            "Correctness checks",
            ["check", "found", ""],
            [[what, _n(found), "✓" if found == 0 else "✗"] for what, found, _ in checks],
        )
    )

    flat = flatness(run.start, run.end)
    result.tables.append(
        Table(
            "Resources: after the warm-up vs after the recovery (workers stopped, library idle)",
            ["what", "start", "end", "flat if", ""],
            [[w, s, e, rule, "✓" if ok else "✗"] for w, s, e, rule, ok in flat],
        )
    )

    result.tables.append(
        Table(
            "Stats at the end (both clients summed, since construction, warm-up included)",
            ["object", "counters"],
            [
                [label, ", ".join(f"{k} {_n(v)}" for k, v in values)]
                for label, values in run.end_stats.items()
            ],
        )
    )
    result.tables.append(
        Table(
            "Log lines (library loggers at DEBUG and up, asyncio's; counted, not printed)",
            ["logger", "level", "lines", "first"],
            [
                [name, level, _n(count), logs.first[(name, level)]]
                for (name, level), count in sorted(logs.counts.items())
            ]
            or [["—", "—", "0", ""]],
        )
    )

    _charts(result, run)

    unexpected = _unexpected_lines(workload)
    result.errors += unexpected
    result.errors += [f"warm-up: {line}" for line in run.warm_up_unexpected]
    result.errors += run.problems
    result.errors += [
        f"check failed: {what} ({found})"
        for what, found, tallied in checks
        if found and not tallied
    ]
    result.errors += [
        f"not flat: {w}: {s} -> {e} (flat if {rule})" for w, s, e, rule, ok in flat if not ok
    ]
    if run.end.tasks != run.start.tasks:
        extra = Counter(run.end.task_list) - Counter(run.start.task_list)
        result.errors += [f"task left running: {t} x{n}" for t, n in extra.items()]

    total = sum(t.wrong for t in tallies.values()) + len(run.warm_up_unexpected)
    total += sum(found for _, found, tallied in checks if not tallied)
    total += len(run.problems)
    result.goals.append(
        GoalCheck(
            Goal("soak", "unexpected outcomes", "0", 0.0),
            float(total),
            total == 0,
            f"unexpected outcomes = {total} [target 0] {'✓' if total == 0 else '✗'}",
        )
    )
    all_flat = all(ok for *_, ok in flat) and run.start.settled and run.end.settled
    s, e = run.start, run.end
    result.goals.append(
        GoalCheck(
            Goal("soak", "resources", "flat", 1.0),
            None,
            all_flat,
            f"resources flat: tasks {s.tasks} -> {e.tasks}, connections in use "
            f"{sum(s.in_use)} -> {sum(e.in_use)}, created {sum(s.created)} -> {sum(e.created)}, "
            f"server clients {s.server_clients} -> {e.server_clients}, RSS {s.rss_mb:.1f} -> "
            f"{e.rss_mb:.1f} MiB {'✓' if all_flat else '✗'}",
        )
    )

    degraded = sum(t.degraded for t in tallies.values())
    if run.series:
        rss = run.series.rss_mb
        result.notes.append(
            f"Resident memory while running: {min(rss):.1f} to {max(rss):.1f} MiB "
            f"(start count {run.start.rss_mb:.1f}, end count {run.end.rss_mb:.1f})."
        )
    result.notes += [
        f"Own private {run.server} on loopback behind a fault proxy (tests/_proxy.py), killed "
        f"and restarted by the soak; the run's target ({ctx.target.label}) is not used.",
        f"Every pattern uses timeout={TIMEOUT:g} s; circuit breaker as shipped (5 consecutive "
        "failures, then fail fast 0.5 s doubling to 5 s); workload seed "
        f"{SEED}; fixed fault schedule.",
        f"{_n(sum(t.ops for t in tallies.values()))} calls, {_n(degraded)} expected "
        f"degradations, {_n(sum(t.wrong for t in tallies.values()))} unexpected.",
        "Expected: RedisUnavailable / RedisTimeout / CircuitOpen from Lock, Semaphore, "
        "Leaderboard and Cache.delete; degraded RateLimiter results following fail_open; Cache "
        "reads and writes failing open; all only inside a fault window (the fault plus its "
        "grace: the breaker's pause, one timeout, 1 s).",
    ]
    if ctx.ops or ctx.rounds:
        result.notes.append("--ops and --rounds do not apply to the soak (it runs for a time).")


def _checks(run: _Run, logs: _LogCounter, has_board: bool) -> list[tuple[str, int, bool]]:
    """``(check, findings, tallied)``: tallied findings are already unexpected outcomes."""
    workload, timeline = run.workload, run.timeline
    tallies = workload.tallies.values()

    def tallied(*fragments: str) -> int:
        return sum(
            count
            for tally in tallies
            for kind, count in tally.unexpected.items()
            if any(f in kind for f in fragments)
        )

    over = workload.over_admissions()
    settled_after = timeline.settled_after
    not_recovered = [
        name
        for name in WORKER_PATTERNS
        if (name != LEADERBOARD or has_board) and workload.tallies[name].last_ok <= settled_after
    ]
    asyncio_errors = sum(
        c for (name, level), c in logs.counts.items() if name == "asyncio" and level != "DEBUG"
    )
    tallied_checks = [
        ("cache: every answer a miss or a written version of that key", tallied("wrong value")),
        ("cache: undecodable values (stats.decode_errors)", tallied("undecodable")),
        ("lock / semaphore: more holders than the limit", tallied("more holders")),
        ("lock: acquired but owned() False (no data loss)", tallied("owned() is False")),
        ("lock / semaphore: release LockNotOwned (no data loss)", tallied("LockNotOwned")),
        ("lock: fencing tokens strictly increasing (regressions)", tallied("backwards")),
        ("limiter: degraded result against its fail_open", tallied("fail_open policy")),
        ("leaderboard: top() ranked, ordered, members match scores", tallied("wrong board")),
        ("calls slower than their bound (hang check)", tallied("slower than")),
        ("degradations while Redis was healthy", tallied("healthy")),
        ("exceptions the docs do not promise", tallied("raised")),
    ]
    return [
        *((what, found, True) for what, found in tallied_checks),
        (
            "limiter sliding_log: over-admissions within one window",
            over.get(LIMITER_CLOSED, 0),
            False,
        ),
        ("limiter gcra: admissions beyond the bucket", over.get(LIMITER_OPEN, 0), False),
        ("patterns without a useful call after the last fault", len(not_recovered), False),
        ("asyncio errors logged (e.g. exception never retrieved)", asyncio_errors, False),
    ]


def _charts(result: ScenarioResult, run: _Run) -> None:
    series = run.series
    if not series:
        return
    xs = [t - run.measured_from for t in series.t]

    def fault_line(height: float) -> list[tuple[float, float]]:
        return [(x, height if f else 0.0) for x, f in zip(xs, series.fault, strict=True)]

    for title, values in (
        ("useful calls/s per pattern", series.useful),
        ("expected degradations/s per pattern", series.degraded),
    ):
        lines = {
            name: [(x, max(v, 0.0)) for x, v in zip(xs, values[name], strict=True)]
            for name in WORKER_PATTERNS
        }
        peak = max((y for points in lines.values() for _, y in points), default=1.0)
        lines["fault window open"] = fault_line(peak * 1.05)
        result.charts.append(Chart(title, "seconds into the measured run", "calls/s", lines))
    start = run.start.rss_mb
    result.charts.append(
        Chart(
            "resident memory (MiB; the counts at start and end are with the workers stopped)",
            "seconds into the measured run",
            "MiB",
            {
                "RSS": list(zip(xs, series.rss_mb, strict=True)),
                "RSS at the start count": [(xs[0], start), (xs[-1], start)],
            },
        )
    )


SCENARIO = SoakScenario()
