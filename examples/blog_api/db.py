"""The blog's data layer: SQLite through aiosqlite, the source of truth.

Redis only ever holds copies (cached posts) and counters (likes, rate limits);
every post lives here. The schema is created on first run. The database also
is the *protected resource* of the nightly job: it keeps the highest fencing
token that ever wrote, and refuses a write carrying an older one
(:class:`StaleFencingToken`), which is what makes a lock safe when its holder
was paused past its lease.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TypedDict

import aiosqlite

__all__ = ["Database", "JobRun", "PostRow", "StaleFencingToken", "utcnow"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sequences (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO sequences (name, value) VALUES ('posts', 0);
CREATE TABLE IF NOT EXISTS posts (
    id         INTEGER PRIMARY KEY,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    author     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    -- the durable copy of the like counter (live in the Redis leaderboard),
    -- written by the nightly job
    likes      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS job_runs (
    name          TEXT PRIMARY KEY,
    -- the highest fencing token that ever wrote: older ones are refused
    fencing_token INTEGER NOT NULL,
    ran_at        TEXT,
    posts_synced  INTEGER NOT NULL DEFAULT 0
);
"""

_POST_COLUMNS = "id, title, body, author, created_at, updated_at"


class PostRow(TypedDict):
    """A post as stored, cached and served (JSON-safe: it is what the cache holds)."""

    id: int
    title: str
    body: str
    author: str
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class JobRun:
    """The last successful run of a job, as the database recorded it."""

    name: str
    fencing_token: int
    ran_at: str | None
    posts_synced: int


class StaleFencingToken(Exception):
    """A write carried a fencing token not above the last one the database accepted.

    Its holder's lease ended (a pause, a lost renewal) and a newer holder has
    written since: the write is refused and nothing of it is kept.
    """

    def __init__(self, job: str, token: int, current: int) -> None:
        super().__init__(
            f"{job}: fencing token {token} refused, the database has already seen {current}"
        )
        self.job = job
        self.token = token
        self.current = current


