"""The one exception tree of aiocache_patterns.

Every error the library raises on purpose derives from
[`CachePatternsError`][aiocache_patterns.errors.CachePatternsError], and
inherits the built-in whose meaning it shares, so ``except TimeoutError``
keeps working for code that does not know us::

    CachePatternsError
    ├── RedisUnavailable          (also ConnectionError) Redis unreachable or refusing
    │   ├── RedisTimeout          (also TimeoutError) no answer within the operation timeout
    │   ├── RedisOutOfMemory      Redis is full (maxmemory reached): it refuses writes
    │   └── CircuitOpen           failing fast: too many recent failures, backing off
    ├── RedisCommandError         Redis answered with an error (WRONGTYPE, script error, ...)
    ├── SerializationError        (also TypeError) a value could not be encoded or decoded
    ├── LockError
    │   ├── LockNotAcquired       (also TimeoutError) blocking_timeout ran out
    │   ├── LockNotOwned          the lease expired or belongs to someone else
    │   └── LockLost              the lease was lost while the protected block ran
    ├── RateLimitExceeded         a hit was denied; carries the RateLimitResult
    └── IdempotencyError
        ├── IdempotencyConflict   the key's operation runs now, or ran and cannot be replayed
        └── IdempotencyKeyReused  the key was used for a different request (fingerprint)

Wrong arguments are not part of this tree: they raise ``TypeError`` or
``ValueError`` naming the argument, at construction where possible.

Errors from redis-py are translated where they enter the library, with the
original chained as ``__cause__``.
"""

from __future__ import annotations

from typing import Protocol

__all__ = [
    "CachePatternsError",
    "CircuitOpen",
    "IdempotencyConflict",
    "IdempotencyError",
    "IdempotencyKeyReused",
    "LockError",
    "LockLost",
    "LockNotAcquired",
    "LockNotOwned",
    "RateLimitDecision",
    "RateLimitExceeded",
    "RedisCommandError",
    "RedisOutOfMemory",
    "RedisTimeout",
    "RedisUnavailable",
    "SerializationError",
]


class CachePatternsError(Exception):
    """Base class of every error aiocache_patterns raises on purpose."""


class RedisUnavailable(CachePatternsError, ConnectionError):
    """Redis could not be reached, dropped the connection, or the pool is exhausted."""


class RedisTimeout(RedisUnavailable, TimeoutError):
    """Redis did not answer within the operation timeout (redis-py retries included)."""


class RedisOutOfMemory(RedisUnavailable):
    """Redis refused a write because it is full (``maxmemory`` reached, ``noeviction``).

    A degraded Redis, like a timeout: reads and deletes still work, so the
    cache fails open and the limiter follows its ``fail_open`` policy. It does
    not open the circuit breaker (the server answers).
    """


class CircuitOpen(RedisUnavailable):
    """Calls fail fast for a short while after repeated failures, sparing a dead server."""


class RedisCommandError(CachePatternsError):
    """Redis answered a command with an error reply."""


class SerializationError(CachePatternsError, TypeError):
    """A value could not be serialized, or stored bytes could not be deserialized."""


class LockError(CachePatternsError):
    """Base class of lock errors."""


class LockNotAcquired(LockError, TimeoutError):
    """The lock could not be acquired within ``blocking_timeout``."""


class LockNotOwned(LockError):
    """The lease is gone: it expired, or another holder owns the lock now."""


class LockLost(LockError):
    """The lease was lost while the protected block was running."""


class RateLimitDecision(Protocol):
    """What [`RateLimitExceeded`][aiocache_patterns.errors.RateLimitExceeded]
    carries: a rate limiter's decision (a
    [`RateLimitResult`][aiocache_patterns.RateLimitResult]). Durations are seconds.

    Declared here so that this module, at the bottom of the package, depends
    on no pattern.
    """

    @property
    def allowed(self) -> bool: ...
    @property
    def limit(self) -> int: ...
    @property
    def remaining(self) -> int: ...
    @property
    def reset_after(self) -> float: ...
    @property
    def retry_after(self) -> float: ...
    def headers(self, policy: str = ...) -> dict[str, str]: ...


class RateLimitExceeded(CachePatternsError):
    """A rate-limited call was denied. ``result`` says when to retry."""

    def __init__(self, result: RateLimitDecision, *args: object) -> None:
        super().__init__(*(args or ("rate limit exceeded",)))
        #: The decision of the denied hit (a RateLimitResult).
        self.result = result


class IdempotencyError(CachePatternsError):
    """Base class of idempotency errors."""


class IdempotencyConflict(IdempotencyError):
    """The key's operation is running elsewhere right now (``in_progress``), or it
    ran but its result was too large to store and cannot be replayed. HTTP 409."""

    def __init__(self, message: str, *, in_progress: bool) -> None:
        super().__init__(message)
        #: True while the first operation runs; False once it ran without a stored result.
        self.in_progress = in_progress


class IdempotencyKeyReused(IdempotencyError):
    """The idempotency key was used before with a different fingerprint (another
    request). HTTP 422."""
