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
        if name == "RateLimitDecision":  # the protocol of RateLimitExceeded.result
            continue
        assert issubclass(cls, errors.CachePatternsError)
    assert issubclass(errors.LockNotAcquired, TimeoutError)
    assert issubclass(errors.RedisTimeout, TimeoutError)
    assert issubclass(errors.RedisUnavailable, ConnectionError)
    assert issubclass(errors.CircuitOpen, errors.RedisUnavailable)
    assert issubclass(errors.SerializationError, TypeError)


def test_names_in_public_signatures_are_exported() -> None:
    """A user can name every type a public signature uses (Lease exactly once)."""
    for name in ("KeyT", "Seconds", "CachedFunction", "RateLimitDecision", "ClientStats"):
        assert name in aiocache_patterns.__all__
    assert aiocache_patterns.__all__.count("Lease") == 1
    from aiocache_patterns import lock

    assert lock.Lease is aiocache_patterns.Lease
    assert lock.__all__.count("Lease") == 1
    assert "Lease" not in lock._lock.__all__
    assert "Lease" not in lock._semaphore.__all__


async def test_client_stats_count_what_the_library_does(redis: object) -> None:
    from aiocache_patterns import Cache, client_stats

    before = client_stats(redis)
    assert before.in_flight == 0
    assert before.batches_in_flight == 0
    assert before.max_in_flight >= 1
    await Cache(redis, namespace="stats").get("k")
    assert client_stats(redis).round_trips == before.round_trips + 1
    assert client_stats(redis).wake_up_channels == 0


def test_the_api_reference_documents_every_exported_name() -> None:
    """docs/reference.md renders each name of ``__all__`` (errors through their module)."""
    from pathlib import Path

    reference = (Path(__file__).parent.parent / "docs" / "reference.md").read_text()
    assert "::: aiocache_patterns.errors" in reference
    for name in aiocache_patterns.__all__:
        if name in errors.__all__:
            continue
        assert f"::: aiocache_patterns.{name}\n" in reference, name
    for role in (":meth:", ":class:", ":func:", ":data:", ":attr:", ":mod:"):
        for path in Path(aiocache_patterns.__file__).parent.rglob("*.py"):
            assert role not in path.read_text(), f"{path}: Sphinx role {role} renders as text"
