"""``typed``: decoding a 1 KB cached document, untyped and to a declared type.

What a cache hit spends decoding its payload, without Redis: the baseline is
the stdlib ``json.loads`` that ``JsonSerializer.loads`` is today; beside it,
``JsonSerializer.loads_as`` decoding the same bytes into a dataclass (msgspec's
typed JSON decoder) and into a pydantic model (pydantic's ``TypeAdapter``), as
``@cache.cached`` does with a function's return annotation. Target: typed
decoding no slower than the stdlib path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from aiocache_patterns import JsonSerializer
from benchmarks._optional import version_of
from benchmarks._report import Goal, ScenarioResult, check_goals
from benchmarks._target import Target
from benchmarks.scenarios._base import Bound, Case, RunContext, VariantSpec, measure_cases

__all__ = ["SCENARIO", "TypedScenario"]

DOCS = 100
STDLIB = "json.loads (stdlib)"
MSGSPEC = "loads_as(dataclass) (msgspec)"
PYDANTIC = "loads_as(pydantic model)"
PYDANTIC_FLOOR = "Model.model_validate_json (pydantic alone)"

FULL = (2000, 41)
QUICK = (500, 9)

#: msgspec's typed decoding must keep up with the untyped stdlib path; pydantic
#: converts every UUID, Decimal and datetime in Python-visible objects and is
#: slower than ``json.loads`` by itself, so its row is held to pydantic alone
#: (the floor: the same work, nothing of ours).
GOALS = [
    Goal("doc1k", MSGSPEC, STDLIB, 1.0),
    Goal("doc1k", PYDANTIC, PYDANTIC_FLOOR, 0.95),
]


@dataclasses.dataclass
class Line:
    sku: uuid.UUID
    name: str
    price: Decimal
    quantity: int


@dataclasses.dataclass
class Order:
    id: int
    customer: str
    created: datetime
    paid: bool
    notes: str
    lines: list[Line]


def _document(i: int) -> Order:
    """An order of about 1 KB of JSON."""
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    return Order(
        id=i,
        customer=f"customer-{i}@example.com",
        created=start + timedelta(minutes=i),
        paid=i % 2 == 0,
        notes="leave at the door, ring twice" * 2,
        lines=[
            Line(uuid.UUID(int=i * 100 + n), f"product number {n}", Decimal(f"{n}.99"), n + 1)
            for n in range(8)
        ],
    )


SERIALIZER = JsonSerializer()
PAYLOADS = [SERIALIZER.dumps(_document(i)) for i in range(DOCS)]


def _pydantic_order() -> Any:
    """``Order`` as pydantic models (what a FastAPI app would declare)."""
    import pydantic

    line = pydantic.create_model(
        "LineModel",
        __base__=pydantic.BaseModel,
        sku=(uuid.UUID, ...),
        name=(str, ...),
        price=(Decimal, ...),
        quantity=(int, ...),
    )
    return pydantic.create_model(
        "OrderModel",
        __base__=pydantic.BaseModel,
        id=(int, ...),
        customer=(str, ...),
        created=(datetime, ...),
        paid=(bool, ...),
        notes=(str, ...),
        lines=(list[line], ...),  # type: ignore[valid-type]
    )


def _decoder(how: str) -> Callable[[bytes], Any]:
    if how == STDLIB:
        return json.loads
    if how == PYDANTIC_FLOOR:
        return _pydantic_order().model_validate_json  # type: ignore[no-any-return]
    decoder = SERIALIZER.loads_as(Order if how == MSGSPEC else _pydantic_order())
    assert decoder is not None
    return decoder


@contextlib.asynccontextmanager
async def _variant(target: Target, how: str) -> AsyncIterator[Bound]:
    decode = _decoder(how)
    if how == STDLIB:

        async def op(i: int) -> Any:
            return decode(PAYLOADS[i])["id"]

    else:

        async def op(i: int) -> Any:
            return decode(PAYLOADS[i]).id

    yield Bound(op)


VARIANTS = [
    VariantSpec(STDLIB, "raw", lambda target: _variant(target, STDLIB)),
    VariantSpec(MSGSPEC, "library", lambda target: _variant(target, MSGSPEC)),
    VariantSpec(PYDANTIC, "library", lambda target: _variant(target, PYDANTIC), "pydantic"),
    VariantSpec(
        PYDANTIC_FLOOR, "raw", lambda target: _variant(target, PYDANTIC_FLOOR), "pydantic"
    ),
]


class TypedScenario:
    name = "typed"
    description = "decoding a 1 KB cached document: stdlib json vs typed (msgspec, pydantic)"

    async def run(self, ctx: RunContext) -> ScenarioResult:
        ops, rounds = QUICK if ctx.quick else FULL
        ops = ctx.ops or ops
        indices = [i % DOCS for i in range(ops)]
        size = sum(len(p) for p in PAYLOADS) // DOCS
        cases = [Case("doc1k", f"one {size}-byte document, decoded", 1, indices, rounds)]
        cases_out = await measure_cases(self.name, ctx, VARIANTS, cases, list(range(DOCS)), STDLIB)
        result = ScenarioResult(
            self.name, self.description, STDLIB, {v.name: v.group for v in VARIANTS}, cases_out
        )
        result.goals = check_goals(cases_out, GOALS, speed_figure=True)
        if version_of("pydantic") is None:
            result.notes.append("pydantic is not installed: its row is skipped")
        return result


SCENARIO = TypedScenario()
