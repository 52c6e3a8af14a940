"""``stampede``: a cold key hit by many callers at once, and a hot key across expiries.

Cold key: N concurrent calls of one missing key (a 50 ms loader), in one
process (N = 1,000 and 10,000; 3 runs each) and in 4 worker processes started
together (N/4 each; 5 runs each). Per variant: loader calls (counted by the
loader itself, in every process), errors, p50/p99 latency of the calls that
succeeded.

Hot key: 50 callers read one key in a loop for 3.5 TTLs (TTL 1 s, a 100 ms
loader): loader calls, and how many reads waited for a loader, per refresh
(see ``_stampede_hot``).

Variants: the seed's naive code (GET; on a miss load and SETEX, on a default
``redis.asyncio.Redis()`` pool), this library (defaults: single-flight +
recompute lock + XFetch; ``recompute_lock=False``; ``refresh_after``;
``stale_ttl``), cashews ``@cache(lock=True)`` and ``@cache.early``, aiocache
``cached_stampede``, and an in-memory asyncio floor as a latency reference.
Each variant gets its own client with its own library's defaults, and a fresh
key per run; variants run one after the other (opened, warmed up with one
discarded stampede, measured, closed), so no pool of one is open during
another's run.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from benchmarks._measure import percentile
from benchmarks._optional import missing_note, version_of
from benchmarks._report import TIMES, Chart, Goal, GoalCheck, ScenarioResult, Table
from benchmarks._target import EMBEDDED_NOTE
from benchmarks.scenarios._base import RunContext
from benchmarks.scenarios._stampede_hot import STALL, WAITED_FRACTION, HotResult, steady_load
from benchmarks.scenarios._stampede_procs import WorkerError, Workers, workers
from benchmarks.scenarios._stampede_variants import (
    COLD_VARIANTS,
    FLOOR,
    HOT_VARIANTS,
    LIB_DEFAULT,
    LIB_REFRESH,
    LIB_STALE,
    NAIVE,
    VARIANTS,
    Burst,
    CountedLoader,
    Settings,
    VariantSpec,
    burst,
)

__all__ = ["SCENARIO", "StampedeScenario"]

COLD_LOADER = 0.05  # seconds
HOT_LOADER = 0.1
COLD_TTL = 60.0  # nothing expires during a cold run
PROCESSES = 4
#: The cold target: p99 at most the loader's time plus this.
P99_SLACK_MS = 20.0
#: "About one load per TTL": loads per TTL within this band.
PER_TTL_BAND = (0.75, 1.5)
#: Seconds between sending a run to the workers and its start.
_START_AHEAD = 0.25
DASH = "\u2013"  # en dash, in ranges


@dataclass(frozen=True)
class Plan:
    cold_ns: tuple[int, ...]  # callers, one process
    multi_ns: tuple[int, ...]  # callers in all, PROCESSES processes
    repeats: int  # runs per variant and concurrency, one process
    multi_repeats: int  # the same, in PROCESSES processes
    hot_ttl: float
    hot_ttls: float  # how many TTLs the steady load lasts
    hot_callers: int


FULL = Plan((1000, 10000), (1000, 10000), 3, 5, 1.0, 3.5, 50)
QUICK = Plan((200, 1000), (1000,), 1, 1, 0.5, 3.5, 50)


@dataclass
class Cold:
    """One variant at one concurrency: every run's loader calls and burst."""

    loads: list[int] = field(default_factory=list)
    bursts: list[Burst] = field(default_factory=list)

    def add(self, loads: int, result: Burst) -> None:
        self.loads.append(loads)
        self.bursts.append(result)

    @property
    def errors(self) -> list[int]:
        return [b.errors for b in self.bursts]

    def latencies(self) -> list[float]:
        return sorted(x for b in self.bursts for x in b.latencies_ms)


@dataclass
class Group:
    """A case group's results: ``{variant: {callers: Cold}}``, plus skipped variants."""

    runs: dict[str, dict[int, Cold]] = field(default_factory=dict)
    skips: dict[str, str] = field(default_factory=dict)
    #: The widest gap between the first and the last worker starting a run (seconds).
    start_skew: float = 0.0

    def cold(self, variant: str, n: int) -> Cold:
        return self.runs.setdefault(variant, {}).setdefault(n, Cold())


