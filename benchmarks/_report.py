"""Results: the data kept per scenario, JSON files, Markdown tables, PNG charts."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import textwrap
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks._measure import Outcome
from benchmarks._optional import optional_module, version_of

__all__ = [
    "CaseResult",
    "Chart",
    "Goal",
    "GoalCheck",
    "RunInfo",
    "ScenarioResult",
    "Table",
    "check_goals",
    "machine_info",
    "markdown",
    "plot",
    "summary_lines",
    "write_json",
    "write_report",
]

TIMES = "\u00d7"  # the multiplication sign, in ratios
PEERS = ("cashews", "aiocache", "redis-infra", "limits", "coredis", "fakeredis")


@dataclass(frozen=True)
class RunInfo:
    """Where and how a run was made (same for every scenario of the run)."""

    target: str
    target_kind: str
    speed_figure: bool
    server: str
    machine: dict[str, Any]
    quick: bool


@dataclass
class CaseResult:
    name: str  # stable id, e.g. "keys1000-c50"
    label: str  # for people, e.g. "1,000 keys, concurrency 50"
    concurrency: int
    ops: int  # per variant per round
    rounds: int  # measured, after one warm-up
    outcomes: list[Outcome]

    def outcome(self, variant: str) -> Outcome | None:
        return next((o for o in self.outcomes if o.name == variant), None)


@dataclass(frozen=True)
class Goal:
    """A target: in ``case``, ``variant`` ≥ ``minimum`` times ``versus`` (paired per round)."""

    case: str
    variant: str
    versus: str
    minimum: float


@dataclass(frozen=True)
class GoalCheck:
    goal: Goal
    ratio: float | None
    met: bool | None  # None: could not be measured (a side skipped or failed)
    line: str


@dataclass
class Table:
    """A free-form table, for scenarios whose results are not ops/s per case."""

    title: str
    columns: list[str]
    rows: list[list[str]]


@dataclass
class Chart:
    """A chart drawn into the scenario's PNG: lines over x, or one bar per series."""

    title: str
    x_label: str
    y_label: str
    series: dict[str, list[tuple[float, float]]]
    kind: str = "line"  # "line" or "bar" (a bar's value is its series' first y)
    log_y: bool = False


@dataclass
class ScenarioResult:
    scenario: str
    description: str
    baseline: str
    groups: dict[str, str]  # variant -> "raw" | "library" | "peer"
    cases: list[CaseResult]
    goals: list[GoalCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    #: Raw or library variants that gave wrong answers (besides the per-case ones).
    errors: list[str] = field(default_factory=list)
    #: Charts only: a case whose operation is a batch, drawn in its own unit:
    #: ``{"bulk": ("scores/s", 10_000)}`` (ops/s times the factor).
    units: dict[str, tuple[str, float]] = field(default_factory=dict)

    def failed(self, group: str) -> list[str]:
        return sorted(
            {
                o.name
                for c in self.cases
                for o in c.outcomes
                if o.status == "failed" and self.groups.get(o.name) == group
            }
        )


def machine_info() -> dict[str, Any]:
    redis_mod = optional_module("redis.utils")
    hiredis = bool(getattr(redis_mod, "HIREDIS_AVAILABLE", False))
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "redis_py": version_of("redis"),
        "hiredis": version_of("hiredis") if hiredis else None,
        "aiocache_patterns": version_of("aiocache-patterns"),
    }
    info["peers"] = {name: version_of(name) for name in PEERS}
    return info


def check_goals(cases: list[CaseResult], goals: list[Goal], speed_figure: bool) -> list[GoalCheck]:
    by_name = {c.name: c for c in cases}
    return [_check(by_name[g.case], g, speed_figure) for g in goals if g.case in by_name]


