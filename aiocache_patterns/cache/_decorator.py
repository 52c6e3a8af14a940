"""The ``@cache.cached`` decorator: cache-aside for an async function."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from ..keys import KeyT, KeyTemplate

__all__ = ["CacheBackend", "CachedFunction"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class CacheBackend(Protocol):
    """What the decorator needs of a cache (a ``Cache``)."""

    async def get_or_load(
        self, key: KeyT, loader: Callable[[], Awaitable[T]], ttl: float | None = None
    ) -> T: ...

    async def delete(self, *keys: KeyT) -> int: ...


class CachedFunction(Generic[P, R]):
    """An async function whose results are cached; made by
    [`Cache.cached()`][aiocache_patterns.Cache.cached]."""

    __name__: str
    __qualname__: str
    __wrapped__: Callable[P, Awaitable[R]]

    def __init__(
        self,
        cache: CacheBackend,
        fn: Callable[P, Awaitable[R]],
        ttl: float | None,
        key: str | None,
        shared: bool = False,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"cached() decorates a function, not {type(fn).__name__}")
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"cached() needs an async function; {fn!r} is not one")
        self._cache = cache
        self._fn = fn
        self._ttl = ttl
        if not isinstance(shared, bool):
            raise TypeError("shared must be a bool")
        if shared and key is None:
            raise ValueError(
                "shared=True needs a key template: without one, keys are made from the "
                "function's name and are its own"
            )
        # The function's own keys start with its qualified name; shared ones are the
        # template alone, as written (the same key as cache.get("post:1")).
        scope = None if shared else f"{fn.__module__}.{fn.__qualname__}"
        self._key = KeyTemplate(fn, key, scope=scope)
        functools.update_wrapper(self, fn)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = self._key(args, kwargs)
        return await self._cache.get_or_load(key, lambda: self._fn(*args, **kwargs), self._ttl)

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the cached result for these arguments; True if there was one."""
        return await self._cache.delete(self._key(args, kwargs)) > 0

    def key_for(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key (before namespacing) for these arguments: pass it to
        ``cache.write_through`` / ``cache.set`` / ``cache.get`` to reach this
        function's entry."""
        return self._key(args, kwargs)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        # Support decorating methods: bind like a function would.
        if instance is None:
            return self
        return functools.partial(self.__call__, instance)
