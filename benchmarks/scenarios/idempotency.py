"""``idempotency``: duplicate POSTs across processes run the endpoint once; what a key costs.

Exactly once: 4 worker processes each send 250 identical POSTs with one
``Idempotency-Key`` at the same instant (1,000 in all) through an app behind
``IdempotencyMiddleware``; the endpoint (50 ms of work) counts its runs in
Redis. Every repeat must show exactly one run, with ``concurrent="reject"``
(the others get 409, or the replay once it is done) and ``"wait"`` (every
caller gets the one response). Needs a Redis URL (the workers connect to it).

Cost, in one process, one request at a time: the same app without the
middleware (the floor: nothing of ours), a first request (a fresh key), a
replay (a key already done), and one raw redis-py GET (one round trip: what a
replay cannot beat). Round trips are the library's own count
(``client_stats``); "before the response" is when the app's response started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from benchmarks._measure import percentile
from benchmarks._report import TIMES, Chart, Goal, GoalCheck, ScenarioResult, Table
from benchmarks._target import EMBEDDED_NOTE, KEY_PREFIX
from benchmarks.scenarios._base import RunContext
from benchmarks.scenarios._idempotency_app import call, make_app, runs_key
from benchmarks.scenarios._stampede_procs import ROOT, URL_ENV, WorkerError, Workers

__all__ = ["SCENARIO", "IdempotencyScenario"]

PROCESSES = 4
DUPLICATES = 1000
ENDPOINT_S = 0.05
MODES = ("reject", "wait")

FLOOR = "app alone (floor)"
FIRST = "first request (new key)"
REPLAY = "replay (key done)"
RAW_GET = "one redis-py GET"
SEQUENTIAL = (FLOOR, FIRST, REPLAY, RAW_GET)
GROUPS = {FLOOR: "raw", FIRST: "library", REPLAY: "library", RAW_GET: "raw"}


@dataclass(frozen=True)
class Plan:
    repeats: int  # bursts of 1,000 duplicates per mode
    calls: int  # sequential calls per variant per round
    rounds: int


FULL = Plan(repeats=3, calls=1000, rounds=5)
QUICK = Plan(repeats=1, calls=200, rounds=2)


@dataclass
class Burst:
    runs: int
    statuses: dict[str, int]
    bodies: int
    errors: int
    p50_ms: float
    p99_ms: float


@dataclass
class Sequential:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    trips_before: dict[str, list[int]] = field(default_factory=dict)
    trips_total: dict[str, list[int]] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def _workers(url: str, count: int) -> AsyncIterator[Workers]:
    env = {**os.environ, URL_ENV: url}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    procs: list[asyncio.subprocess.Process] = []
    with contextlib.ExitStack() as files:
        logs = [files.enter_context(tempfile.TemporaryFile()) for _ in range(count)]
        try:
            for log in logs:
                procs.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "benchmarks.scenarios._idempotency_worker",
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=log,
                        cwd=ROOT,
                        env=env,
                        limit=1 << 24,
                    )
                )
            pool = Workers(procs, logs)
            ready = await asyncio.gather(*(pool._reply(i) for i in range(count)))
            if not all(r.get("ready") for r in ready):
                raise WorkerError(f"workers not ready: {ready}")
            yield pool
        finally:
            for proc in procs:
                if proc.stdin is not None and not proc.stdin.is_closing():
                    proc.stdin.close()
            for proc in procs:
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()


class IdempotencyScenario:
    name = "idempotency"
    description = (
        "1,000 concurrent duplicate POSTs across 4 processes run the endpoint once; "
        "round trips and latency of a first request and a replay"
    )

    async def run(self, ctx: RunContext) -> ScenarioResult:
        plan = QUICK if ctx.quick else FULL
        if ctx.rounds:
            plan = Plan(ctx.rounds, plan.calls, ctx.rounds)
        if ctx.ops:
            plan = Plan(plan.repeats, ctx.ops, plan.rounds)
        multi = ctx.target.url is not None
        total = plan.rounds * len(SEQUENTIAL) + (len(MODES) * plan.repeats if multi else 0)
        ctx.progress.start(self.name, total)
        result = ScenarioResult(self.name, self.description, FLOOR, dict(GROUPS), [])
        bursts: dict[str, list[Burst]] = {}
        if multi:
            assert ctx.target.url is not None
            bursts = await self._bursts(ctx, plan, ctx.target.url)
        else:
            result.notes.append(
                f"Duplicates across {PROCESSES} processes: skipped, the worker processes need "
                f"a Redis URL (target is fakeredis, {EMBEDDED_NOTE})."
            )
        seq = await self._sequential(ctx, plan)
        self._report(ctx, plan, result, bursts, seq)
        return result

    async def _bursts(self, ctx: RunContext, plan: Plan, url: str) -> dict[str, list[Burst]]:
        found: dict[str, list[Burst]] = {}
        counter = ctx.target.client()
        try:
            async with _workers(url, PROCESSES) as pool:
                for mode in MODES:
                    for repeat in range(plan.repeats):
                        ctx.progress.step(f"{DUPLICATES:,} duplicates, {mode}, {repeat + 1}")
                        key = f"dup-{uuid.uuid4().hex[:12]}"
                        replies = await pool.ask_all(
                            {
                                "key": key,
                                "n": DUPLICATES // PROCESSES,
                                "mode": mode,
                                "endpoint_s": ENDPOINT_S,
                                "start_at": time.time() + 0.5,
                            }
                        )
                        runs = int(await counter.get(runs_key(key)) or 0)
                        found.setdefault(mode, []).append(_burst(runs, replies))
        finally:
            await counter.aclose()
        return found

    async def _sequential(self, ctx: RunContext, plan: Plan) -> Sequential:
        seq = Sequential()
        client, counter, raw = ctx.target.client(), ctx.target.client(), ctx.target.client()
        try:
            with_idem = make_app(client, counter, 0.0)
            alone = make_app(client, counter, 0.0, idem=False)
            done_key = f"done-{uuid.uuid4().hex[:12]}"
            await call(with_idem, done_key, client)
            await raw.set(f"{KEY_PREFIX}:idem-get", b"x", ex=600)
            for round_no in range(plan.rounds):
                for name in SEQUENTIAL:
                    ctx.progress.step(f"one at a time, round {round_no + 1}: {name}")
                    for i in range(plan.calls):
                        if name == RAW_GET:
                            started = time.perf_counter()
                            await raw.get(f"{KEY_PREFIX}:idem-get")
                            seq.latencies.setdefault(name, []).append(
                                time.perf_counter() - started
                            )
                            continue
                        if name == FLOOR:
                            reply = await call(alone, None, client)
                        elif name == FIRST:
                            reply = await call(with_idem, f"new-{round_no}-{i}-{done_key}", client)
                        else:
                            reply = await call(with_idem, done_key, client)
                        seq.latencies.setdefault(name, []).append(reply.seconds)
                        seq.trips_before.setdefault(name, []).append(reply.trips_before_start)
                        seq.trips_total.setdefault(name, []).append(reply.trips_total)
        finally:
            for c in (client, counter, raw):
                await c.aclose()
        return seq

    def _report(
        self,
        ctx: RunContext,
        plan: Plan,
        result: ScenarioResult,
        bursts: dict[str, list[Burst]],
        seq: Sequential,
    ) -> None:
        if bursts:
            rows = []
            for mode, found in bursts.items():
                for i, b in enumerate(found):
                    statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(b.statuses.items()))
                    rows.append(
                        [
                            f'concurrent="{mode}"',
                            str(i + 1),
                            str(b.runs),
                            statuses,
                            str(b.bodies),
                            str(b.errors),
                            f"{b.p50_ms:.1f}",
                            f"{b.p99_ms:.1f}",
                        ]
                    )
            result.tables.append(
                Table(
                    f"{DUPLICATES:,} duplicate POSTs with one key, {PROCESSES} processes "
                    f"started together, {ENDPOINT_S * 1000:g} ms endpoint",
                    [
                        "mode",
                        "repeat",
                        "endpoint runs",
                        "responses",
                        "distinct 201 bodies",
                        "errors",
                        "p50 ms",
                        "p99 ms",
                    ],
                    rows,
                )
            )
        rows = []
        for name in SEQUENTIAL:
            lat = sorted(seq.latencies.get(name, []))
            if not lat:
                continue
            before = seq.trips_before.get(name)
            total = seq.trips_total.get(name)
            rows.append(
                [
                    name,
                    f"{percentile(lat, 0.5) * 1e6:,.0f}",
                    f"{percentile(lat, 0.99) * 1e6:,.0f}",
                    f"{statistics.mean(before):.2f}" if before else "1 (by definition)",
                    f"{statistics.mean(total):.2f}" if total else "1",
                ]
            )
        result.tables.append(
            Table(
                f"One request at a time ({plan.calls:,} calls {TIMES}{plan.rounds} rounds, "
                "variants interleaved)",
                ["variant", "p50 µs", "p99 µs", "round trips before the response", "round trips"],
                rows,
            )
        )
        result.charts.append(
            Chart(
                "one request at a time: p50 latency",
                "",
                "µs",
                {
                    name: [(0.0, percentile(sorted(seq.latencies[name]), 0.5) * 1e6)]
                    for name in SEQUENTIAL
                    if seq.latencies.get(name)
                },
                kind="bar",
            )
        )
        result.goals.extend(_goals(ctx, bursts, seq))
        for mode, found in bursts.items():
            if any(b.runs != 1 for b in found):
                result.errors.append(f'concurrent="{mode}": the endpoint ran more than once')
        result.notes.append(
            "A first request's second round trip (storing the response) is sent after the "
            "app's last body message went out: it delays the end of the request task, not the "
            "response."
        )


def _burst(runs: int, replies: list[dict[str, Any]]) -> Burst:
    statuses: dict[str, int] = {}
    bodies: set[str] = set()
    latencies: list[float] = []
    errors = 0
    for reply in replies:
        for status, n in reply["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
        bodies.update(reply["bodies"])
        latencies.extend(reply["latencies_ms"])
        errors += int(reply["error_count"])
    latencies.sort()
    return Burst(
        runs,
        statuses,
        len(bodies),
        errors,
        percentile(latencies, 0.5) if latencies else float("nan"),
        percentile(latencies, 0.99) if latencies else float("nan"),
    )


def _goals(ctx: RunContext, bursts: dict[str, list[Burst]], seq: Sequential) -> list[GoalCheck]:
    checks: list[GoalCheck] = []
    for mode in MODES:
        found = bursts.get(mode)
        goal = Goal("duplicates", f'concurrent="{mode}"', "runs", 1.0)
        if not found:
            checks.append(
                GoalCheck(goal, None, None, f"{mode}: exactly once across processes: not measured")
            )
            continue
        once = all(b.runs == 1 and b.errors == 0 for b in found)
        runs = ", ".join(str(b.runs) for b in found)
        checks.append(
            GoalCheck(
                goal,
                float(max(b.runs for b in found)),
                once,
                f'{DUPLICATES:,} duplicates in {PROCESSES} processes, concurrent="{mode}": '
                f"endpoint runs per burst {runs} [target 1] {'✓' if once else '✗'}",
            )
        )
    for name, wanted, which, trips in (
        (FIRST, 1.0, "before the response", seq.trips_before),
        (REPLAY, 1.0, "in all", seq.trips_total),
    ):
        found_trips = trips.get(name)
        goal = Goal("sequential", name, "round trips", wanted)
        if not found_trips:
            checks.append(GoalCheck(goal, None, None, f"{name}: round trips not measured"))
            continue
        mean = statistics.mean(found_trips)
        met = mean <= wanted
        checks.append(
            GoalCheck(
                goal,
                mean,
                met,
                f"{name}: {mean:.2f} round trips {which} [target ≤ {wanted:g}] "
                f"{'✓' if met else '✗'}",
            )
        )
    return checks


SCENARIO = IdempotencyScenario()
