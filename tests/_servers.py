"""Private ``redis-server`` processes for tests that kill and restart Redis.

::

    async with private_redis() as server:
        client = redis.asyncio.Redis(port=server.port)
        server.kill()              # SIGKILL: no goodbye, connections just die
        await server.restart()     # a fresh, empty server on the SAME port

The server listens on 127.0.0.1 only, on a free port, keeps nothing on disk
(``--save "" --appendonly no``, working files in a temporary directory) and is
always killed when the block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

__all__ = ["RedisProcess", "free_port", "private_redis", "redis_full", "redis_server_binary"]

_START_TIMEOUT = 10.0


def redis_server_binary() -> str | None:
    """Path of ``redis-server`` on PATH, or None."""
    return shutil.which("redis-server")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping_blocking(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


async def _answers_ping(port: int) -> bool:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 1.0) == b"+PONG\r\n"
    except (OSError, asyncio.TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class RedisProcess:
    """One ``redis-server`` on 127.0.0.1:``port``; restartable on the same port."""

    def __init__(
        self, port: int | None = None, *, binary: str | None = None, args: tuple[str, ...] = ()
    ) -> None:
        binary = binary or redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        self.binary = binary
        self.port = port if port is not None else free_port()
        #: Extra ``redis-server`` arguments (``("--maxmemory", "2mb")``), kept across restarts.
        self.args = args
        self._dir = tempfile.TemporaryDirectory(prefix="aiocache-redis-")
        self._log = Path(self._dir.name, "redis.log")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    async def start(self) -> None:
        """Start the server and wait until it answers PING."""
        if self.running:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        self._process = self._spawn()
        deadline = time.monotonic() + _START_TIMEOUT
        while not await _answers_ping(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"redis-server did not start on port {self.port}:\n{self._log_tail()}"
                )
            await asyncio.sleep(0.01)

    def start_blocking(self) -> None:
        """:meth:`start` without an event loop (for session set-up, outside any test)."""
        if self.running:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        self._process = self._spawn()
        deadline = time.monotonic() + _START_TIMEOUT
        while not _answers_ping_blocking(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"redis-server did not start on port {self.port}:\n{self._log_tail()}"
                )
            time.sleep(0.01)

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self._dir.name,
                "--logfile", str(self._log),
                "--daemonize", "no",
                *self.args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def _log_tail(self) -> str:
        if not self._log.exists():
            return ""
        return self._log.read_text(errors="replace")[-2000:]

    def kill(self) -> None:
        """SIGKILL the server (if running) and reap it; open connections die unannounced."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()

    async def restart(self) -> None:
        """Kill the server if it runs, then start a fresh (empty) one on the same port."""
        self.kill()
        await self.start()

    def close(self) -> None:
        """Kill the server and remove its working directory."""
        self.kill()
        self._dir.cleanup()


@contextlib.asynccontextmanager
async def private_redis(*args: str) -> AsyncIterator[RedisProcess]:
    """A started :class:`RedisProcess` on a free port, killed at the end of the block.

    ``args`` are extra ``redis-server`` arguments, e.g. ``"--maxmemory", "2mb"``.
    """
    last: RuntimeError | None = None
    for _ in range(3):  # the free port can be taken between probe and bind
        server = RedisProcess(args=args)
        try:
            await server.start()
        except RuntimeError as exc:
            server.close()
            last = exc
            continue
        try:
            yield server
        finally:
            server.close()
        return
    assert last is not None
    raise last


@contextlib.asynccontextmanager
async def redis_full(client: Any) -> AsyncIterator[None]:
    """Make the server behind ``client`` full for the block: ``maxmemory`` of 1 byte
    with ``noeviction``, so it answers writes that add data with an OOM error (reads
    and deletes still work). Use on private servers only; restored at the end."""
    policy = await client.config_get("maxmemory-policy")
    old_policy = next(iter(policy.values()))
    await client.config_set("maxmemory-policy", "noeviction")
    await client.config_set("maxmemory", "1")
    try:
        yield
    finally:
        await client.config_set("maxmemory", "0")
        await client.config_set("maxmemory-policy", old_policy)
