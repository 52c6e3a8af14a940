"""A small circuit breaker in front of one Redis client.

After ``threshold`` consecutive connection-level failures the circuit opens:
calls fail at once with ``CircuitOpen`` instead
of spending their timeout on a dead server. After ``cooldown`` one trial call
is let through (half-open); success closes the circuit, failure re-opens it
with the cooldown doubled, up to ``max_cooldown``. Nothing needs resetting by
hand: recovery is the first success.

(We looked for a maintained asyncio breaker to reuse; the candidates are
synchronous or unmaintained, and this one is twenty lines with no timer.)
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import CircuitOpen

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    __slots__ = (
        "__weakref__",
        "_base_cooldown",
        "_clock",
        "_cooldown",
        "_failures",
        "_max_cooldown",
        "_open_until",
        "_threshold",
        "_trial_running",
    )

    def __init__(
        self,
        *,
        threshold: int = 5,
        cooldown: float = 0.5,
        max_cooldown: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._base_cooldown = self._cooldown = cooldown
        self._max_cooldown = max_cooldown
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0
        self._trial_running = False

    @property
    def state(self) -> int:
        """0 closed, 1 half-open (a trial is due or running), 2 open (calls refused)."""
        if self._failures < self._threshold:
            return 0
        if self._trial_running or self._clock() >= self._open_until:
            return 1
        return 2

    def before_call(self) -> bool:
        """Raise ``CircuitOpen`` while open; return True if this call is the trial."""
        if self._failures < self._threshold:
            return False
        if self._trial_running or self._clock() < self._open_until:
            raise CircuitOpen("Redis is failing; calls are refused for a short while")
        self._trial_running = True
        return True

    def record_success(self, trial: bool = False) -> None:
        if trial:
            self._trial_running = False
        if self._failures:
            self._failures = 0
            self._cooldown = self._base_cooldown

    def record_failure(self, trial: bool = False) -> None:
        if trial:
            self._trial_running = False
            self._cooldown = min(self._cooldown * 2, self._max_cooldown)
        self._failures += 1
        if self._failures >= self._threshold:
            self._open_until = self._clock() + self._cooldown

    def release_trial(self) -> None:
        """A trial call ended without telling success from failure (it was cancelled)."""
        self._trial_running = False
