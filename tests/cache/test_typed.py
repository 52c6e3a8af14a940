"""Typed values: stored as readable JSON, decoded to the declared return type on a hit."""

from __future__ import annotations

import dataclasses
import enum
import gc
import json
import secrets
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pydantic
import pytest

from aiocache_patterns import Cache, JsonSerializer, PickleSerializer, SerializationError
from aiocache_patterns.cache._entry import HEADER_SIZE
from tests._backends import Backend


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Run this test's cyclic garbage finalizers now (see tests/cache/test_faults.py)."""
    yield
    gc.collect()


class Status(enum.Enum):
    DRAFT = "draft"
    LIVE = "live"


@dataclasses.dataclass
class Author:
    id: uuid.UUID
    joined: date


class Post(pydantic.BaseModel):
    id: int
    title: str
    at: datetime
    price: Decimal
    status: Status
    author: Author


AUTHOR = Author(uuid.UUID(int=7), date(2020, 2, 29))
WHEN = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)


def post(i: int) -> Post:
    return Post(
        id=i, title=f"t{i}", at=WHEN, price=Decimal("9.99"), status=Status.LIVE, author=AUTHOR
    )


async def test_the_decorator_returns_the_declared_type_on_a_hit(backend: Backend) -> None:
    writer = Cache(await backend.client(), namespace="typed", ttl=60)
    reader = Cache(await backend.client(decode_responses=True), namespace="typed", ttl=60)
    loads: list[str] = []

    def functions(cache: Cache) -> Any:
        @cache.cached(key="post:{i}", shared=True)
        async def one(i: int) -> Post:
            loads.append("one")
            return post(i)

        @cache.cached(key="posts", shared=True)
        async def many() -> list[Post]:
            loads.append("many")
            return [post(1), post(2)]

        @cache.cached(key="author", shared=True)
        async def author() -> Author:
            loads.append("author")
            return AUTHOR

        @cache.cached(key="scalars", shared=True)
        async def scalars() -> tuple[datetime, uuid.UUID, Decimal, Status, date]:
            loads.append("scalars")
            return WHEN, uuid.UUID(int=1), Decimal("0.1"), Status.DRAFT, date(2000, 1, 1)

        return one, many, author, scalars

    expected = [
        post(3),
        [post(1), post(2)],
        AUTHOR,
        (WHEN, uuid.UUID(int=1), Decimal("0.1"), Status.DRAFT, date(2000, 1, 1)),
    ]
    for fn, want in zip(functions(writer), expected, strict=True):
        args = (3,) if want == post(3) else ()
        assert await fn(*args) == want
    assert len(loads) == 4
    # Another process, another client: values come from Redis, decoded to the types.
    for fn, want in zip(functions(reader), expected, strict=True):
        args = (3,) if want == post(3) else ()
        got = await fn(*args)
        assert got == want
        assert type(got) is type(want)
    assert len(loads) == 4


async def test_the_stored_form_is_readable_json(redis: Any) -> None:
    cache = Cache(redis, namespace="typed", ttl=60)

    @cache.cached(key="p", shared=True)
    async def get() -> Post:
        return post(1)

    await get()
    raw = await redis.get(b"typed:{p}")
    stored = json.loads(raw[HEADER_SIZE:])
    assert stored == {
        "id": 1,
        "title": "t1",
        "at": "2024-05-06T07:08:09.123456Z",
        "price": "9.99",
        "status": "live",
        "author": {"id": str(uuid.UUID(int=7)), "joined": "2020-02-29"},
    }
    assert await cache.get("p") == stored  # untyped reads see that JSON


async def test_a_stored_value_that_does_not_fit_the_type_is_a_miss(redis: Any) -> None:
    cache = Cache(redis, namespace="typed", ttl=60)
    await cache.set("p", {"id": "not a number"})
    calls = 0

    @cache.cached(key="p", shared=True)
    async def get() -> Post:
        nonlocal calls
        calls += 1
        return post(1)

    assert await get() == post(1)
    assert calls == 1
    assert cache.stats.decode_errors == 1
    assert await get() == post(1)  # overwritten
    assert calls == 1


async def test_typed_false_and_untyped_functions_get_json(redis: Any) -> None:
    cache = Cache(redis, namespace="typed", ttl=60)

    @cache.cached(key="a", shared=True, typed=False)
    async def a() -> datetime:
        return WHEN

    @cache.cached(key="b", shared=True)
    async def b():  # type: ignore[no-untyped-def]
        return WHEN

    assert await a() == WHEN  # the loader's own value
    assert await b() == WHEN
    fresh = Cache(redis, namespace="typed", ttl=60)

    @fresh.cached(key="a", shared=True, typed=False)
    async def a2() -> datetime:
        raise AssertionError("not a hit")

    assert await a2() == "2024-05-06T07:08:09.123456Z"


async def test_pickle_stays_opt_in_and_returns_objects(redis: Any) -> None:
    cache = Cache(redis, namespace="typed", serializer=PickleSerializer(secrets.token_bytes(32)))

    @cache.cached(key="p", shared=True)
    async def get() -> Post:
        return post(1)

    assert await get() == post(1)
    again = Cache(redis, namespace="typed", serializer=PickleSerializer(b"x" * 32))
    assert await again.get("p", "MISS") == "MISS"  # another secret: refused


def test_json_serializer_refuses_what_has_no_json_form() -> None:
    s = JsonSerializer()
    for value in ({1}, b"x", object(), float("nan")):
        with pytest.raises(SerializationError):
            s.dumps(value)
    assert s.loads_as(Post) is not None
    loads = s.loads_as(list[Author])
    assert loads is not None
    with pytest.raises(SerializationError):
        loads(b'[{"id": 1}]')
    with pytest.raises(SerializationError):
        s.loads_as(Post)(b"{")  # type: ignore[misc]
