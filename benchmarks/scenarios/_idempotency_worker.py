"""A worker process of the ``idempotency`` scenario.

``python -m benchmarks.scenarios._idempotency_worker``, with the Redis URL in the
environment variable ``ACP_BENCH_REDIS_URL``, prints ``{"ready": true}``, then
answers one JSON line per command read from stdin:

* ``{"key": K, "n": N, "mode": "reject"|"wait", "endpoint_s": S, "start_at": T}``:
  at ``time.time() == T`` send N concurrent duplicate POSTs with the
  Idempotency-Key K through the middleware; reply with the statuses, the
  distinct bodies of the 201s, the latencies (ms) and the errors.

End of input exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from typing import Any

import redis.asyncio

from benchmarks.scenarios._idempotency_app import Reply, call, make_app
from benchmarks.scenarios._stampede_procs import URL_ENV

__all__ = ["main"]


async def _run(client: Any, counter: Any, command: dict[str, Any]) -> dict[str, Any]:
    app = make_app(client, counter, float(command["endpoint_s"]), concurrent=command["mode"])
    delay = float(command["start_at"]) - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    replies = await asyncio.gather(
        *(call(app, command["key"]) for _ in range(int(command["n"]))), return_exceptions=True
    )
    ok = [r for r in replies if isinstance(r, Reply)]
    errors = [repr(r) for r in replies if not isinstance(r, Reply)]
    return {
        "statuses": dict(Counter(str(r.status) for r in ok)),
        "bodies": sorted({r.body.decode() for r in ok if r.status == 201}),
        "latencies_ms": [r.seconds * 1000 for r in ok],
        "errors": errors[:5],
        "error_count": len(errors),
    }


async def main() -> None:
    url = os.environ[URL_ENV]
    client = redis.asyncio.Redis.from_url(url)
    counter = redis.asyncio.Redis.from_url(url)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": True}), flush=True)
    try:
        while line := await reader.readline():
            print(json.dumps(await _run(client, counter, json.loads(line))), flush=True)
    finally:
        await client.aclose()
        await counter.aclose()


if __name__ == "__main__":
    asyncio.run(main())
