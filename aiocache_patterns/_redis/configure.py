"""Settings of the library's transport for one client, set by its user.

``configure_breaker(redis, ...)``: how the circuit breakers of a client open
and close. Every pattern object on the client shares them (one executor per
client); on a Redis Cluster each node has a breaker of its own with these
settings.
"""

from __future__ import annotations

from typing import Any

from .._validate import positive_int, seconds
from .breaker import BreakerSettings
from .executor import executor_for

__all__ = ["configure_breaker"]


def configure_breaker(
    redis: Any,
    *,
    failures: int = 5,
    open_for: float = 0.5,
    max_open_for: float | None = None,
    trial_calls: int = 1,
) -> BreakerSettings:
    """Set how the circuit breakers of ``redis`` (a client the patterns use) open and close.

    After ``failures`` consecutive connection-level failures (refused, reset,
    timed out) calls fail at once with ``CircuitOpen`` for ``open_for``
    seconds; then up to ``trial_calls`` calls at once are let through, and the
    first success closes the circuit. A failed trial opens it again for twice
    as long, up to ``max_open_for`` seconds (None: 5 s, or ``open_for``
    if that is longer). On a Redis Cluster every node has
    a breaker of its own (keys on healthy shards keep working while one shard
    fails); on one server, the server has one. The breakers start closed again.

    >>> configure_breaker(redis, failures=3, open_for=1.0)  # doctest: +SKIP

    Returns the settings now in force.
    """
    failures = positive_int(failures, "failures")
    trial_calls = positive_int(trial_calls, "trial_calls")
    open_s = seconds(open_for, "open_for")
    max_s = max(5.0, open_s) if max_open_for is None else seconds(max_open_for, "max_open_for")
    if max_s < open_s:
        raise ValueError(f"max_open_for ({max_s:g}) must be >= open_for ({open_s:g})")
    settings = BreakerSettings(
        failures=failures, open_for=open_s, max_open_for=max_s, trial_calls=trial_calls
    )
    executor_for(redis).configure_breaker(settings)
    return settings
