from __future__ import annotations

import math
import secrets
from typing import Any

import pytest

from aiocache_patterns import (
    JsonSerializer,
    MsgpackSerializer,
    PickleSerializer,
    SerializationError,
    Serializer,
)
from aiocache_patterns.serializers import BoundSerializer

JSON_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**80,
    1.5,
    -0.0,
    1e308,
    0.1 + 0.2,
    "",
    "héllo \x00 \n 🎉",
    [],
    {},
    {"a": [1, {"b": None}], "é": "x"},
]


@pytest.mark.parametrize("value", JSON_VALUES)
def test_json_round_trips_exactly(value: Any) -> None:
    s = JsonSerializer()
    back = s.loads(s.dumps(value))
    assert back == value
    assert type(back) is type(value)
    if isinstance(value, float):
        assert math.copysign(1, back) == math.copysign(1, value)


@pytest.mark.parametrize("value", [{1, 2}, math.nan, math.inf, object(), b"bytes"])
def test_json_refuses_what_it_cannot_hold(value: Any) -> None:
    with pytest.raises(SerializationError, match="not JSON-serializable"):
        JsonSerializer().dumps(value)


@pytest.mark.parametrize("data", [b"\xff\xfe", b"{", b"", b"nul"])
def test_json_undecodable(data: bytes) -> None:
    with pytest.raises(SerializationError):
        JsonSerializer().loads(data)


def test_msgpack_round_trip_and_garbage() -> None:
    s = MsgpackSerializer()
    value = {"a": [1, 2.5, None, b"\x00raw", "é"], "n": 2**63 - 1}
    assert s.loads(s.dumps(value)) == value
    with pytest.raises(SerializationError):
        s.loads(b"\xc1")
    with pytest.raises(SerializationError):
        s.dumps(object())


def test_pickle_needs_a_real_secret() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        PickleSerializer(b"short")
    with pytest.raises(TypeError, match="secret must be bytes"):
        PickleSerializer("x" * 40)  # type: ignore[arg-type]


def test_pickle_round_trip_and_forgery() -> None:
    secret = secrets.token_bytes(32)
    s = PickleSerializer(secret)
    data = s.dumps({"set": {1, 2}, "tuple": (1, 2)})
    assert s.loads(data) == {"set": {1, 2}, "tuple": (1, 2)}
    # A payload signed with another key is refused before unpickling.
    forged = PickleSerializer(secrets.token_bytes(32)).dumps("evil")
    with pytest.raises(SerializationError, match="bad signature"):
        s.loads(forged)
    # So is a tampered one, a truncated one, and a bare pickle.
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    for bad in (tampered, data[:10], b"", __import__("pickle").dumps("bare")):
        with pytest.raises(SerializationError):
            s.loads(bad)


def test_serializers_satisfy_the_protocol() -> None:
    for s in (JsonSerializer(), MsgpackSerializer(), PickleSerializer(b"k" * 32)):
        assert isinstance(s, Serializer)


def test_bound_pickle_is_valid_only_in_its_own_context() -> None:
    s = PickleSerializer(secrets.token_bytes(32))
    assert isinstance(s, BoundSerializer)
    assert not isinstance(JsonSerializer(), BoundSerializer)
    data = s.dumps_bound({"a": 1}, b"ctx-1")
    assert s.loads_bound(data, b"ctx-1") == {"a": 1}
    for context in (b"ctx-2", b"ctx-", b"ctx-1\x00", b""):
        with pytest.raises(SerializationError, match="bad signature"):
            s.loads_bound(data, context)
    # Bound and unbound signatures are not interchangeable.
    with pytest.raises(SerializationError, match="bad signature"):
        s.loads(data)
    with pytest.raises(SerializationError, match="bad signature"):
        s.loads_bound(s.dumps({"a": 1}), b"")