def _check(case: CaseResult, goal: Goal, speed_figure: bool) -> GoalCheck:
    mine, theirs = case.outcome(goal.variant), case.outcome(goal.versus)
    head = f"{case.label}: {goal.variant}"
    wanted = f"[target ≥ {goal.minimum:.3g}{TIMES}]"
    tail = "" if speed_figure else " (embedded, not a speed figure)"
    for side in (mine, theirs):
        if side is None or side.status != "ok":
            why = "missing" if side is None else side.status
            name = goal.variant if side is mine else goal.versus
            line = f"{head} vs {goal.versus} {wanted}: not measured ({name} {why}){tail}"
            return GoalCheck(goal, None, None, line)
    assert mine is not None
    assert theirs is not None
    ratios = _paired_ratios(mine, theirs)
    ratio = statistics.median(ratios) if ratios else float("nan")
    met = ratio >= goal.minimum
    spread = ""
    if len(ratios) > 1:
        q1, q3 = _iqr(ratios)
        spread = f" (IQR {q1:.2f}-{q3:.2f})"
    mark = "✓" if met else "✗"
    line = f"{head} = {ratio:.2f}{TIMES} {goal.versus}{spread} {wanted} {mark}{tail}"
    return GoalCheck(goal, ratio, met, line)


def _paired_ratios(a: Outcome, b: Outcome) -> list[float]:
    return [x / y for x, y in zip(a.round_ops_per_s, b.round_ops_per_s, strict=False)]


def _iqr(values: list[float]) -> tuple[float, float]:
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q1, q3


# -- JSON ------------------------------------------------------------------------


def write_json(result: ScenarioResult, info: RunInfo, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "scenario": result.scenario,
        "description": result.description,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run": dataclasses.asdict(info),
        "baseline": result.baseline,
        "variants": result.groups,
        "cases": [dataclasses.asdict(c) for c in result.cases],
        "targets": [
            {**dataclasses.asdict(g.goal), "ratio": g.ratio, "met": g.met, "line": g.line}
            for g in result.goals
        ],
        "summary": [g.line for g in result.goals],
        "notes": result.notes,
        "tables": [dataclasses.asdict(t) for t in result.tables],
        "charts": [dataclasses.asdict(c) for c in result.charts],
        "errors": result.errors,
    }
    path = directory / f"{result.scenario}.json"
    path.write_text(json.dumps(_finite(data), indent=2, ensure_ascii=False) + "\n")
    return path


def _finite(value: Any) -> Any:
    """Floats to 3 decimals; NaN and infinities become null (JSON has neither)."""
    if isinstance(value, float):
        return round(value, 3) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# -- Markdown ----------------------------------------------------------------------


