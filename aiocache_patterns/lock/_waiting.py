"""The wait loop shared by Lock and Semaphore: try, subscribe, wait to be woken.

``attempt(queue)`` runs the acquire script once and answers
``(fencing_token, pttl_ms)``: a fencing token when the caller holds the lease
(taken now, or handed over by a releaser), else ``None`` and how long the
lease it waits behind has left (negative if unknown). Between tries a waiter
sleeps until it is woken by name, the lease it waits behind runs out, or the
fallback poll interval passes, whichever is first.

A wake-up message is only ever a hint to try again: whatever it says (anyone
may PUBLISH to the channel), a waiter returns only once ``attempt`` has
confirmed from Redis, atomically, that the lease is its own, and with the
fencing token Redis issued. A forged message costs one round trip, never
exclusion. The one exception is not a message: a lock handed over by a
releaser in this same process, which the release script's reply names with
its fencing token (``inbox.granted``, see ``_notify.hand_over_locally``);
that is Redis's own word, so the waiter takes it without a round trip. A
waiter woken while a release of its lock is in flight in this process waits
for that release's reply before asking Redis.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from .._redis.notify import Notifier, local_releases

__all__ = ["wait_for_turn"]

Attempt = Callable[[bool], Awaitable[tuple[int | None, int]]]


async def wait_for_turn(
    attempt: Attempt,
    *,
    notifier: Notifier,
    channel: bytes,
    token: bytes,
    blocking_timeout: float | None,
    poll_interval: float,
    timeout: float,
) -> tuple[int | None, int]:
    """Run ``attempt`` until it succeeds: ``(fencing token or None if time ran out,
    lease in ms)``. The lease is 0 when the acquire script confirmed it (it is the
    full ttl then), else the short lease a releaser in this process handed over.

    ``attempt(queue)`` must join the fair queue when ``queue`` is true;
    ``timeout`` bounds subscribing to the wake-ups, like any Redis operation.
    """
    fence, pttl = await attempt(blocking_timeout != 0)
    if fence is not None or blocking_timeout == 0:
        return fence, 0
    deadline = None if blocking_timeout is None else time.monotonic() + blocking_timeout
    async with notifier.waiting(channel, token, timeout) as inbox:
        # Try again now that we are subscribed: a release in between was not heard.
        fence, pttl = await attempt(True)
        while fence is None:
            wait = poll_interval
            if pttl > 0:
                wait = min(wait, pttl / 1000 + 0.0005)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None, 0
                wait = min(wait, left)
            if await inbox.wait(wait) is not None and inbox.granted is None:
                await local_releases(channel)
            if inbox.granted is not None:
                return inbox.granted  # the release script's reply, relayed here
            fence, pttl = await attempt(True)  # woken by a hint, or the wait ran out: ask
        return fence, 0
