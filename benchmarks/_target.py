"""Which Redis the benchmarks run against, and starting a private one.

In order: ``--redis-url``, else ``REDIS_URL``, else a private ``redis-server``
on a free loopback port (when the binary is on PATH), else fakeredis, which is
embedded in this process and so is not a speed figure. The hidden
``--target`` option forces the private server or fakeredis.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

import redis
import redis.asyncio

__all__ = [
    "EMBEDDED_NOTE",
    "KEY_PREFIX",
    "Target",
    "TargetChoice",
    "delete_bench_keys",
    "open_target",
    "redact",
    "server_version",
]

TargetChoice = Literal["auto", "private", "fakeredis"]
EMBEDDED_NOTE = "embedded, not a speed figure"
#: Every key the benchmarks write starts with this, so a shared database can be cleaned.
KEY_PREFIX = "acp-bench"

_START_TIMEOUT = 10.0


@dataclass(frozen=True)
class Target:
    """A Redis to benchmark against; ``client()`` makes a new client (own pool)."""

    kind: Literal["url", "private", "fakeredis"]
    label: str
    url: str | None = None
    fake_server: Any = field(default=None, repr=False)

    @property
    def speed_figure(self) -> bool:
        """False for fakeredis: it runs in this process, so its figures mean nothing."""
        return self.kind != "fakeredis"

    def client(self, **kwargs: Any) -> Any:
        """A new ``redis.asyncio.Redis`` (or ``FakeAsyncRedis``) with its own connections."""
        if self.url is None:
            import fakeredis

            return fakeredis.FakeAsyncRedis(server=self.fake_server, **kwargs)
        return redis.asyncio.Redis.from_url(self.url, **kwargs)

    def aiocache_kwargs(self) -> dict[str, Any]:
        """The connection arguments of an aiocache Redis cache for this (real) target."""
        if self.url is None:
            raise ValueError("aiocache needs a Redis URL, not the embedded fakeredis")
        parts = urlsplit(self.url)
        db = parts.path.strip("/") or "0"
        return {
            "endpoint": parts.hostname or "127.0.0.1",
            "port": parts.port or 6379,
            "db": int(db),
            "password": unquote(parts.password) if parts.password else None,
        }


def redact(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


@contextlib.contextmanager
def open_target(redis_url: str | None, choice: TargetChoice = "auto") -> Iterator[Target]:
    """The target to use; a private server started here is stopped on exit."""
    if choice == "fakeredis":
        yield _fake_target()
        return
    if choice == "auto":
        if redis_url:
            yield Target("url", f"{redact(redis_url)} (--redis-url)", url=redis_url)
            return
        env_url = os.environ.get("REDIS_URL")
        if env_url:
            yield Target("url", f"{redact(env_url)} (REDIS_URL)", url=env_url)
            return
    binary = shutil.which("redis-server")
    if binary is None:
        if choice == "private":
            raise SystemExit("--target private: redis-server is not on PATH")
        yield _fake_target()
        return
    with _private_server(binary) as port:
        yield Target(
            "private",
            f"private redis-server on 127.0.0.1:{port}",
            url=f"redis://127.0.0.1:{port}/0",
        )


def _fake_target() -> Target:
    import fakeredis

    return Target("fakeredis", f"fakeredis ({EMBEDDED_NOTE})", fake_server=fakeredis.FakeServer())


@contextlib.contextmanager
def _private_server(binary: str) -> Iterator[int]:
    """Start ``redis-server`` on a free loopback port, wait for it, stop it on exit."""
    with tempfile.TemporaryDirectory(prefix="acp-bench-redis-") as workdir:
        last_error = ""
        for _ in range(3):  # the free port may be taken between probe and bind
            port = _free_port()
            log_path = os.path.join(workdir, f"redis-{port}.log")
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    [
                        *(binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
                        *("--appendonly", "no", "--dir", workdir, "--daemonize", "no"),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                if _wait_ready(proc, port):
                    yield port
                    return
                with open(log_path, errors="replace") as log_text:
                    last_error = log_text.read()[-2000:]
            finally:
                _stop(proc)
        raise RuntimeError(f"redis-server did not start:\n{last_error}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(proc: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + _START_TIMEOUT
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                if client.ping():
                    return True
            except redis.exceptions.ConnectionError:
                pass
            time.sleep(0.05)
        return False
    finally:
        client.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def server_version(target: Target) -> str:
    """``redis 7.2.4`` (from INFO), or the fakeredis version."""
    if target.kind == "fakeredis":
        from importlib.metadata import version

        return f"fakeredis {version('fakeredis')}"
    client = target.client()
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return f"redis {info.get('redis_version', '?')}"


async def delete_bench_keys(target: Target) -> int:
    """Remove every key the benchmarks wrote (``acp-bench*``); a shared database stays clean."""
    if target.kind == "fakeredis":
        return 0
    client = target.client()
    removed = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{KEY_PREFIX}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                removed += await client.unlink(*batch)
                batch.clear()
        if batch:
            removed += await client.unlink(*batch)
    finally:
        await client.aclose()
    return removed