def markdown(result: ScenarioResult, info: RunInfo) -> str:
    m = info.machine
    hiredis = f" + hiredis {m['hiredis']}" if m.get("hiredis") else ""
    lines = [
        f"## {result.scenario}: {result.description}",
        "",
        f"Target: {info.target}, {info.server}. Machine: {m['cpu_count']} CPUs, {m['python']}, "
        f"redis-py {m['redis_py']}{hiredis}. Variants interleaved in rounds (warm-up "
        "discarded); ops/s of the median round; ratio = median of per-round ratios, with its "
        "interquartile range; latency percentiles over all rounds; CPU = this process.",
    ]
    if not info.speed_figure:
        lines += ["", "**fakeredis: embedded, not a speed figure.**"]
    for case in result.cases:
        per = f"{case.rounds} rounds of {case.ops:,} ops per variant"
        lines += ["", f"### {case.label} ({per})", ""]
        lines += _case_table(case, result.baseline)
    for table in result.tables:
        lines += ["", f"### {table.title}", ""]
        lines += ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
        lines += [
            "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in table.rows
        ]
    if result.goals:
        lines += ["", "Targets:", ""] + [f"- {g.line}" for g in result.goals]
    if result.notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def _case_table(case: CaseResult, baseline: str) -> list[str]:
    counters = sorted({k for o in case.outcomes for k in o.per_op})
    head = ["variant", "ops/s", f"vs {baseline}", "p50 µs", "p99 µs", "CPU µs/op"]
    head += [f"{k.replace('_', ' ')}/op" for k in counters] + ["note"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for o in case.outcomes:
        if o.status != "ok":
            cells = [o.name] + ["—"] * (5 + len(counters)) + [o.note]
        else:
            cells = [
                o.name,
                f"{o.ops_per_s:,.0f}",
                f"1.00{TIMES}" if o.name == baseline else _ratio(o.ratio, o.ratio_iqr),
                _fmt(o.p50_us, "", 0),
                _fmt(o.p99_us, "", 0),
                _fmt(o.cpu_us, "", 1),
            ]
            cells += [_fmt(o.per_op.get(k), "", 3) for k in counters] + [o.note]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return rows


def _ratio(ratio: float | None, iqr: tuple[float, float] | None) -> str:
    text = _fmt(ratio, TIMES)
    if iqr is not None and ratio is not None:
        text += f" ({iqr[0]:.2f}-{iqr[1]:.2f})"
    return text


def _fmt(value: float | None, suffix: str, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:,.{digits}f}{suffix}"


# -- PNG -----------------------------------------------------------------------------

_COLOURS = {"raw": "#8c8c8c", "library": "#2a6fdb", "peer": "#e08a2c"}


def plot(result: ScenarioResult, info: RunInfo, directory: Path) -> Path | None:
    """A chart per case (ops/s bars) and per :class:`Chart`; None without matplotlib."""
    matplotlib = optional_module("matplotlib")
    if matplotlib is None or not (result.cases or result.charts):
        return None
    matplotlib.use("Agg")
    plt: Any = optional_module("matplotlib.pyplot")
    panels = len(result.cases) + len(result.charts)
    cols = 2 if panels > 1 else 1
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 3.6 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax, case in zip(flat, result.cases, strict=False):
        ok = [o for o in case.outcomes if o.status == "ok" and o.ops_per_s is not None]
        unit, factor = result.units.get(case.name, ("ops/s", 1.0))
        names = [o.name for o in ok][::-1]
        values = [(o.ops_per_s or 0.0) * factor for o in ok][::-1]
        # The paired ratio of the tables (median of per-round ratios) beside each value.
        ratios = [1.0 if o.name == result.baseline else o.ratio for o in ok][::-1]
        labels = [
            _number(v) + (f"  {r:.2f}{TIMES}" if r is not None and math.isfinite(r) else "")
            for v, r in zip(values, ratios, strict=True)
        ]
        _bars(ax, result, names, values, f"{unit} (median round)", labels)
        if any(o.name == result.baseline for o in ok):
            ax.text(
                1.0, -0.22, f"{TIMES} = ratio to {result.baseline}", transform=ax.transAxes,
                ha="right", va="top", fontsize=7, color="#555555",
            )  # fmt: skip
        ax.set_title(_title(case.label), fontsize=10)
    for ax, chart in zip(flat[len(result.cases) :], result.charts, strict=False):
        single = all(len(points) <= 1 for points in chart.series.values())
        if chart.kind == "bar" or single:
            # One point a series: bars with their value, not markers on top of each other.
            names = [n for n in chart.series if chart.series[n]][::-1]
            values = [float(chart.series[n][0][1]) for n in names]
            label = chart.y_label
            if chart.kind != "bar" and chart.x_label and names:
                label += f" (at {chart.x_label} = {_number(chart.series[names[0]][0][0])})"
            _bars(ax, result, names, values, label, [_number(v) for v in values])
            if chart.log_y and values:
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(_formatter())
                ax.set_xlim(left=min(0.5, min((v for v in values if v > 0), default=1) / 2))
        else:
            for name, points in chart.series.items():
                xs, ys = zip(*points, strict=True) if points else ((), ())
                ax.plot(xs, ys, marker="o", label=name)
            ax.set_xlabel(chart.x_label)
            ax.set_ylabel(chart.y_label)
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
            if chart.log_y:
                ax.set_yscale("log")
            ax.yaxis.set_major_formatter(_formatter())
        ax.set_title(_title(chart.title), fontsize=10)
    for ax in flat[panels:]:
        ax.set_visible(False)
    title = f"{result.scenario}: {info.server}, {info.machine['cpu_count']} CPUs"
    if info.quick:
        title += " (--quick: indicative)"
    if not info.speed_figure:
        title += " (embedded, NOT a speed figure)"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result.scenario}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _title(text: str, width: int = 60) -> str:
    """A panel title wrapped to fit its panel (long ones were clipped)."""
    return "\n".join(textwrap.wrap(text, width)) or text


