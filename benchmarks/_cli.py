"""Command line: ``python -m benchmarks [--quick] [--redis-url URL] [--scenario NAME ...]``.

The target is ``--redis-url``, else ``REDIS_URL``, else a private
``redis-server`` started on a free loopback port (and stopped after), else
fakeredis, which is labelled "embedded, not a speed figure".

Results (``<scenario>.json`` and ``.png``, and ``report.md`` with every table)
go to ``benchmarks/results/latest/``, which git ignores, or to
``--results-dir``. The committed reference results (``benchmarks/results/``,
and the charts in ``docs/img/`` that docs/benchmarks.md shows) change only
with ``--update-reference``. Stdout gets a short summary (the targets, and
where the report is); stderr the progress: a bar on a terminal, plain lines
otherwise.

Scenarios named ``<name>-uvloop`` run the same cases on uvloop's event loop:
they run after the others, in a uvloop loop of their own (skipped with a note
when uvloop is not installed).

Exit status: 0, or 1 if a raw or library variant failed its correctness check
(a peer that fails is reported, not fatal). Missed targets are reported only.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from benchmarks._optional import missing_note, optional_module
from benchmarks._report import (
    RunInfo,
    ScenarioResult,
    machine_info,
    plot,
    summary_lines,
    write_json,
    write_report,
)
from benchmarks._target import Target, TargetChoice, delete_bench_keys, open_target, server_version
from benchmarks.scenarios import SCENARIOS, RunContext

__all__ = ["main", "parse_args"]

#: The committed reference results (written only with ``--update-reference``).
REFERENCE_DIR = Path(__file__).resolve().parent / "results"
#: Where a run writes by default (git-ignored).
LATEST_DIR = REFERENCE_DIR / "latest"
#: The charts docs/benchmarks.md shows (copied there with ``--update-reference``).
DOCS_IMG_DIR = Path(__file__).resolve().parent.parent / "docs" / "img"
#: A plain progress line at least this often (seconds) when stderr is not a terminal.
_PLAIN_EVERY = 10.0
#: Widest progress description shown (the bar must fit 80 columns).
_DESCRIPTION_WIDTH = 40
#: Scenarios run only when named (``default = False``: the soak takes minutes).
_OPT_IN = [name for name, s in SCENARIOS.items() if not getattr(s, "default", True)]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark aiocache_patterns against raw redis-py and peer libraries.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer operations and rounds")
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="Redis to use (default: $REDIS_URL, else a private redis-server, else fakeredis)",
    )
    parser.add_argument(
        "--scenario",
        nargs="+",
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help=f"scenarios to run (default: all but {', '.join(_OPT_IN) or 'none'}): "
        f"{', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--ops", type=_positive, help="operations per variant per round (default: per case)"
    )
    parser.add_argument(
        "--rounds", type=_positive, help="measured rounds after one warm-up (default: per case)"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        help="where to write results and report.md (default: benchmarks/results/latest/, "
        "git-ignored)",
    )
    parser.add_argument(
        "--update-reference",
        action="store_true",
        help="write the committed reference results (benchmarks/results/, and the charts "
        "to docs/img/) instead; for full runs on a real Redis",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress display")
    # Hidden: force the private server or the embedded fakeredis (used by the smoke test).
    parser.add_argument(
        "--target",
        choices=("auto", "private", "fakeredis"),
        default="auto",
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args(argv)
    if args.update_reference:
        if args.results_dir is not None:
            parser.error("--update-reference writes benchmarks/results/: drop --results-dir")
        if args.quick:
            parser.error("--update-reference wants a full run: drop --quick")
        args.results_dir = REFERENCE_DIR
    elif args.results_dir is None:
        args.results_dir = LATEST_DIR
    return args


class _PlainProgress:
    """Plain lines on stderr (not a terminal, or no rich): a line when a step
    starts, one at least every ``_PLAIN_EVERY`` seconds within a run of steps,
    and, from a timer thread, a "still running" line when one timed run is
    silent that long (the thread only prints; it never touches the loop)."""

    def __init__(self) -> None:
        self._last = ""
        self._scenario = ""
        self._total = 0
        self._done = 0
        self._description = ""
        self._printed = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, scenario: str, total: int) -> None:
        self._scenario, self._total, self._done = scenario, total, 0
        self._write(f"[{scenario}] {total} timed runs")
        if self._thread is None:
            self._thread = threading.Thread(target=self._heartbeat, daemon=True)
            self._thread.start()

    def step(self, description: str) -> None:
        self._done += 1
        self._description = description
        head = description.rsplit(":", 1)[0]
        if head != self._last or time.monotonic() - self._printed >= _PLAIN_EVERY:
            self._last = head
            self._write(f"[{self._scenario} {self._done}/{self._total}] {description}")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _heartbeat(self) -> None:
        while not self._stop.wait(1.0):
            silent = time.monotonic() - self._printed
            if silent >= _PLAIN_EVERY and self._description:
                where = f"[{self._scenario} {self._done}/{self._total}]"
                self._write(f"{where} still running: {self._description}")

    def _write(self, line: str) -> None:
        with self._lock:
            self._printed = time.monotonic()
            print(line, file=sys.stderr, flush=True)


class _QuietProgress:
    def start(self, scenario: str, total: int) -> None:
        pass

    def step(self, description: str) -> None:
        pass


class _RichProgress:
    """A rich progress bar on stderr, redrawn between timed runs only (no refresh thread)."""

    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._task: Any = None
        self._scenario = ""

    def start(self, scenario: str, total: int) -> None:
        self._scenario = scenario
        self._task = self._progress.add_task(scenario, total=total)
        self._progress.refresh()

    def step(self, description: str) -> None:
        text = _fit(f"{self._scenario}: {description}")
        self._progress.update(self._task, advance=1, description=text)
        self._progress.refresh()


def _fit(description: str, width: int = _DESCRIPTION_WIDTH) -> str:
    """``description`` cut to ``width`` characters (an ellipsis marks the cut)."""
    return description if len(description) <= width else description[: width - 1] + "\u2026"


def _rich_progress() -> Any:
    progress_mod = optional_module("rich.progress")
    console_mod = optional_module("rich.console")
    if progress_mod is None or console_mod is None:
        return None
    if not sys.stderr.isatty():
        return None  # piped (CI, tee): plain lines instead of a bar nobody sees
    table_mod = optional_module("rich.table")
    column = None
    if table_mod is not None:
        column = table_mod.Column(width=_DESCRIPTION_WIDTH, no_wrap=True, overflow="ellipsis")
    return progress_mod.Progress(
        progress_mod.TextColumn("{task.description}", style="bold", table_column=column),
        progress_mod.BarColumn(bar_width=20),
        progress_mod.MofNCompleteColumn(),
        progress_mod.TimeElapsedColumn(),
        console=console_mod.Console(stderr=True),
        auto_refresh=False,
        transient=True,
    )


@dataclass
class _Run:
    """What a run has measured so far, across the event loops it used."""

    info: RunInfo
    results: list[ScenarioResult] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)


async def _run_info(args: argparse.Namespace, target: Target) -> RunInfo:
    return RunInfo(
        target=target.label,
        target_kind=target.kind,
        speed_figure=target.speed_figure,
        server=await server_version(target),
        machine=machine_info(),
        quick=args.quick,
    )


async def _measure(args: argparse.Namespace, target: Target, names: list[str], run: _Run) -> None:
    """Run the scenarios ``names`` on the running event loop."""
    try:
        for name in names:
            scenario = SCENARIOS[name]
            rich = None if args.no_progress else _rich_progress()
            if rich is not None:
                with rich:
                    result = await scenario.run(_context(args, target, _RichProgress(rich)))
            elif args.no_progress:
                result = await scenario.run(_context(args, target, _QuietProgress()))
            else:
                plain = _PlainProgress()
                try:
                    result = await scenario.run(_context(args, target, plain))
                finally:
                    plain.close()
            run.results.append(result)
            run.ran.append(name)
            _emit(result, run.info, args.results_dir)
            run.failed += [f"{name}: {v}" for g in ("raw", "library") for v in result.failed(g)]
            run.failed += [f"{name}: {e}" for e in result.errors]
    finally:
        await delete_bench_keys(target)


def _uvloop_runner() -> Callable[[Coroutine[Any, Any, None]], None] | None:
    uvloop = optional_module("uvloop")
    return None if uvloop is None else cast(Any, uvloop).run


def _run(args: argparse.Namespace, target: Target) -> int:
    names = args.scenario or [n for n in SCENARIOS if n not in _OPT_IN]
    on_uvloop = [n for n in names if getattr(SCENARIOS[n], "loop", "asyncio") == "uvloop"]
    on_asyncio = [n for n in names if n not in on_uvloop]
    run = _Run(asyncio.run(_run_info(args, target)))
    started = time.perf_counter()
    if on_asyncio:
        asyncio.run(_measure(args, target, on_asyncio, run))
    if on_uvloop:
        run_on_uvloop = _uvloop_runner()
        if run_on_uvloop is None:
            print(f"Skipped {', '.join(on_uvloop)}: {missing_note('uvloop')}.\n", flush=True)
        else:
            run_on_uvloop(_measure(args, target, on_uvloop, run))
    results, failed = run.results, run.failed
    report = write_report(results, run.info, args.results_dir, argv=sys.argv[1:])
    if args.update_reference:
        _copy_charts(results, args.results_dir, DOCS_IMG_DIR)
    print(f"Ran {', '.join(run.ran)} in {time.perf_counter() - started:.1f}s on {target.label}.")
    print("\n".join(summary_lines(results, run.info, run.ran)))
    print(f"Full tables and charts: {report}")
    if failed:
        print(f"FAILED correctness checks: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _context(args: argparse.Namespace, target: Target, progress: Any) -> RunContext:
    return RunContext(target, args.quick, args.ops, args.rounds, progress)


def _emit(result: ScenarioResult, info: RunInfo, directory: Path) -> None:
    write_json(result, info, directory)
    png_path = plot(result, info, directory)
    goals = [g for g in result.goals if g.met is not None]
    met = sum(1 for g in goals if g.met)
    tally = f"{met}/{len(goals)} targets met" if goals else "no targets"
    chart = "" if png_path else " (no matplotlib: no chart)"
    cases = f"{len(result.cases)} cases, " if result.cases else ""
    print(f"{result.scenario}: {cases}{tally}{chart}", flush=True)


def _copy_charts(results: list[ScenarioResult], source: Path, docs_img: Path) -> None:
    """The reference charts docs/benchmarks.md shows: ``docs/img/<scenario>.png``."""
    for result in results:
        png = source / f"{result.scenario}.png"
        if png.exists():
            docs_img.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, docs_img / png.name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    choice = cast(TargetChoice, args.target)
    with open_target(args.redis_url, choice) as target:
        if args.update_reference and not target.speed_figure:
            raise SystemExit(
                "--update-reference needs a real Redis (REDIS_URL or redis-server), "
                "not the embedded fakeredis"
            )
        return _run(args, target)