class _RunFailed(Exception):
    """A worker answered a run with an error (the variant broke, not the worker)."""


def _run_key(tag: str) -> str:
    return f"{tag}:{uuid.uuid4().hex[:12]}"


def _skip_reason(spec: VariantSpec, url: str | None) -> str | None:
    if spec.requires is not None and version_of(spec.requires) is None:
        return f"skipped: {missing_note(spec.requires)}"
    if spec.needs_url and url is None:
        return f"skipped: needs a Redis URL (target is fakeredis, {EMBEDDED_NOTE})"
    return None


class StampedeScenario:
    name = "stampede"
    description = "cold key under 1,000-10,000 concurrent callers (1 and 4 processes); hot key"

    async def run(self, ctx: RunContext) -> ScenarioResult:
        plan = QUICK if ctx.quick else FULL
        if ctx.rounds:
            plan = dataclasses.replace(plan, repeats=ctx.rounds, multi_repeats=ctx.rounds)
        multi = ctx.target.url is not None
        runnable = [n for n in COLD_VARIANTS if _skip_reason(VARIANTS[n], ctx.target.url) is None]
        hot_runnable = [
            n for n in HOT_VARIANTS if _skip_reason(VARIANTS[n], ctx.target.url) is None
        ]
        per_variant = len(plan.cold_ns) * plan.repeats + 1
        total = len(runnable) * per_variant + len(hot_runnable)
        if multi:
            total += len(runnable) * (len(plan.multi_ns) * plan.multi_repeats + 1)
        ctx.progress.start(self.name, total)
        result = ScenarioResult(
            self.name, self.description, NAIVE, {n: v.group for n, v in VARIANTS.items()}, []
        )
        single = await self._cold_single(ctx, plan)
        group4: Group | None = None
        if multi:
            group4 = await self._cold_multi(ctx, plan, result)
        hot = await self._hot(ctx, plan)
        _report(ctx, plan, result, single, group4, hot)
        return result

    # -- cold key, one process -------------------------------------------------------

    async def _cold_single(self, ctx: RunContext, plan: Plan) -> Group:
        group = Group()
        for name in COLD_VARIANTS:
            spec = VARIANTS[name]
            why = _skip_reason(spec, ctx.target.url)
            if why is not None:
                group.skips[name] = why
                continue
            loader = CountedLoader(COLD_LOADER)
            try:
                async with spec.open(ctx.target, loader, Settings(COLD_TTL, COLD_LOADER)) as call:
                    ctx.progress.step(f"cold, 1 process: {name}, warm-up")
                    await burst(call, _run_key("warm"), min(plan.cold_ns))
                    for repeat in range(plan.repeats):
                        for n in plan.cold_ns:
                            loader.reset()
                            gc.collect()
                            found = await burst(call, _run_key(f"cold1:{n}"), n)
                            group.cold(name, n).add(loader.calls, found)
                            ctx.progress.step(
                                f"cold, 1 process, {n:,} callers, run {repeat + 1}: {name}"
                            )
            except Exception as exc:
                if spec.group != "peer":
                    raise
                group.skips[name] = f"skipped: {type(exc).__name__}: {exc}"[:300]
                group.runs.pop(name, None)
        return group

    # -- cold key, several processes ----------------------------------------------------

    async def _cold_multi(self, ctx: RunContext, plan: Plan, result: ScenarioResult) -> Group:
        group = Group()
        assert ctx.target.url is not None
        try:
            async with workers(ctx.target.url, PROCESSES) as pool:
                for name in COLD_VARIANTS:
                    spec = VARIANTS[name]
                    why = _skip_reason(spec, ctx.target.url)
                    if why is not None:
                        group.skips[name] = why
                        continue
                    opened = await pool.ask_all(
                        {"op": "open", "variant": name, "ttl": COLD_TTL, "loader_s": COLD_LOADER}
                    )
                    failed = next((r["error"] for r in opened if not r.get("ok")), None)
                    if failed is not None:
                        await pool.ask_all({"op": "close"})
                        if spec.group != "peer":
                            raise RuntimeError(f"{name}: worker setup failed: {failed}")
                        group.skips[name] = f"skipped: setup failed: {failed}"[:300]
                        continue
                    try:
                        await self._multi_variant(ctx, plan, pool, name, group)
                    except _RunFailed as exc:
                        if spec.group != "peer":
                            raise RuntimeError(f"{name}: {exc}") from None
                        group.skips[name] = f"skipped: {exc}"[:300]
                        group.runs.pop(name, None)
                    await pool.ask_all({"op": "close"})
        except WorkerError as exc:
            result.notes.append(f"{PROCESSES}-process runs stopped: {exc}")
            result.errors.append(f"{PROCESSES}-process runs: {exc}")
        return group

    async def _multi_variant(
        self, ctx: RunContext, plan: Plan, pool: Workers, name: str, group: Group
    ) -> None:
        ctx.progress.step(f"cold, {PROCESSES} processes: {name}, warm-up")
        await self._multi_run(pool, _run_key("warm"), min(plan.multi_ns), group)
        for repeat in range(plan.multi_repeats):
            for n in plan.multi_ns:
                loads, found = await self._multi_run(
                    pool, _run_key(f"cold{PROCESSES}:{n}"), n, group
                )
                group.cold(name, n).add(loads, found)
                ctx.progress.step(
                    f"cold, {PROCESSES} processes, {n:,} callers, run {repeat + 1}: {name}"
                )

    async def _multi_run(self, pool: Workers, key: str, n: int, group: Group) -> tuple[int, Burst]:
        each = [n // len(pool) + (1 if i < n % len(pool) else 0) for i in range(len(pool))]
        start_at = time.time() + _START_AHEAD
        replies = await pool.ask(
            [{"op": "run", "key": key, "n": m, "start_at": start_at} for m in each]
        )
        failed = next((r["error"] for r in replies if not r.get("ok")), None)
        if failed is not None:
            raise _RunFailed(f"a worker's run failed: {failed}")
        parts = [Burst.from_json(r["burst"]) for r in replies]
        merged = Burst(
            sorted(x for p in parts for x in p.latencies_ms),
            sum(p.errors for p in parts),
            sum(p.wrong for p in parts),
            next((p.problem for p in parts if p.problem), None),
        )
        starts = [float(r["started"]) for r in replies]
        group.start_skew = max(group.start_skew, max(starts) - min(starts))
        return sum(int(r["loads"]) for r in replies), merged

    # -- hot key --------------------------------------------------------------------------

    async def _hot(
        self, ctx: RunContext, plan: Plan
    ) -> tuple[dict[str, HotResult], dict[str, str]]:
        found: dict[str, HotResult] = {}
        skips: dict[str, str] = {}
        duration = plan.hot_ttl * plan.hot_ttls
        for name in HOT_VARIANTS:
            spec = VARIANTS[name]
            why = _skip_reason(spec, ctx.target.url)
            if why is not None:
                skips[name] = why
                continue
            loader = CountedLoader(HOT_LOADER)
            try:
                async with spec.open(
                    ctx.target, loader, Settings(plan.hot_ttl, HOT_LOADER)
                ) as call:
                    gc.collect()
                    found[name] = await steady_load(
                        call, loader, _run_key("hot"), plan.hot_callers, duration
                    )
            except Exception as exc:
                if spec.group != "peer":
                    raise
                skips[name] = f"skipped: {type(exc).__name__}: {exc}"[:300]
            ctx.progress.step(f"hot key, {plan.hot_ttls:g} TTLs: {name}")
        return found, skips


# -- the report ---------------------------------------------------------------------------


def _runs(count: int) -> str:
    return f"{count} run{'s' if count > 1 else ''} each"


def _span(values: Sequence[int]) -> str:
    """One number if every run agrees; else each run's (up to 5), else the range."""
    lo, hi = min(values), max(values)
    if lo == hi:
        return f"{lo:,}"
    if len(values) <= 5:
        return " / ".join(f"{v:,}" for v in values)
    return f"{lo:,}{DASH}{hi:,}"


def _ms(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value:,.1f}"


def _mark(met: bool | None) -> str:
    return "✓" if met else ("✗" if met is False else "(not a speed figure)")


def _cold_table(
    title: str, group: Group, ns: Sequence[int], callers: Callable[[int], str]
) -> Table:
    rows: list[list[str]] = []
    for n in ns:
        for name in COLD_VARIANTS:
            if name in group.skips:
                rows.append([name, callers(n)] + ["—"] * 4 + [group.skips[name]])
                continue
            cold = group.runs.get(name, {}).get(n)
            if cold is None:
                continue
            lat = cold.latencies()
            note = next((b.problem for b in cold.bursts if b.problem), None) or ""
            wrong = sum(b.wrong for b in cold.bursts)
            if wrong:
                note = f"{wrong} wrong values; " + note
            rows.append(
                [
                    name,
                    callers(n),
                    _span(cold.loads),
                    _span(cold.errors),
                    _ms(percentile(lat, 0.50)),
                    _ms(percentile(lat, 0.99)),
                    note[:120],
                ]
            )
    columns = ["variant", "callers", "loader calls", "errors", "p50 ms", "p99 ms", "note"]
    return Table(title, columns, rows)


def _cold_charts(group: Group, ns: Sequence[int], where: str, result: ScenarioResult) -> None:
    loads: dict[str, list[tuple[float, float]]] = {}
    p99: dict[str, list[tuple[float, float]]] = {}
    for name in COLD_VARIANTS:
        per_n = group.runs.get(name, {})
        for n in ns:
            cold = per_n.get(n)
            if cold is None:
                continue
            loads.setdefault(name, []).append((n, statistics.median(cold.loads)))
            lat = cold.latencies()
            if lat:
                p99.setdefault(name, []).append((n, percentile(lat, 0.99)))
    if loads:
        result.charts.append(
            Chart(
                f"cold key, {where}: loader calls (median run)",
                "concurrent callers",
                "loader calls (log)",
                loads,
                log_y=True,
            )
        )
    if p99:
        result.charts.append(
            Chart(f"cold key, {where}: p99 latency", "concurrent callers", "p99 ms", p99)
        )


def _report(
    ctx: RunContext,
    plan: Plan,
    result: ScenarioResult,
    single: Group,
    group4: Group | None,
    hot: tuple[dict[str, HotResult], dict[str, str]],
) -> None:
    loader_ms = COLD_LOADER * 1000
    result.tables.append(
        _cold_table(
            f"Cold key, 1 process: N concurrent callers, {loader_ms:g} ms loader "
            f"({_runs(plan.repeats)})",
            single,
            plan.cold_ns,
            lambda n: f"{n:,}",
        )
    )
    _cold_charts(single, plan.cold_ns, "1 process", result)
    if group4 is not None:
        result.tables.append(
            _cold_table(
                f"Cold key, {PROCESSES} processes started together: N callers in all, "
                f"{loader_ms:g} ms loader ({_runs(plan.multi_repeats)})",
                group4,
                plan.multi_ns,
                lambda n: f"{PROCESSES} {TIMES} {n // PROCESSES:,}",
            )
        )
        _cold_charts(group4, plan.multi_ns, f"{PROCESSES} processes", result)
    else:
        result.notes.append(
            f"Cold key in {PROCESSES} processes: skipped, the worker processes need a Redis URL "
            f"(target is fakeredis, {EMBEDDED_NOTE})."
        )
    found, skips = hot
    result.tables.append(_hot_table(plan, found, skips))
    if found:
        result.charts.append(
            Chart(
                "hot key: most reads that waited for one refresh",
                "",
                "reads",
                {name: [(0.0, float(h.max_waited_per_refresh))] for name, h in found.items()},
                kind="bar",
            )
        )
    _correctness(result, single, group4, found)
    result.goals.extend(_cold_goals(ctx, plan, single, group4))
    result.goals.extend(_hot_goals(plan, found))
    _notes(plan, result, found, group4)


def _hot_table(plan: Plan, found: dict[str, HotResult], skips: dict[str, str]) -> Table:
    rows: list[list[str]] = []
    for name in HOT_VARIANTS:
        if name in skips:
            rows.append([name] + ["—"] * 10 + [skips[name]])
            continue
        h = found.get(name)
        if h is None:
            continue
        per_ttl = h.loads / plan.hot_ttls
        rows.append(
            [
                name,
                f"{h.loads:,}",
                f"{per_ttl:.2f}",
                f"{h.refreshes:,}",
                f"{h.waited:,}",
                f"{h.max_waited_per_refresh:,}",
                f"{h.other_slow:,} ({h.stalls})",
                f"{h.errors:,}",
                _ms(h.p50_ms),
                _ms(h.p99_ms),
                f"{h.reads_per_s:,.0f}",
                (h.problem or "")[:120],
            ]
        )
    title = (
        f"Hot key: {plan.hot_callers} callers in a loop for {plan.hot_ttls:g} TTLs "
        f"(TTL {plan.hot_ttl:g} s, {HOT_LOADER * 1000:g} ms loader)"
    )
    columns = [
        "variant",
        "loader calls",
        "per TTL",
        "refreshes",
        "reads that waited for a loader",
        "most waiting on one refresh",
        "other slow reads (loop stalls)",
        "errors",
        "p50 ms",
        "p99 ms",
        "reads/s",
        "note",
    ]
    return Table(title, columns, rows)


def _correctness(
    result: ScenarioResult, single: Group, group4: Group | None, hot: dict[str, HotResult]
) -> None:
    """Wrong values from raw or library variants, and library errors, are failures."""
    for where, group in (("1 process", single), (f"{PROCESSES} processes", group4)):
        if group is None:
            continue
        for name, per_n in group.runs.items():
            kind = VARIANTS[name].group
            if kind == "peer":
                continue
            for n, cold in per_n.items():
                wrong = sum(b.wrong for b in cold.bursts)
                errors = sum(cold.errors) if kind == "library" else 0
                if wrong or errors:
                    problem = next((b.problem for b in cold.bursts if b.problem), "")
                    result.errors.append(
                        f"{name}, cold key, {where}, {n:,} callers: {wrong} wrong values, "
                        f"{errors} errors; first: {problem}"
                    )
    for name, h in hot.items():
        kind = VARIANTS[name].group
        if kind != "peer" and (h.wrong or (kind == "library" and h.errors)):
            result.errors.append(
                f"{name}, hot key: {h.wrong} wrong values, {h.errors} errors; first: {h.problem}"
            )


def _cold_goals(
    ctx: RunContext, plan: Plan, single: Group, group4: Group | None
) -> list[GoalCheck]:
    n = max(plan.multi_ns)
    source = group4
    cold = group4.runs.get(LIB_DEFAULT, {}).get(n) if group4 is not None else None
    where = f"cold key, {PROCESSES} processes {TIMES} {n // PROCESSES:,} callers"
    case = f"cold-{PROCESSES}p-{n}"
    if cold is None:  # no worker processes (fakeredis): one process stands in
        n = max(plan.cold_ns)
        source = single
        cold = single.runs.get(LIB_DEFAULT, {}).get(n)
        where = (
            f"cold key, 1 process {TIMES} {n:,} callers "
            f"(stand-in: {PROCESSES} processes need a Redis URL)"
        )
        case = f"cold-1p-{n}"
    where += f", {COLD_LOADER * 1000:g} ms loader: {LIB_DEFAULT}"
    if cold is None:
        return [
            GoalCheck(Goal(case, LIB_DEFAULT, what, 0.0), None, None, f"{where}: not measured")
            for what in ("1 loader call", "0 errors", "p99")
        ]
    checks: list[GoalCheck] = []
    most = max(cold.loads)
    ok = all(x == 1 for x in cold.loads)
    checks.append(
        GoalCheck(
            Goal(case, LIB_DEFAULT, "1 loader call", 1.0),
            float(most),
            ok,
            f"{where}: loader calls {_span(cold.loads)} in {len(cold.loads)} run(s) "
            f"[target: exactly 1] {_mark(ok)}",
        )
    )
    errors = sum(cold.errors)
    checks.append(
        GoalCheck(
            Goal(case, LIB_DEFAULT, "0 errors", 0.0),
            float(errors),
            errors == 0,
            f"{where}: {errors} errors [target: 0] {_mark(errors == 0)}",
        )
    )
    p99 = percentile(cold.latencies(), 0.99)
    limit = COLD_LOADER * 1000 + P99_SLACK_MS
    met = p99 <= limit if ctx.target.speed_figure else None
    floor = source.runs.get(FLOOR, {}).get(n) if source is not None else None
    context = ""
    if floor is not None:
        context = f" ({FLOOR}, same callers: p99 {_ms(percentile(floor.latencies(), 0.99))} ms)"
    checks.append(
        GoalCheck(
            Goal(case, LIB_DEFAULT, "p99 ms", limit),
            p99,
            met,
            f"{where}: p99 {_ms(p99)} ms [target ≤ {limit:g} ms = loader + "
            f"{P99_SLACK_MS:g} ms] {_mark(met)}{context}",
        )
    )
    return checks


def _hot_goals(plan: Plan, found: dict[str, HotResult]) -> list[GoalCheck]:
    checks: list[GoalCheck] = []
    head = f"hot key, {plan.hot_ttls:g} TTLs of {plan.hot_ttl:g} s"
    if plan.hot_ttls < 3:
        head += " (--quick; the target asks 3+)"
    for name in (LIB_DEFAULT, LIB_REFRESH, LIB_STALE):
        h = found.get(name)
        limit = 0 if name == LIB_REFRESH else 1
        if h is None:
            line = f"{head}: {name}: not measured"
            checks.append(GoalCheck(Goal("hot", name, "waiters", limit), None, None, line))
            continue
        ok = h.max_waited_per_refresh <= limit
        line = (
            f"{head}: {name}: at most {h.max_waited_per_refresh} read(s) waited for one "
            f"refresh ({h.waited} waited over {h.refreshes} refreshes) "
            f"[target ≤ {limit}] {_mark(ok)}"
        )
        checks.append(
            GoalCheck(
                Goal("hot", name, "waiters", limit), float(h.max_waited_per_refresh), ok, line
            )
        )
        per_ttl = h.loads / plan.hot_ttls
        lo, hi = PER_TTL_BAND
        ok = lo <= per_ttl <= hi
        line = (
            f"{head}: {name}: {h.loads} loader calls = {per_ttl:.2f} per TTL "
            f"[target ≈ 1: {lo:g}{DASH}{hi:g}] {_mark(ok)}"
        )
        checks.append(GoalCheck(Goal("hot", name, "loads per TTL", 1.0), per_ttl, ok, line))
    return checks


def _load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"
    except OSError:
        return "unknown"


def _notes(
    plan: Plan, result: ScenarioResult, found: dict[str, HotResult], group4: Group | None
) -> None:
    cpus = os.cpu_count() or 1
    skew = ""
    if group4 is not None and group4.runs:
        skew = f" (they started within {group4.start_skew * 1000:.1f} ms of each other)"
    result.notes += [
        "Latency: each call timed from its own start; p50/p99 over the successful calls of "
        "all runs (the naive code's errors are MaxConnectionsError from the default pool of "
        "100: counted, not timed). Loader calls are counted by the loader itself in every "
        "process; a cell shows each run's count when runs disagree.",
        f"{PROCESSES}-process runs: {PROCESSES} worker processes (python -m "
        "benchmarks.scenarios._stampede_worker), each variant opened in each, all told to "
        f"start at the same time.time() {_START_AHEAD:g} s ahead{skew}; {cpus} CPUs on this "
        "machine for the workers and the Redis server. Load average when the scenario "
        f"ended: {_load_average()} (other work on this shared machine shows up here).",
        f"Hot key: loads that overlap in time are one refresh (the naive code's loads of "
        "one expiry); a read waited for a loader if it spent ≥ "
        f"{WAITED_FRACTION:.0%} of a load's time inside a refresh and this process's event "
        f"loop did not stall (≥ {STALL * 1000:g} ms late) meanwhile. Other slow reads are "
        "stalls of this shared 2-CPU machine or the variant's own slowness. The key is "
        "filled before the load starts (that first load is not counted).",
    ]
    result.notes += [f"{name}: {spec.detail}." for name, spec in VARIANTS.items() if spec.detail]
    xfetch = found.get(LIB_DEFAULT)
    if xfetch is not None and xfetch.reads_per_s > 0:
        lead = HOT_LOADER * math.log(max(xfetch.reads_per_s * HOT_LOADER, 1.0))
        result.notes.append(
            f"XFetch (beta=1) at {xfetch.reads_per_s:,.0f} reads/s of one key recomputes about "
            f"δ·ln(rate·δ) = {lead:.2f} s before expiry (δ = the {HOT_LOADER * 1000:g} ms "
            f"load), against a {plan.hot_ttl:g} s TTL. The lead grows with δ and the log of "
            "the read rate, not with the TTL: with TTLs much longer than it, about one load "
            "per TTL."
        )


SCENARIO = StampedeScenario()
