"""The nightly job: copy the like counters from Redis into SQLite, in one process at a time.

Every app process runs the scheduler; the :class:`~aiocache_patterns.Lock`
makes sure only one of them runs the job at a time (the others find it
taken and skip: ``blocking_timeout=0``). The lock alone is not enough: a
holder can be paused (GC, a stalled VM, a slow disk) past its lease, while a
newer holder runs, and then wake up and write. So the job hands the lease's
fencing token to the database, which refuses a token older than one it has
already accepted (:class:`~examples.blog_api.db.StaleFencingToken`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, time, timedelta, timezone
from typing import Any

from aiocache_patterns import Leaderboard, Lock, LockNotAcquired, LockNotOwned

from .db import Database, JobRun, StaleFencingToken

__all__ = ["NIGHTLY", "NightlyJob", "nightly_scheduler", "seconds_until"]

logger = logging.getLogger("examples.blog_api.jobs")

#: The job's name in the ``job_runs`` table.
NIGHTLY = "nightly"


class NightlyJob:
    """Sync the like leaderboard into ``posts.likes``, guarded by a lock and fenced.

    Args:
        redis: the Redis client (any the library accepts).
        db: the database (the protected resource).
        board: the likes leaderboard.
        lock_ttl: the lock's lease, seconds.
        auto_renew: renew the lease while the job runs, and cancel the job if
            the lease is lost anyway (``cancel_on_loss``).
    """

    def __init__(
        self,
        redis: Any,
        db: Database,
        board: Leaderboard[str],
        *,
        lock_ttl: float = 60.0,
        auto_renew: bool = True,
    ) -> None:
        self._redis = redis
        self._db = db
        self._board = board
        self._lock_ttl = lock_ttl
        self._auto_renew = auto_renew

    @property
    def lock_name(self) -> str:
        """The lock's name: one per database, shared by every process using it."""
        return f"blog-{self._db.instance_id}:{NIGHTLY}"

    def lock(self) -> Lock:
        """A new would-be holder of the job's lock (one ``Lock`` object per holder)."""
        return Lock(
            self._redis,
            self.lock_name,
            ttl=self._lock_ttl,
            blocking_timeout=0,  # someone else is on it: skip, don't queue
            auto_renew=self._auto_renew,
            cancel_on_loss=self._auto_renew,
        )

    async def run(self, *, before_commit: Callable[[], Awaitable[None]] | None = None) -> JobRun:
        """Run the job now.

        Raises :class:`~aiocache_patterns.LockNotAcquired` if another holder has
        the lock, and :class:`~examples.blog_api.db.StaleFencingToken` if this
        holder's lease ended and a newer holder wrote first. ``before_commit``
        is awaited just before the database write (the tests pause there).
        """
        run: JobRun | None = None
        try:
            async with self.lock() as lease:
                likes = await self._likes()
                if before_commit is not None:
                    await before_commit()
                run = await self._db.save_likes(NIGHTLY, lease.fencing_token, likes)
        except LockNotOwned:
            if run is None:
                raise
            # The lease ran out just before the release, but the database took the
            # write, so no newer holder had written: the run counts.
            logger.warning("nightly job: the lease ran out before its release")
        logger.info(
            "nightly job: likes of %d posts saved (fencing token %d)",
            run.posts_synced,
            run.fencing_token,
        )
        return run

    async def _likes(self) -> dict[int, int]:
        # The like count of every post the database has, in one round trip (ranks()
        # sends 1,000 members per script). Not by paging the board: a post that moves
        # across a page boundary while likes arrive could be missed, and a read of the
        # whole board at once is refused (top() returns at most 1,000 entries).
        entries = await self._board.ranks(str(post_id) for post_id in await self._db.post_ids())
        return {int(member): int(entry.score) for member, entry in entries.items()}


def seconds_until(at: time, now: datetime) -> float:
    """Seconds from ``now`` to the next ``at`` (UTC), tomorrow's if today's has passed."""
    now = now.astimezone(timezone.utc)
    target = datetime.combine(now.date(), at, tzinfo=timezone.utc)
    if target <= now:
        target += timedelta(days=1)
    return (target - now).total_seconds()


async def nightly_scheduler(
    job: NightlyJob,
    at: time,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> None:
    """Run ``job`` every day at ``at`` (UTC), forever; every process may run this.

    The process that takes the lock runs the job; the others log that it is
    taken and go back to sleep. Failures are logged, never fatal.
    """
    while True:
        await sleep(seconds_until(at, now()))
        try:
            await job.run()
        except LockNotAcquired:
            logger.info("nightly job: another process is running it")
        except StaleFencingToken as exc:
            logger.warning("nightly job: lost the lock mid-run; write refused: %s", exc)
        except Exception:
            logger.exception("nightly job failed")
