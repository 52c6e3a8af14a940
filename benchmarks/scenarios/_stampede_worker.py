"""A worker process of the ``stampede`` scenario's multi-process cases.

``python -m benchmarks.scenarios._stampede_worker``, with the Redis URL in the
environment variable ``ACP_BENCH_REDIS_URL`` (kept off the command line: it may
hold a password), prints ``{"ready": true}``, then answers one JSON line per
command read from stdin:

* ``{"op": "open", "variant": NAME, "ttl": S, "loader_s": S}``: open that
  variant (closing the previous one) with its own client;
* ``{"op": "run", "key": K, "n": N, "start_at": T}``: at ``time.time() == T``
  start N concurrent calls of the variant on key K; reply with the burst
  (latencies in ms, errors, wrong values) and this process's loader calls;
* ``{"op": "close"}``: close the variant. End of input closes it and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from typing import Any

from benchmarks._target import Target
from benchmarks.scenarios._stampede_procs import URL_ENV
from benchmarks.scenarios._stampede_variants import (
    VARIANTS,
    Call,
    CountedLoader,
    Settings,
    burst,
)

__all__ = ["main"]


class _Worker:
    def __init__(self, url: str) -> None:
        self._target = Target("url", "stampede worker", url=url)
        self._stack: contextlib.AsyncExitStack | None = None
        self._call: Call | None = None
        self._loader = CountedLoader(0.0)

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        if op == "open":
            await self.close()
            spec = VARIANTS[command["variant"]]
            self._loader = CountedLoader(float(command["loader_s"]))
            stack = contextlib.AsyncExitStack()
            try:
                self._call = await stack.enter_async_context(
                    spec.open(
                        self._target,
                        self._loader,
                        Settings(float(command["ttl"]), self._loader.seconds),
                    )
                )
            except Exception:
                await stack.aclose()
                raise
            self._stack = stack
            return {"ok": True}
        if op == "run":
            if self._call is None:
                raise RuntimeError("run before open")
            self._loader.reset()
            await asyncio.sleep(max(0.0, float(command["start_at"]) - time.time()))
            started = time.time()
            result = await burst(self._call, str(command["key"]), int(command["n"]))
            return {
                "ok": True,
                "burst": result.to_json(),
                "loads": self._loader.calls,
                "started": started,
            }
        if op == "close":
            await self.close()
            return {"ok": True}
        raise ValueError(f"unknown op {op!r}")

    async def close(self) -> None:
        stack, self._stack, self._call = self._stack, None, None
        if stack is not None:
            await stack.aclose()


async def _serve(url: str) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    worker = _Worker(url)
    _reply({"ready": True})
    try:
        while line := await reader.readline():
            try:
                reply = await worker.handle(json.loads(line))
            except Exception as exc:
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
            _reply(reply)
    finally:
        await worker.close()


def _reply(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def main() -> int:
    url = os.environ.get(URL_ENV)
    if not url:
        print(f"{URL_ENV} is not set", file=sys.stderr)
        return 2
    asyncio.run(_serve(url))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