def utcnow() -> str:
    """The current UTC time as ISO 8601 with seconds (what the tables store)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _post(row: aiosqlite.Row) -> PostRow:
    return PostRow(
        id=int(row["id"]),
        title=str(row["title"]),
        body=str(row["body"]),
        author=str(row["author"]),
        created_at=str(row["created_at"]),
        updated_at=str(row["updated_at"]),
    )


class Database:
    """One SQLite database shared by the whole app (open it with :meth:`open`).

    Writes run one at a time (an ``asyncio.Lock``) in explicit ``BEGIN
    IMMEDIATE`` transactions: aiosqlite gives the app one connection, and two
    requests must not interleave statements inside each other's transaction.

    ``post_reads`` counts the post reads that reached the database: what the
    cache is there to keep low (the tests and ``/health`` read it).
    """

    def __init__(self, conn: aiosqlite.Connection, path: str, instance_id: str) -> None:
        self._conn = conn
        self._write_lock = asyncio.Lock()
        #: The database file.
        self.path = path
        #: A random id made with the schema: a new database file gets new Redis
        #: keys, so nothing cached for a deleted database is ever served.
        self.instance_id = instance_id
        #: Post reads that reached SQLite (cache misses, in effect).
        self.post_reads = 0

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> Database:
        """Open (creating it and its schema on first run) the database at ``path``."""
        target = os.fspath(path)
        if target != ":memory:":
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(target, isolation_level=None)  # we BEGIN ourselves
        try:
            conn.row_factory = aiosqlite.Row
            await conn.execute("PRAGMA busy_timeout = 5000")
            if target != ":memory:":
                await conn.execute("PRAGMA journal_mode = WAL")
            await conn.executescript(_SCHEMA)
            await conn.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('instance_id', ?)",
                (secrets.token_hex(4),),
            )
            rows = await conn.execute_fetchall("SELECT value FROM meta WHERE name = 'instance_id'")
            instance_id = str(next(iter(rows))["value"])
        except BaseException:
            await conn.close()
            raise
        return cls(conn, target, instance_id)

    async def close(self) -> None:
        await self._conn.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    # -- posts -------------------------------------------------------------------

    async def next_post_id(self) -> int:
        """Reserve a post id (like a database sequence: a failed insert leaves a gap).

        Write-through needs the key before the write, so the id is taken first.
        """
        async with self._transaction() as conn:
            rows = await conn.execute_fetchall(
                "UPDATE sequences"
                " SET value = max(value, (SELECT coalesce(max(id), 0) FROM posts)) + 1"
                " WHERE name = 'posts' RETURNING value"
            )
        return int(next(iter(rows))["value"])

    async def insert_post(self, post: PostRow) -> None:
        async with self._transaction() as conn:
            await conn.execute(
                f"INSERT INTO posts ({_POST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    post["id"],
                    post["title"],
                    post["body"],
                    post["author"],
                    post["created_at"],
                    post["updated_at"],
                ),
            )

    async def get_post(self, post_id: int) -> PostRow | None:
        self.post_reads += 1
        rows = await self._conn.execute_fetchall(
            f"SELECT {_POST_COLUMNS} FROM posts WHERE id = ?", (post_id,)
        )
        for row in rows:
            return _post(row)
        return None

    async def update_post(
        self, post_id: int, title: str, body: str, *, author: str
    ) -> PostRow | None:
        """Replace a post's title and body if ``author`` wrote it; the updated post, or
        None if there is no such post of ``author``'s."""
        async with self._transaction() as conn:
            rows = await conn.execute_fetchall(
                "UPDATE posts SET title = ?, body = ?, updated_at = ? WHERE id = ? AND author = ? "
                f"RETURNING {_POST_COLUMNS}",
                (title, body, utcnow(), post_id, author),
            )
        for row in rows:
            return _post(row)
        return None

    async def post_ids(self) -> list[int]:
        """Every post's id, in order."""
        rows = await self._conn.execute_fetchall("SELECT id FROM posts ORDER BY id")
        return [int(row["id"]) for row in rows]

    async def stored_likes(self) -> dict[int, int]:
        """``{post id: likes}`` as the nightly job last saved them (posts with any)."""
        rows = await self._conn.execute_fetchall(
            "SELECT id, likes FROM posts WHERE likes > 0 ORDER BY id"
        )
        return {int(row["id"]): int(row["likes"]) for row in rows}

    # -- jobs, fenced ----------------------------------------------------------------

    async def last_run(self, job: str) -> JobRun | None:
        rows = await self._conn.execute_fetchall(
            "SELECT name, fencing_token, ran_at, posts_synced FROM job_runs WHERE name = ?",
            (job,),
        )
        for row in rows:
            return JobRun(
                name=str(row["name"]),
                fencing_token=int(row["fencing_token"]),
                ran_at=None if row["ran_at"] is None else str(row["ran_at"]),
                posts_synced=int(row["posts_synced"]),
            )
        return None

    async def save_likes(self, job: str, fencing_token: int, likes: Mapping[int, int]) -> JobRun:
        """Store the like counters, fenced: refused unless ``fencing_token`` is the newest.

        One transaction: the fence check (``UPDATE ... WHERE fencing_token < ?``)
        and the writes commit together or not at all, so a holder whose lease
        ran out while it was paused cannot overwrite what a newer holder wrote.
        Raises :class:`StaleFencingToken` (nothing written) otherwise.
        """
        ran_at = utcnow()
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT OR IGNORE INTO job_runs (name, fencing_token) VALUES (?, 0)", (job,)
            )
            fenced = await conn.execute(
                "UPDATE job_runs SET fencing_token = ?, ran_at = ?, posts_synced = ? "
                "WHERE name = ? AND fencing_token < ?",
                (fencing_token, ran_at, len(likes), job, fencing_token),
            )
            if fenced.rowcount != 1:
                rows = await conn.execute_fetchall(
                    "SELECT fencing_token FROM job_runs WHERE name = ?", (job,)
                )
                current = int(next(iter(rows))["fencing_token"])
                raise StaleFencingToken(job, fencing_token, current)  # rolled back
            await conn.execute("UPDATE posts SET likes = 0 WHERE likes != 0")
            await conn.executemany(
                "UPDATE posts SET likes = ? WHERE id = ?",
                [(count, post_id) for post_id, count in likes.items()],
            )
        return JobRun(job, fencing_token, ran_at, len(likes))
