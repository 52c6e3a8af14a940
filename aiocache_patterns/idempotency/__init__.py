"""Idempotency keys: an operation runs once per key across processes; repeats get
its stored result.

``Idempotency`` (``_idempotency``) claims a key, stores the result and wakes
waiting repeats; its scripts are in ``lua/``. The ASGI middleware built on it
is ``aiocache_patterns.integrations.asgi.IdempotencyMiddleware``. See
docs/idempotency.md.
"""

from ._idempotency import Concurrent as Concurrent
from ._idempotency import Idempotency as Idempotency
from ._idempotency import IdempotencyClaim as IdempotencyClaim
from ._idempotency import IdempotencyReplay as IdempotencyReplay

__all__ = ("Concurrent", "Idempotency", "IdempotencyClaim", "IdempotencyReplay")
