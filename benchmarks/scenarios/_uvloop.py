"""A scenario run again on uvloop's event loop (``<name>-uvloop``).

uvloop is what uvicorn runs on when it is installed, and its loop is compiled:
it exposes no ready queue, so the executor decides "lone caller" differently
there (see docs/executor.md). The same cases and targets, measured on uvloop,
show what that costs. The harness (``_cli.py``) runs these scenarios in a
uvloop loop of their own, after the asyncio ones; without uvloop installed
they are skipped with a note.
"""

from __future__ import annotations

import dataclasses

from benchmarks._report import ScenarioResult
from benchmarks.scenarios._base import RunContext, Scenario

__all__ = ["OnUvloop"]


class OnUvloop:
    """``base`` on uvloop: same cases, the result named ``<base>-uvloop``."""

    loop = "uvloop"

    def __init__(self, base: Scenario) -> None:
        self._base = base
        self.name = f"{base.name}-uvloop"
        self.description = f"{base.description}, on uvloop"

    async def run(self, ctx: RunContext) -> ScenarioResult:
        result = await self._base.run(ctx)
        return dataclasses.replace(result, scenario=self.name, description=self.description)
