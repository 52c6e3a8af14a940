"""A private Sentinel setup for failover tests: a master, a replica, one Sentinel.

::

    async with private_sentinel() as setup:
        sentinel = redis.asyncio.sentinel.Sentinel([("127.0.0.1", setup.sentinel_port)])
        client = sentinel.master_for(setup.name)
        await setup.failover()   # SENTINEL FAILOVER; returns once the replica is master

Everything is ``redis-server`` (Sentinel is ``redis-server CONF --sentinel``) on
free loopback ports, with nothing on disk but a temporary directory, and is
killed when the block ends. One Sentinel is enough for a forced failover
(``SENTINEL FAILOVER`` needs no quorum agreement).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tests._servers import RedisProcess, free_port, redis_server_binary

__all__ = ["SentinelSetup", "private_sentinel"]

NAME = "aiocache-primary"
_READY_TIMEOUT = 30.0


@dataclass
class SentinelSetup:
    name: str
    master: RedisProcess
    replica: RedisProcess
    sentinel_port: int
    _admin: Any = field(repr=False)

    async def master_port(self) -> int:
        """The master's port as Sentinel tells it."""
        host_port = await self._admin.execute_command(
            "SENTINEL GET-MASTER-ADDR-BY-NAME", self.name
        )
        return int(host_port[1])

    async def failover(self, *, kill: bool = False) -> int:
        """Force a failover (``SENTINEL FAILOVER``), or kill the master and let Sentinel
        notice (``kill=True``); wait until the old replica is the master (and the old
        master, if alive, its replica). The new master's port."""
        old = await self.master_port()
        if kill:
            (self.master if self.master.port == old else self.replica).kill()
        else:
            await self._admin.execute_command("SENTINEL FAILOVER", self.name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _READY_TIMEOUT
        while True:
            port = await self.master_port()
            if (
                port != old
                and await _role(port) == b"master"
                and (kill or await _role(old) == b"slave")
            ):
                return port
            if loop.time() > deadline:
                raise RuntimeError("the Sentinel failover did not complete in time")
            await asyncio.sleep(0.1)


async def _role(port: int) -> bytes:
    client: Any = aioredis.Redis(port=port, socket_timeout=1.0)
    try:
        role = await client.execute_command("ROLE")
        return bytes(role[0]) if not isinstance(role[0], str) else role[0].encode()
    except Exception:
        return b""
    finally:
        await client.aclose()


async def _replica_ready(admin: Any, name: str) -> bool:
    replicas = await admin.execute_command("SENTINEL REPLICAS", name)
    for replica in replicas:
        info = (
            replica
            if isinstance(replica, dict)
            else dict(zip(replica[::2], replica[1::2], strict=True))
        )
        flags = info.get("flags") or info.get(b"flags") or ""
        flags = flags.decode() if isinstance(flags, bytes) else str(flags)
        link = info.get("master-link-status") or info.get(b"master-link-status") or ""
        link = link.decode() if isinstance(link, bytes) else str(link)
        if "slave" in flags and "down" not in flags and link == "ok":
            return True
    return False


def _spawn_sentinel(
    binary: str, workdir: str, port: int, master_port: int
) -> subprocess.Popen[bytes]:
    conf = Path(workdir, "sentinel.conf")
    conf.write_text(
        f"port {port}\n"
        "bind 127.0.0.1\n"
        f"dir {workdir}\n"
        f"logfile {workdir}/sentinel.log\n"
        f"sentinel monitor {NAME} 127.0.0.1 {master_port} 1\n"
        f"sentinel down-after-milliseconds {NAME} 1000\n"
        f"sentinel failover-timeout {NAME} 10000\n"
        f"sentinel parallel-syncs {NAME} 1\n"
    )
    return subprocess.Popen(
        [binary, str(conf), "--sentinel"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _log_tail(workdir: str) -> str:
    log = Path(workdir, "sentinel.log")
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


@contextlib.asynccontextmanager
async def private_sentinel() -> AsyncIterator[SentinelSetup]:
    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError("redis-server is not on PATH")
    master = RedisProcess()
    replica: RedisProcess | None = None
    sentinel: subprocess.Popen[bytes] | None = None
    admin: Any = None
    workdir = tempfile.TemporaryDirectory(prefix="aiocache-sentinel-")
    try:
        await master.start()
        replica = RedisProcess(args=("--replicaof", "127.0.0.1", str(master.port)))
        await replica.start()
        port = free_port()
        sentinel = _spawn_sentinel(binary, workdir.name, port, master.port)
        admin = aioredis.Redis(port=port, socket_timeout=2.0, decode_responses=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _READY_TIMEOUT
        while True:
            with contextlib.suppress(Exception):
                if await _replica_ready(admin, NAME):
                    break
            if sentinel.poll() is not None or loop.time() > deadline:
                tail = _log_tail(workdir.name)
                raise RuntimeError(f"Sentinel did not see the replica in time:\n{tail}")
            await asyncio.sleep(0.1)
        yield SentinelSetup(NAME, master, replica, port, admin)
    finally:
        if admin is not None:
            await admin.aclose()
        if sentinel is not None and sentinel.poll() is None:
            sentinel.send_signal(signal.SIGKILL)
            sentinel.wait()
        if replica is not None:
            replica.close()
        master.close()
        workdir.cleanup()
