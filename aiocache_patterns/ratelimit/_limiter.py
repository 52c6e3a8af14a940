"""Rate limiting: five algorithms, one atomic script each, on the server's clock.

Every decision is one EVALSHA: the script reads the limiter's state, decides
with Redis's own ``TIME`` (so clients' clocks need not agree), and writes only
if the hit is allowed (rejected hits consume nothing). Several rates (say 10
per second and 1,000 per day) are checked together, all or nothing. Every key
expires on its own.

The result says what a client needs to behave: whether it was allowed, how
much is left, and how long to wait, relative, in seconds. See
docs/rate-limiting.md for choosing an algorithm.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, ParamSpec, TypeVar, get_args

from .._redis.eviction import RATE_LIMITER, warn_if_evictable
from .._redis.executor import executor_for
from .._redis.scripts import Script, load_script
from .._telemetry import TELEMETRY, AttrKey, attrs
from .._validate import Seconds, positive_int, seconds
from ..errors import RateLimitExceeded, RedisUnavailable
from ..keys import KeyBuilder, KeyT, KeyTemplate

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Algorithm", "Rate", "RateLimitResult", "RateLimiter", "RateLimiterStats"]

logger = logging.getLogger("aiocache_patterns.ratelimit")

P = ParamSpec("P")
R = TypeVar("R")

#: The algorithms, by name. See docs/rate-limiting.md for how to choose.
Algorithm = Literal["fixed_window", "sliding_window", "sliding_log", "token_bucket", "gcra"]

_ALGORITHMS: Final[tuple[str, ...]] = get_args(Algorithm)
_SCRIPTS: Final[dict[str, Script]] = {
    name: load_script(__package__, name, libs=("lib",)) for name in _ALGORITHMS
}
_MODES: Final = {"hit": b"hit", "peek": b"peek"}
_COSTS: Final = tuple(str(n).encode() for n in range(64))

_KEY_TAGS: Final = {
    "fixed_window": "fw",
    "sliding_window": "sw",
    "sliding_log": "sl",
    "token_bucket": "tb",
    "gcra": "gcra",
}


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` units per ``window`` seconds."""

    limit: int
    window: float

    def __post_init__(self) -> None:
        positive_int(self.limit, "limit")
        window = seconds(self.window, "window")
        if window < 0.001:
            raise ValueError(f"window must be at least 0.001 seconds, got {window!r}")
        object.__setattr__(self, "window", window)

    @property
    def window_us(self) -> int:
        """The window in whole microseconds (what the scripts use)."""
        return round(self.window * 1_000_000)


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    """The outcome of one decision. Durations are seconds from now."""

    #: Whether the hit was admitted (for ``peek``: whether a hit would be).
    allowed: bool
    #: The limit of the binding rate (the one with the least quota left).
    limit: int
    #: Quota left on the binding rate after this call.
    remaining: int
    #: Until the binding rate is back to its full quota.
    reset_after: float
    #: How long to wait before a retry can succeed; 0 if allowed.
    retry_after: float
    #: The binding rate's window, in seconds (for ``RateLimit-Policy``).
    window: float
    #: True when Redis could not be asked and ``fail_open`` decided.
    degraded: bool = False

    def headers(self, policy: str = "default") -> dict[str, str]:
        """HTTP headers: the IETF draft's ``RateLimit`` and ``RateLimit-Policy``,
        and ``Retry-After`` on a denial (draft-ietf-httpapi-ratelimit-headers).

        A degraded result (decided without Redis) carries no quota headers:
        only ``Retry-After`` when it is a denial.
        """
        if self.degraded:
            # Decided without Redis: the quota is unknown, so advertise none.
            return {} if self.allowed else {"Retry-After": str(_whole(self.retry_after))}
        name = policy.replace("\\", "\\\\").replace('"', '\\"')
        headers = {
            "RateLimit-Policy": f'"{name}";q={self.limit};w={_whole(self.window)}',
            "RateLimit": f'"{name}";r={self.remaining};t={_whole(self.reset_after)}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(_whole(self.retry_after))
        return headers


def _whole(value: float) -> int:
    """Whole seconds, rounded up (a client that waits this long is not early)."""
    whole = int(value)
    return whole + 1 if value > whole else whole


@dataclass(frozen=True, slots=True)
class RateLimiterStats:
    """Counters of one [`RateLimiter`][aiocache_patterns.RateLimiter] since construction."""

    allowed: int = 0
    denied: int = 0
    #: Hits decided without Redis, by ``fail_open`` (degraded; counted in allowed/denied
    #: too). Watch it: a security limit that fails open lets these through.
    errors: int = 0


class RateLimiter:
    """Limit how often each key may do something, across every process.

    >>> limiter = RateLimiter(redis, limit=100, window=60)  # doctest: +SKIP
    >>> result = await limiter.hit(f"user:{user_id}")
    >>> if not result.allowed:
    ...     raise HTTPException(429, "Too many requests", headers=result.headers())

    Args:
        redis: a ``redis.asyncio.Redis``, ``RedisCluster`` or ``FakeAsyncRedis``.
        limit: units allowed per ``window`` (one rate: ``limit`` per ``window``).
        window: the rate's window, in seconds.
        algorithm: ``"fixed_window"``, ``"sliding_window"`` (the default: a
            weighted two-window counter), ``"sliding_log"`` (exact),
            ``"token_bucket"`` or ``"gcra"``.
        rates: several rates checked together, all or nothing, instead of
            ``limit``/``window`` (e.g. ``[Rate(10, 1), Rate(1000, 86400)]``).
        namespace: prefix of the limiter's keys.
        fail_open: what a hit returns when Redis cannot be asked: allowed
            (``True``, the default) or denied. Either way it is counted and logged.
        timeout: deadline of each Redis operation.
        tracing: make an OpenTelemetry span per operation (``True``), none
            (``False``), or as ``configure_telemetry(tracing=...)`` says (``None``).
    """

    def __init__(
        self,
        redis: Any,
        limit: int | None = None,
        window: Seconds | None = None,
        *,
        algorithm: Algorithm = "sliding_window",
        rates: Sequence[Rate] | None = None,
        namespace: str = "rl",
        fail_open: bool = True,
        timeout: Seconds = 1.0,
        tracing: bool | None = None,
    ) -> None:
        self._executor = executor_for(redis)
        self._rates = _rates(limit, window, rates)
        if algorithm not in _ALGORITHMS:
            raise ValueError(
                f"algorithm must be one of {', '.join(_ALGORITHMS)}; got {algorithm!r}"
            )
        self._algorithm = algorithm
        self._script = _SCRIPTS[algorithm]
        self._keys = KeyBuilder(namespace)
        if not isinstance(fail_open, bool):
            raise TypeError("fail_open must be a bool")
        self._fail_open = fail_open
        self._timeout = seconds(timeout, "timeout")
        self._tag = _KEY_TAGS[algorithm]
        self._plan = _Plan(self._tag, self._rates)
        #: Plans of rates given per call (``hit(key, rates=...)``), built once each.
        self._plans: dict[tuple[Rate, ...], _Plan] = {self._rates: self._plan}
        self._counts = _Counts()
        self._namespace = namespace
        _observe(self, namespace, algorithm, fail_open, self._counts)
        TELEMETRY.traceable(self, tracing, _SPANS, redis, namespace)
        self._unlogged = 0
        self._last_error_log = -math.inf
        self._eviction_checked = False

    @property
    def rates(self) -> tuple[Rate, ...]:
        """The rates every hit is checked against."""
        return self._rates

    @property
    def algorithm(self) -> Algorithm:
        """The algorithm this limiter runs."""
        return self._algorithm

    @property
    def stats(self) -> RateLimiterStats:
        """Decisions since construction, as a frozen snapshot."""
        counts = self._counts
        return RateLimiterStats(counts.allowed, counts.denied, counts.errors)

    async def hit(
        self, key: KeyT, cost: int = 1, *, rates: Rate | Sequence[Rate] | None = None
    ) -> RateLimitResult:
        """Spend ``cost`` units of ``key``'s quota if every rate allows it.

        ``rates``: check these instead of the limiter's own, for this call (a
        limit that depends on the caller's plan, say). Each set of rates counts
        apart: a key's usage under ``Rate(10, 60)`` is not its usage under
        ``Rate(100, 60)``.
        """
        plan = self._plan if rates is None else self._plan_for(rates)
        return await self._decide(key, self._cost(cost, plan), "hit", plan)

    async def peek(
        self, key: KeyT, *, rates: Rate | Sequence[Rate] | None = None
    ) -> RateLimitResult:
        """What a hit of cost 1 would get now, consuming nothing."""
        plan = self._plan if rates is None else self._plan_for(rates)
        return await self._decide(key, 1, "peek", plan)

    async def reset(self, key: KeyT, *, rates: Rate | Sequence[Rate] | None = None) -> None:
        """Forget ``key``'s usage (under ``rates``, if given): its full quota is back."""
        plan = self._plan if rates is None else self._plan_for(rates)
        # UNLINK: a big sliding log is freed in the background, not while Redis waits.
        commands = [("UNLINK", k) for k in plan.redis_keys(self._keys.key(key))]
        for reply in await self._executor.commands(commands, self._timeout):
            if isinstance(reply, BaseException):
                raise reply

    def limited(
        self, key: str | Callable[..., KeyT], cost: int = 1
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Decorate an async function: each call is a hit; a denial raises
        [`RateLimitExceeded`][aiocache_patterns.errors.RateLimitExceeded] (carrying the result).

        ``key`` is a ``str.format`` template over the function's parameters
        (``"user:{user_id}"``) or a function of the same arguments returning the key.
        """
        cost = self._cost(cost, self._plan)

        def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            key_for = KeyTemplate(fn, key if isinstance(key, str) else None)

            async def limited_call(*args: P.args, **kwargs: P.kwargs) -> R:
                resolved = key_for(args, kwargs) if isinstance(key, str) else key(*args, **kwargs)
                result = await self.hit(resolved, cost)
                if not result.allowed:
                    raise RateLimitExceeded(result)
                return await fn(*args, **kwargs)

            return functools.wraps(fn)(limited_call)

        return decorate

    # -- internals ---------------------------------------------------------------

    @staticmethod
    def _cost(cost: object, plan: _Plan) -> int:
        value = positive_int(cost, "cost")
        if value > plan.max_cost:
            raise ValueError(
                f"cost {value} is over the limit {plan.max_cost}: it could never pass"
            )
        return value

    def _redis_keys(self, base: bytes) -> list[bytes]:
        return self._plan.redis_keys(base)

    def _plan_for(self, rates: object) -> _Plan:
        """The plan of rates given for one call; checked and built once per set of rates."""
        if isinstance(rates, Rate):
            rates = (rates,)
        elif isinstance(rates, list):
            rates = tuple(rates)
        plan = self._plans.get(rates) if isinstance(rates, tuple) else None
        if plan is None:
            checked = _rates(None, None, rates)  # type: ignore[arg-type]
            if len(self._plans) >= _MAX_PLANS:
                self._plans = {self._rates: self._plan}  # bounded, whatever callers pass
            plan = self._plans[checked] = _Plan(self._tag, checked)
        return plan

    async def _decide(self, key: KeyT, cost: int, mode: str, plan: _Plan) -> RateLimitResult:
        keys = plan.redis_keys(self._keys.key(key))
        args: list[Any] = [_MODES[mode], _COSTS[cost] if cost < len(_COSTS) else cost]
        args += plan.rate_args
        if not self._eviction_checked:
            self._eviction_checked = True
            warn_if_evictable(self._executor, RATE_LIMITER)
        try:
            reply = await self._executor.script(self._script, keys, args, self._timeout)
        except RedisUnavailable as exc:
            return self._degraded(cost, exc, plan.rates, counted=mode == "hit")
        allowed = int(reply[0]) == 1
        rate = plan.rates[int(reply[1]) - 1]
        if mode == "hit":
            if allowed:
                self._counts.allowed += 1
            else:
                self._counts.denied += 1
        return RateLimitResult(
            allowed=allowed,
            limit=rate.limit,
            remaining=int(reply[2]),
            reset_after=max(0, int(reply[3])) / 1_000_000,
            retry_after=0.0 if allowed else max(1, int(reply[4])) / 1_000_000,
            window=rate.window,
        )

    def _degraded(
        self, cost: int, exc: RedisUnavailable, rates: tuple[Rate, ...], *, counted: bool
    ) -> RateLimitResult:
        """A decision without Redis: ``fail_open`` decides. A hit is counted in
        ``stats.errors``; every such decision is logged, at most one line a second
        saying how many were made since the last line."""
        counts = self._counts
        if counted:
            counts.errors += 1
            if self._fail_open:
                counts.allowed += 1
            else:
                counts.denied += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._last_error_log >= 1.0:
            self._last_error_log = now
            policy = "ALLOWING hits (fail_open=True)" if self._fail_open else "denying hits"
            logger.warning(
                "rate limiter %r: Redis unavailable (%s); %s without it: "
                "%d decision(s) since the last message, %d hit(s) in all",
                self._namespace,
                exc,
                policy,
                self._unlogged,
                counts.errors,
            )
            self._unlogged = 0
        rate = min(rates, key=lambda r: r.limit)
        remaining = rate.limit - cost if self._fail_open else 0
        return RateLimitResult(
            allowed=self._fail_open,
            limit=rate.limit,
            remaining=remaining,
            reset_after=0.0,
            retry_after=0.0 if self._fail_open else 1.0,
            window=rate.window,
            degraded=True,
        )


#: Sets of per-call rates a limiter keeps built; past this, it starts over.
_MAX_PLANS: Final = 256


class _Plan:
    """A set of rates as the scripts take it: key suffixes and arguments, encoded once
    (redis-py would encode each of them again, in Python, on every hit)."""

    __slots__ = ("max_cost", "rate_args", "rates", "suffixes")

    def __init__(self, tag: str, rates: tuple[Rate, ...]) -> None:
        self.rates = rates
        self.suffixes = [f"{tag}:{r.limit}:{r.window_us}" for r in rates]
        self.rate_args: list[bytes] = [str(len(rates)).encode()]
        for rate in rates:
            self.rate_args += [str(rate.limit).encode(), str(rate.window_us).encode()]
        self.max_cost = min(r.limit for r in rates)

    def redis_keys(self, base: bytes) -> list[bytes]:
        return [KeyBuilder.derived(base, suffix) for suffix in self.suffixes]


#: The operations that make a span when tracing is on (method: span name).
_SPANS: Final = {name: f"ratelimit.{name}" for name in ("hit", "peek", "reset")}


class _Counts:
    """A limiter's decisions (hits only); ``errors`` were decided without Redis."""

    __slots__ = ("allowed", "denied", "errors")

    def __init__(self) -> None:
        self.allowed = self.denied = self.errors = 0


def _observe(
    owner: object, namespace: str, algorithm: str, fail_open: bool, counts: _Counts
) -> None:
    """Report ``counts`` as ``aiocache_patterns.ratelimit.decisions`` (read when collected):
    ``degraded`` are the decisions made without Redis, counted apart from the others."""
    allowed, denied, degraded = (
        attrs(namespace=namespace, algorithm=algorithm, result=r)
        for r in ("allowed", "denied", "degraded")
    )

    def read(c: _Counts) -> list[tuple[AttrKey, int]]:
        return [
            (allowed, c.allowed - (c.errors if fail_open else 0)),
            (denied, c.denied - (0 if fail_open else c.errors)),
            (degraded, c.errors),
        ]

    TELEMETRY.limiters.add(owner, counts, read)
    TELEMETRY.refresh()


def _rates(limit: object, window: object, rates: Iterable[Rate] | None) -> tuple[Rate, ...]:
    if rates is not None:
        if limit is not None or window is not None:
            raise TypeError("give either limit and window, or rates, not both")
        if isinstance(rates, Rate) or not hasattr(rates, "__iter__"):
            raise TypeError("rates must be a sequence of Rate")
        found = tuple(rates)
        if not found:
            raise ValueError("rates must not be empty")
        for rate in found:
            if not isinstance(rate, Rate):
                raise TypeError(f"rates must contain Rate objects, not {type(rate).__name__}")
        return found
    if limit is None or window is None:
        raise TypeError("limit and window are required (or rates=[Rate(limit, window), ...])")
    return (Rate(limit, window),)  # type: ignore[arg-type]
