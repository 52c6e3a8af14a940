"""The scenario registry: ``python -m benchmarks --scenario NAME`` picks from here.

To add a scenario, write a module with an object that has ``name``,
``description`` and ``async run(ctx) -> ScenarioResult`` (see
:class:`benchmarks.scenarios._base.Scenario`), using the shared helpers in
``_base`` (variants, cases, interleaved measurement) and ``benchmarks._report``,
and list it in ``_ALL`` below. A scenario with ``loop = "uvloop"`` runs in a
uvloop event loop (``_uvloop.py``).
"""

from __future__ import annotations

from benchmarks.scenarios import (
    hit,
    hit_cluster,
    idempotency,
    leaderboard,
    lock,
    near,
    otel,
    ratelimit,
    soak,
    stampede,
    tagged,
    typed,
)
from benchmarks.scenarios._base import RunContext, Scenario
from benchmarks.scenarios._uvloop import OnUvloop

__all__ = ["SCENARIOS", "RunContext", "Scenario"]

_ALL: tuple[Scenario, ...] = (
    hit.SCENARIO,
    hit_cluster.SCENARIO,
    otel.SCENARIO,
    lock.SCENARIO,
    ratelimit.SCENARIO,
    leaderboard.SCENARIO,
    stampede.SCENARIO,
    near.SCENARIO,
    idempotency.SCENARIO,
    soak.SCENARIO,
    tagged.SCENARIO,
    typed.SCENARIO,
    # The same on uvloop's event loop (run after the others, in a uvloop loop).
    OnUvloop(hit.SCENARIO),
    OnUvloop(lock.SCENARIO),
    OnUvloop(ratelimit.SCENARIO),
)

#: Every scenario by name, in the order they run.
SCENARIOS: dict[str, Scenario] = {s.name: s for s in _ALL}
