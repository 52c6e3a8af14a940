"""What the library is doing on a client right now: a documented diagnostic.

For operators, tests and the benchmark harness: how many round trips the
library has sent on a client, what is in flight, and what it holds. Every
pattern object on the same client shares these (one executor, one wake-up
connection per client and event loop).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .executor import executor_for
from .notify import notifier_for

__all__ = ["ClientStats", "client_stats"]


@dataclass(frozen=True, slots=True)
class ClientStats:
    """A snapshot of what the library does on one client
    (see [`client_stats`][aiocache_patterns.client_stats])."""

    #: Round trips sent so far (a batch of merged GETs and pipelined scripts is one).
    round_trips: int
    #: Round trips in flight right now.
    in_flight: int
    #: The most round trips the library keeps in flight on this client.
    max_in_flight: int
    #: Batches being sent right now, each in a task of its own.
    batches_in_flight: int
    #: Connections the library keeps checked out of the client's pool between calls
    #: (the lane of lone calls: 0 or 1).
    held_connections: int
    #: Wake-up channels subscribed right now (lock, semaphore and recompute waiters).
    wake_up_channels: int
    #: Each circuit breaker's state (``"closed"``, ``"open"``, ``"half_open"``): one
    #: for a server (key ``""``), one per cluster node used so far (key ``"host:port"``).
    breakers: Mapping[str, str] = field(default_factory=dict)


def client_stats(redis: Any) -> ClientStats:
    """What the library is doing on ``redis`` (a client the patterns use) right now.

    >>> stats = client_stats(redis)  # doctest: +SKIP
    >>> stats.round_trips, stats.in_flight
    """
    executor = executor_for(redis)
    return ClientStats(
        round_trips=executor.round_trips,
        in_flight=executor.in_flight,
        max_in_flight=executor.max_in_flight,
        batches_in_flight=executor.pending_tasks,
        held_connections=executor.held_connections,
        wake_up_channels=len(notifier_for(redis).channels),
        breakers=executor.breaker_states(),
    )
