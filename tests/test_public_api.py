"""The public surface: exactly what __all__ promises, nothing private leaking."""

from __future__ import annotations

import aiocache_patterns
from aiocache_patterns import errors


def test_all_names_exist_and_are_public() -> None:
    assert isinstance(aiocache_patterns.__all__, tuple)
    for name in aiocache_patterns.__all__:
        assert not name.startswith("_")
        assert hasattr(aiocache_patterns, name), name


def test_every_public_attribute_is_in_all() -> None:
    exported = set(aiocache_patterns.__all__)
    public = {
        name
        for name, value in vars(aiocache_patterns).items()
        if not name.startswith("_") and not isinstance(value, type(aiocache_patterns))
    }
    assert public == exported


def test_design_names_are_exported() -> None:
    for name in ("Cache", "SingleFlight", "CachePatternsError", "LockNotAcquired", "LockNotOwned"):
        assert name in aiocache_patterns.__all__


def test_exception_tree() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.CachePatternsError)
    assert issubclass(errors.LockNotAcquired, TimeoutError)
    assert issubclass(errors.RedisTimeout, TimeoutError)
    assert issubclass(errors.RedisUnavailable, ConnectionError)
    assert issubclass(errors.CircuitOpen, errors.RedisUnavailable)
    assert issubclass(errors.SerializationError, TypeError)
