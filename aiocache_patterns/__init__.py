"""Production Redis patterns for asyncio, done right.

Cache-aside with stampede prevention, write-through and invalidation; locks
and semaphores; rate limiting; leaderboards. Every read-modify-write is one
Lua script; concurrent callers share round trips.

This module re-exports the public API; the code lives in a folder a pattern
(``cache/``, ``lock/``, ``ratelimit/``, ``leaderboard/``), with the transport
in ``_redis/`` and the basics (``errors``, ``keys``, ``serializers``,
``singleflight``) at the bottom. docs/architecture.md draws the layers.
"""

from ._redis.diagnostics import ClientStats as ClientStats
from ._redis.diagnostics import client_stats as client_stats
from ._telemetry import configure_telemetry as configure_telemetry
from ._validate import Seconds as Seconds
from .cache import Cache as Cache
from .cache import CachedFunction as CachedFunction
from .cache import CacheStats as CacheStats
from .errors import CachePatternsError as CachePatternsError
from .errors import CircuitOpen as CircuitOpen
from .errors import IdempotencyConflict as IdempotencyConflict
from .errors import IdempotencyError as IdempotencyError
from .errors import IdempotencyKeyReused as IdempotencyKeyReused
from .errors import LockError as LockError
from .errors import LockLost as LockLost
from .errors import LockNotAcquired as LockNotAcquired
from .errors import LockNotOwned as LockNotOwned
from .errors import RateLimitDecision as RateLimitDecision
from .errors import RateLimitExceeded as RateLimitExceeded
from .errors import RedisCommandError as RedisCommandError
from .errors import RedisOutOfMemory as RedisOutOfMemory
from .errors import RedisTimeout as RedisTimeout
from .errors import RedisUnavailable as RedisUnavailable
from .errors import SerializationError as SerializationError
from .idempotency import Idempotency as Idempotency
from .keys import KeyT as KeyT
from .leaderboard import BoardPeriod as BoardPeriod
from .leaderboard import KeepPolicy as KeepPolicy
from .leaderboard import Leaderboard as Leaderboard
from .leaderboard import LeaderboardEntry as LeaderboardEntry
from .leaderboard import LeaderboardView as LeaderboardView
from .leaderboard import RankStyle as RankStyle
from .leaderboard import ViewAggregate as ViewAggregate
from .lock import Lease as Lease
from .lock import Lock as Lock
from .lock import Semaphore as Semaphore
from .ratelimit import Algorithm as Algorithm
from .ratelimit import Rate as Rate
from .ratelimit import RateLimiter as RateLimiter
from .ratelimit import RateLimiterStats as RateLimiterStats
from .ratelimit import RateLimitResult as RateLimitResult
from .serializers import JsonSerializer as JsonSerializer
from .serializers import MsgpackSerializer as MsgpackSerializer
from .serializers import PickleSerializer as PickleSerializer
from .serializers import Serializer as Serializer
from .singleflight import SingleFlight as SingleFlight
from .singleflight import SingleFlightStats as SingleFlightStats

__version__ = "0.1.0.dev0"

__all__ = (
    "Algorithm",
    "BoardPeriod",
    "Cache",
    "CachePatternsError",
    "CacheStats",
    "CachedFunction",
    "CircuitOpen",
    "ClientStats",
    "Idempotency",
    "IdempotencyConflict",
    "IdempotencyError",
    "IdempotencyKeyReused",
    "JsonSerializer",
    "KeepPolicy",
    "KeyT",
    "Leaderboard",
    "LeaderboardEntry",
    "LeaderboardView",
    "Lease",
    "Lock",
    "LockError",
    "LockLost",
    "LockNotAcquired",
    "LockNotOwned",
    "MsgpackSerializer",
    "PickleSerializer",
    "RankStyle",
    "Rate",
    "RateLimitDecision",
    "RateLimitExceeded",
    "RateLimitResult",
    "RateLimiter",
    "RateLimiterStats",
    "RedisCommandError",
    "RedisOutOfMemory",
    "RedisTimeout",
    "RedisUnavailable",
    "Seconds",
    "Semaphore",
    "SerializationError",
    "Serializer",
    "SingleFlight",
    "SingleFlightStats",
    "ViewAggregate",
    "client_stats",
    "configure_telemetry",
)
