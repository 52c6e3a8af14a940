"""What a scenario is made of: variants, cases, and the loop that measures them.

A scenario lists :class:`VariantSpec` s (how to open each contender on a
target) and :class:`Case` s (which items to hit, at what concurrency). Every
variant gets its own client and connection pool on the same server. A peer
that is not installed, needs a URL on the embedded target, or fails to set up
is *skipped* with a note; it never stops the run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from benchmarks._measure import Contender, Counters, Op, interleave, skipped
from benchmarks._optional import missing_note, version_of
from benchmarks._report import CaseResult, ScenarioResult
from benchmarks._target import EMBEDDED_NOTE, Target

__all__ = [
    "Bound",
    "Case",
    "Progress",
    "RunContext",
    "Scenario",
    "VariantSpec",
    "measure_cases",
    "open_variants",
]

Group = Literal["raw", "library", "peer"]


@dataclass(frozen=True)
class Bound:
    """An opened variant: the operation to time, and optionally its counters."""

    op: Op
    counters: Counters | None = None


@dataclass(frozen=True)
class VariantSpec:
    name: str
    group: Group
    #: Opens the variant on a target (own client, data populated); closes it on exit.
    open: Callable[[Target], AbstractAsyncContextManager[Bound]]
    #: A distribution that must be installed (peers), else the variant is skipped.
    requires: str | None = None
    #: The variant connects by URL itself, so it cannot use the embedded fakeredis.
    needs_url: bool = False


@dataclass(frozen=True)
class Case:
    name: str
    label: str
    concurrency: int
    indices: Sequence[int]  # the item each operation reads, in order
    rounds: int  # measured rounds, after one warm-up


class Progress(Protocol):
    def start(self, scenario: str, total: int) -> None: ...

    def step(self, description: str) -> None: ...


@dataclass(frozen=True)
class RunContext:
    target: Target
    quick: bool
    ops: int | None  # overrides the cases' operations per run
    rounds: int | None  # overrides the cases' rounds
    progress: Progress


class Scenario(Protocol):
    name: str
    description: str

    async def run(self, ctx: RunContext) -> ScenarioResult: ...


async def open_variants(
    specs: Sequence[VariantSpec], target: Target, stack: contextlib.AsyncExitStack
) -> tuple[list[Contender], dict[str, str]]:
    """Open every variant that can run; the others come back as ``{name: why skipped}``."""
    contenders: list[Contender] = []
    skips: dict[str, str] = {}
    for spec in specs:
        if spec.requires is not None and version_of(spec.requires) is None:
            skips[spec.name] = f"skipped: {missing_note(spec.requires)}"
            continue
        if spec.needs_url and target.url is None:
            skips[spec.name] = f"skipped: needs a Redis URL (target is fakeredis, {EMBEDDED_NOTE})"
            continue
        try:
            bound = await stack.enter_async_context(spec.open(target))
        except Exception as exc:
            if spec.group != "peer":
                raise
            skips[spec.name] = f"skipped: setup failed: {type(exc).__name__}: {exc}"
            continue
        contenders.append(Contender(spec.name, bound.op, bound.counters))
    return contenders, skips


async def measure_cases(
    scenario: str,
    ctx: RunContext,
    specs: Sequence[VariantSpec],
    cases: Sequence[Case],
    expected: Sequence[Any],
    baseline: str,
) -> list[CaseResult]:
    """Open the variants once, then measure every case, interleaving the variants."""
    results: list[CaseResult] = []
    async with contextlib.AsyncExitStack() as stack:
        contenders, skips = await open_variants(specs, ctx.target, stack)
        rounds = [ctx.rounds or case.rounds for case in cases]
        ctx.progress.start(scenario, sum(r + 1 for r in rounds) * len(contenders))
        for case, case_rounds in zip(cases, rounds, strict=True):

            def on_run(name: str, round_no: int, case: Case = case, of: int = case_rounds) -> None:
                which = "warm-up" if round_no == 0 else f"round {round_no}/{of}"
                ctx.progress.step(f"{case.label}, {which}: {name}")

            measured = await interleave(
                contenders,
                indices=case.indices,
                expected=expected,
                concurrency=case.concurrency,
                rounds=case_rounds,
                baseline=baseline,
                on_run=on_run,
            )
            by_name = {o.name: o for o in measured}
            outcomes = [by_name.get(s.name) or skipped(s.name, skips[s.name]) for s in specs]
            results.append(
                CaseResult(
                    case.name,
                    case.label,
                    case.concurrency,
                    len(case.indices),
                    case_rounds,
                    outcomes,
                )
            )
    return results
