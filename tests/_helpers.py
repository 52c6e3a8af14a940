"""Small helpers shared by the behaviour tests."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests._backends import all_keys

__all__ = ["all_keys", "populate", "ttls_ms", "until"]


async def until(
    check: Callable[[], Awaitable[Any] | Any], *, within: float = 5.0, every: float = 0.005
) -> None:
    """Poll ``check`` (sync or async) until it is true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {within}s: {check}")
        await asyncio.sleep(every)


async def ttls_ms(client: Any) -> dict[bytes, int]:
    """PTTL of every key: -1 means immortal, which the library must never leave."""
    return {k: int(await client.pttl(k)) for k in await all_keys(client)}


async def populate(client: Any, n: int, tag: str = "k") -> list[bytes]:
    """``n`` keys ``t:{<tag><i>}`` (one slot each), key i holding ``v<i>``; the keys."""
    keys = [f"t:{{{tag}{i}}}".encode() for i in range(n)]
    for i, key in enumerate(keys):
        await client.set(key, f"v{i}".encode())
    return keys
