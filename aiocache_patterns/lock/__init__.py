"""Distributed locks and semaphores: fenced leases, fair queues, woken waiters.

``Lock`` (``_lock``) and ``Semaphore`` (``_semaphore``) say which
scripts take, give back and extend a lease; ``_leases`` does everything
around them (waiting, wake-ups, renewal, cancellation). The scripts, and the
Lua library they share, are in ``lua/``. See docs/locks.md.
"""

from ._leases import Lease as Lease
from ._lock import Lock as Lock
from ._semaphore import Semaphore as Semaphore

__all__ = ("Lease", "Lock", "Semaphore")
