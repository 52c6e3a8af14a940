"""Command line: ``python -m benchmarks [--quick] [--redis-url URL] [--scenario NAME ...]``.

The target is ``--redis-url``, else ``REDIS_URL``, else a private
``redis-server`` started on a free loopback port (and stopped after), else
fakeredis, which is labelled "embedded, not a speed figure". Results go to
``benchmarks/results/<scenario>.json`` and ``.png``; the Markdown tables go
to stdout, the progress display to stderr.

Scenarios named ``<name>-uvloop`` run the same cases on uvloop's event loop:
they run after the others, in a uvloop loop of their own (skipped with a note
when uvloop is not installed).

Exit status: 0, or 1 if a raw or library variant failed its correctness check
(a peer that fails is reported, not fatal). Missed targets are reported only.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
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
    markdown,
    plot,
    write_json,
    write_report,
)
from benchmarks._target import Target, TargetChoice, delete_bench_keys, open_target, server_version
from benchmarks.scenarios import SCENARIOS, RunContext

__all__ = ["main", "parse_args"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
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
        "--results-dir", type=Path, default=RESULTS_DIR, help=f"default: {RESULTS_DIR}"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress display")
    # Hidden: force the private server or the embedded fakeredis (used by the smoke test).
    parser.add_argument(
        "--target",
        choices=("auto", "private", "fakeredis"),
        default="auto",
        help=argparse.SUPPRESS,
    )
    return parser.parse_args(argv)


class _PlainProgress:
    """One line per finished round on stderr (when rich is not installed)."""

    def __init__(self) -> None:
        self._last = ""

    def start(self, scenario: str, total: int) -> None:
        print(f"[{scenario}] {total} timed runs", file=sys.stderr, flush=True)

    def step(self, description: str) -> None:
        head = description.rsplit(":", 1)[0]
        if head != self._last:
            self._last = head
            print(f"  {head}", file=sys.stderr, flush=True)


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

    def start(self, scenario: str, total: int) -> None:
        self._task = self._progress.add_task(scenario, total=total)
        self._progress.refresh()

    def step(self, description: str) -> None:
        self._progress.update(self._task, advance=1, description=description)
        self._progress.refresh()


def _rich_progress() -> Any:
    progress_mod = optional_module("rich.progress")
    console_mod = optional_module("rich.console")
    if progress_mod is None or console_mod is None:
        return None
    return progress_mod.Progress(
        progress_mod.TextColumn("{task.description}", style="bold"),
        progress_mod.BarColumn(),
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
            else:
                progress = _QuietProgress() if args.no_progress else _PlainProgress()
                result = await scenario.run(_context(args, target, progress))
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
    print(f"Ran {', '.join(run.ran)} in {time.perf_counter() - started:.1f}s on {target.label}.")
    print(f"Report: {report}")
    summary = [f"  {r.scenario}: {g.line}" for r in results for g in r.goals]
    if summary:
        print("\nSummary:\n" + "\n".join(summary))
    if failed:
        print(f"FAILED correctness checks: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _context(args: argparse.Namespace, target: Target, progress: Any) -> RunContext:
    return RunContext(target, args.quick, args.ops, args.rounds, progress)


def _emit(result: ScenarioResult, info: RunInfo, directory: Path) -> None:
    print(markdown(result, info), flush=True)
    json_path = write_json(result, info, directory)
    png_path = plot(result, info, directory)
    print(f"Wrote {json_path}" + (f" and {png_path}" if png_path else " (no matplotlib: no PNG)"))
    print(flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    choice = cast(TargetChoice, args.target)
    with open_target(args.redis_url, choice) as target:
        return _run(args, target)
