"""Argument checks shared by every public constructor and method.

Each raises ``TypeError`` or ``ValueError`` whose message starts with the
argument's name, so a user can tell at a glance what to fix.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

__all__ = ["Seconds", "callable_arg", "positive_int", "seconds", "seconds_or_none"]

Seconds = float | timedelta


def seconds(value: object, argname: str, *, allow_zero: bool = False) -> float:
    """A duration in seconds: a finite, positive real number or a ``timedelta``."""
    if isinstance(value, timedelta):
        number = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{argname} must be a number of seconds or a timedelta, not {type(value).__name__}"
        )
    else:
        number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{argname} must be finite, got {number!r}")
    if number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{argname} must be {bound}, got {number!r}")
    return number


def seconds_or_none(value: object, argname: str, *, allow_zero: bool = False) -> float | None:
    """Like ``seconds``, with ``None`` passed through."""
    return None if value is None else seconds(value, argname, allow_zero=allow_zero)


def milliseconds(value: float, argname: str) -> int:
    """Whole milliseconds for a PX/PEXPIRE argument, rounded down, at least 1."""
    ms = int(value * 1000)
    if ms < 1:
        raise ValueError(f"{argname} must be at least 0.001 seconds, got {value!r}")
    return ms


def positive_int(value: object, argname: str, *, allow_zero: bool = False) -> int:
    """A positive ``int`` (``bool`` is refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argname} must be an int, not {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{argname} must be {bound}, got {value!r}")
    return value


def callable_arg(value: object, argname: str) -> Callable[..., Any]:
    """Refuse anything that cannot be called."""
    if not callable(value):
        raise TypeError(f"{argname} must be callable, not {type(value).__name__}")
    return value
