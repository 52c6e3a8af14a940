"""Worker processes for the ``stampede`` scenario: start them, command them, stop them.

The workers (``_stampede_worker``) are started once and kept for the whole
multi-process group, so each stampede costs no interpreter start-up. A run
sends every worker the same absolute start time (``time.time()`` a little
ahead), so their callers hit the cold key together.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["URL_ENV", "WorkerError", "Workers", "workers"]

#: Where a worker finds the Redis URL (kept off its command line: it may hold a password).
URL_ENV = "ACP_BENCH_REDIS_URL"

ROOT = Path(__file__).resolve().parents[2]
#: Longest wait for one reply (a run of 2,500 calls takes well under a second).
_REPLY_TIMEOUT = 120.0


class WorkerError(RuntimeError):
    """A worker died, timed out, or said something we could not read."""


class Workers:
    """``count`` worker processes connected to ``url``."""

    def __init__(self, procs: list[asyncio.subprocess.Process], logs: Sequence[IO[bytes]]) -> None:
        self._procs = procs
        self._logs = logs

    def __len__(self) -> int:
        return len(self._procs)

    async def ask(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send each worker its command; every reply, or the first failure as WorkerError."""
        for proc, command in zip(self._procs, commands, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(command).encode() + b"\n")
        await asyncio.gather(*(p.stdin.drain() for p in self._procs if p.stdin is not None))
        return list(await asyncio.gather(*(self._reply(i) for i in range(len(self._procs)))))

    async def ask_all(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        return await self.ask([command] * len(self._procs))

    async def _reply(self, index: int) -> dict[str, Any]:
        proc = self._procs[index]
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), _REPLY_TIMEOUT)
        except asyncio.TimeoutError:
            raise WorkerError(f"worker {index} gave no reply in {_REPLY_TIMEOUT:g}s") from None
        if not line:
            raise WorkerError(f"worker {index} exited: {self.log_tail(index)}")
        try:
            reply: dict[str, Any] = json.loads(line)
        except ValueError:
            raise WorkerError(f"worker {index} said {line[:200]!r}") from None
        return reply

    def log_tail(self, index: int) -> str:
        log = self._logs[index]
        log.flush()
        log.seek(0)
        return log.read()[-1500:].decode(errors="replace").strip() or "(no output)"


@contextlib.asynccontextmanager
async def workers(url: str, count: int) -> AsyncIterator[Workers]:
    """Start ``count`` workers on ``url``; wait until each says it is ready; stop them on exit."""
    env = dict(os.environ)
    env[URL_ENV] = url
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    procs: list[asyncio.subprocess.Process] = []
    with contextlib.ExitStack() as files:
        logs = [files.enter_context(tempfile.TemporaryFile()) for _ in range(count)]
        try:
            for log in logs:
                procs.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "benchmarks.scenarios._stampede_worker",
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=log,
                        cwd=ROOT,
                        env=env,
                        limit=1 << 24,
                    )
                )
            pool = Workers(procs, logs)
            ready = await asyncio.gather(*(pool._reply(i) for i in range(count)))
            if not all(r.get("ready") for r in ready):
                raise WorkerError(f"workers not ready: {ready}")
            yield pool
        finally:
            await _stop(procs)


async def _stop(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
