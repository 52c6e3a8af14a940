"""A private Redis Cluster for fault tests: three masters, no replicas, on free ports.

::

    async with private_cluster() as nodes:
        client = redis.asyncio.RedisCluster(host="127.0.0.1", port=nodes[0].port)
        nodes[2].kill()            # one shard dies; its slots have no replica
        await nodes[2].restart()   # back on the same port, same node id (nodes.conf kept)

Nodes run with ``cluster-require-full-coverage no`` (the other shards keep
serving their slots while one is down; with ``yes``, Redis itself refuses every
key once the failure is agreed) and a short ``cluster-node-timeout``. Every
node is killed when the block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
from collections.abc import AsyncIterator

from tests._servers import RedisProcess

__all__ = ["cluster_port", "private_cluster"]

_READY_TIMEOUT = 20.0


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(1000):
        port = random.randint(20000, 29999)
        if port not in taken and _free(port) and _free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


async def _cli(*args: str) -> str:
    cli = shutil.which("redis-cli")
    if cli is None:
        raise RuntimeError("redis-cli is not on PATH")
    process = await asyncio.create_subprocess_exec(
        cli,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), _READY_TIMEOUT)
    if process.returncode != 0:
        raise RuntimeError(f"redis-cli {' '.join(args)} failed: {out.decode(errors='replace')}")
    return out.decode(errors="replace")


async def wait_ready(nodes: list[RedisProcess]) -> None:
    """Until every running node says ``cluster_state:ok`` and knows every node."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _READY_TIMEOUT
    while True:
        ok = True
        for node in nodes:
            if not node.running:
                continue
            info = await _cli("-p", str(node.port), "cluster", "info")
            if "cluster_state:ok" not in info or f"cluster_known_nodes:{len(nodes)}" not in info:
                ok = False
                break
        if ok:
            return
        if loop.time() > deadline:
            raise RuntimeError(f"the private cluster did not become ready: {info}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def private_cluster(
    masters: int = 3, node_timeout_ms: int = 1000
) -> AsyncIterator[list[RedisProcess]]:
    """``masters`` cluster nodes of this test's own, joined into a cluster."""
    taken: set[int] = set()
    nodes: list[RedisProcess] = []
    try:
        for _ in range(masters):
            port = cluster_port(taken)
            taken.add(port)
            node = RedisProcess(
                port,
                args=(
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(node_timeout_ms),
                    "--cluster-require-full-coverage", "no",
                ),
            )  # fmt: skip
            nodes.append(node)
            await node.start()
        await _cli(
            "--cluster",
            "create",
            *(f"127.0.0.1:{n.port}" for n in nodes),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        )
        await wait_ready(nodes)
        yield nodes
    finally:
        for node in nodes:
            node.close()
