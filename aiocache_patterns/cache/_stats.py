"""Counters the patterns keep, exposed as frozen snapshots."""

from __future__ import annotations

from dataclasses import dataclass, fields

from .._telemetry import TELEMETRY, AttrKey, attrs

__all__ = ["CacheStats"]


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of a [`Cache`][aiocache_patterns.Cache]'s counters (since construction)."""

    #: Reads answered from Redis with a fresh value.
    hits: int = 0
    #: Reads that found no fresh value (absent, stale, undecodable).
    misses: int = 0
    #: Loader calls made by this cache (in this process).
    loads: int = 0
    #: ``get_or_load`` calls that shared a load already running in this process.
    coalesced: int = 0
    #: Misses that waited for another process's load (the recompute lock).
    waited: int = 0
    #: Stale values served: while another caller refreshed, or because the loader failed.
    stale_served: int = 0
    #: Recomputations started early by XFetch (probabilistic early expiration).
    early_recomputes: int = 0
    #: Background refreshes started.
    refreshes: int = 0
    #: Redis errors and loader errors (absorbed or raised).
    errors: int = 0
    #: Stored values that could not be decoded (treated as misses, then overwritten).
    decode_errors: int = 0


@dataclass(slots=True)
class Counters:
    """The live counters behind ``CacheStats`` (same fields, mutable)."""

    hits: int = 0
    misses: int = 0
    loads: int = 0
    coalesced: int = 0
    waited: int = 0
    stale_served: int = 0
    early_recomputes: int = 0
    refreshes: int = 0
    errors: int = 0
    decode_errors: int = 0

    def snapshot(self) -> CacheStats:
        return CacheStats(**{f.name: getattr(self, f.name) for f in fields(self)})


def observe(owner: object, namespace: str, counters: Counters) -> None:
    """Report ``counters`` as ``aiocache_patterns.cache.requests`` (read when collected)."""
    hit, miss, stale, error = (
        attrs(namespace=namespace, result=r) for r in ("hit", "miss", "stale", "error")
    )

    def read(c: Counters) -> list[tuple[AttrKey, int]]:
        return [(hit, c.hits), (miss, c.misses), (stale, c.stale_served), (error, c.errors)]

    TELEMETRY.caches.add(owner, counters, read)
    TELEMETRY.refresh()