def _number(value: float) -> str:
    """``10,512``, ``3.4``, ``0.27``: plain digits, never ``1.05e+04``."""
    if not math.isfinite(value):
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}".removesuffix(".0")
    return f"{value:.3g}"


def _bars(
    ax: Any,
    result: ScenarioResult,
    names: list[str],
    values: list[float],
    label: str,
    labels: list[str],
) -> None:
    colours = [_COLOURS.get(result.groups.get(n, ""), "#555555") for n in names]
    bars = ax.barh(names, values, color=colours)
    ax.bar_label(bars, labels=labels, fontsize=7, padding=2)
    ax.set_xlabel(label)
    ax.tick_params(axis="y", labelsize=8)
    ax.margins(x=0.3)
    ax.xaxis.set_major_formatter(_formatter())


def _formatter() -> Any:
    """Axis ticks as :func:`_number` (log axes otherwise show ``10^4``)."""
    ticker: Any = optional_module("matplotlib.ticker")
    return ticker.FuncFormatter(lambda value, _pos: _number(value))


# -- the summary --------------------------------------------------------------------


def _rerun_command(results: list[ScenarioResult]) -> str:
    names = " ".join(dict.fromkeys(r.scenario for r in results))
    return f"python -m benchmarks --scenario {names}"


def target_notes(results: list[ScenarioResult], info: RunInfo) -> list[str]:
    """What the target lines mean in this run: indicative (quick), missed, embedded."""
    goals = [g for r in results for g in r.goals]
    if not goals:
        return []
    notes: list[str] = []
    if not info.speed_figure:
        notes.append(
            "fakeredis is embedded in this process: the ratios are not speed figures; "
            "set REDIS_URL or install redis-server for real ones."
        )
    elif info.quick:
        notes.append(
            "Quick run: targets are indicative only. Few short rounds make wide spreads "
            "(in brackets: the middle half of the per-round ratios, or the range over "
            "repeats; none with one round). The real figure, without --quick:"
        )
        notes.append(_rerun_command(results))
    elif any(g.met is False for g in goals):
        notes.append(
            "A missed target is reported, not fatal (exit status 1 means a wrong answer). "
            "On a busy or shared machine, rerun that scenario alone before chasing it."
        )
    return notes


def summary_lines(results: list[ScenarioResult], info: RunInfo, ran: list[str]) -> list[str]:
    """The short stdout summary: one line per target, and what they mean in this run."""
    lines = [f"  {r.scenario}: {g.line}" for r in results for g in r.goals]
    if not lines:
        return []
    head = "Targets (quick run: indicative):" if info.quick else "Targets:"
    notes = [
        wrapped
        for note in target_notes(results, info)
        for wrapped in (
            [f"    {note}"]  # a command stays on one line, to copy
            if note.startswith("python -m")
            else textwrap.wrap(note, 78, initial_indent="  ", subsequent_indent="  ")
        )
    ]
    return ["", head, *lines, *notes, ""]


# -- the report ------------------------------------------------------------------


def write_report(
    results: list[ScenarioResult], info: RunInfo, directory: Path, argv: list[str]
) -> Path:
    """``report.md``: every scenario's tables, targets and chart, and how to reproduce them."""
    m = info.machine
    command = " ".join(["python -m benchmarks", *argv]).strip()
    lines = [
        "# Benchmark report",
        "",
        f"Made {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by `{command}`.",
        "",
        f"Target: {info.target} ({info.server}). Machine: {m['cpu_count']} CPUs, "
        f"{m['platform']}, {m['python']}, redis-py {m['redis_py']}.",
    ]
    if not info.speed_figure:
        lines += ["", "**fakeredis: embedded, not a speed figure.**"]
    summary = [f"- {r.scenario}: {g.line}" for r in results for g in r.goals]
    if summary:
        lines += ["", "## Targets", "", *summary]
        for note in target_notes(results, info):
            lines += ["", f"`{note}`" if note.startswith("python -m") else note]
    for result in results:
        section = markdown(result, info).splitlines()
        lines += ["", *section]
        if (directory / f"{result.scenario}.png").exists():
            lines += ["", f"![{result.scenario}]({result.scenario}.png)"]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
