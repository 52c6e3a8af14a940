"""The ``@cache.cached`` decorator: cache-aside for an async function."""

from __future__ import annotations

import functools
import inspect
import string
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

if TYPE_CHECKING:
    from .cache import Cache

__all__ = ["CachedFunction"]

P = ParamSpec("P")
R = TypeVar("R")

_SIMPLE = (str, bytes, int, float, bool, type(None))


class CachedFunction(Generic[P, R]):
    """An async function whose results are cached; made by :meth:`Cache.cached`."""

    __name__: str
    __qualname__: str
    __wrapped__: Callable[P, Awaitable[R]]

    def __init__(
        self,
        cache: Cache,
        fn: Callable[P, Awaitable[R]],
        ttl: float | None,
        key: str | None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"cached() decorates a function, not {type(fn).__name__}")
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"cached() needs an async function; {fn!r} is not one")
        self._cache = cache
        self._fn = fn
        self._ttl = ttl
        self._signature = inspect.signature(fn)
        if key is not None:
            _check_template(key, self._signature)
        self._template = key
        self._name = f"{fn.__module__}.{fn.__qualname__}"
        functools.update_wrapper(self, fn)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = self.key_for(*args, **kwargs)
        return await self._cache.get_or_load(key, lambda: self._fn(*args, **kwargs), self._ttl)

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the cached result for these arguments; True if there was one."""
        return await self._cache.delete(self.key_for(*args, **kwargs)) > 0

    def key_for(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key (before namespacing) for these arguments."""
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self._name}: {exc}") from None
        bound.apply_defaults()
        if self._template is not None:
            return self._template.format(**bound.arguments)
        parts = [self._name]
        for name, value in bound.arguments.items():
            if not isinstance(value, _SIMPLE):
                raise TypeError(
                    f"{self._name}: cannot build a cache key from argument {name!r} of type "
                    f"{type(value).__name__}; pass key='...' to cached()"
                )
            parts.append(f"{name}={value!r}")
        return ":".join(parts)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        # Support decorating methods: bind like a function would.
        if instance is None:
            return self
        return functools.partial(self.__call__, instance)


def _check_template(template: str, signature: inspect.Signature) -> None:
    if not isinstance(template, str):
        raise TypeError(f"key must be a str template, not {type(template).__name__}")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"key template {template!r} is malformed: {exc}") from None
    for field in fields:
        root = field.split(".", 1)[0].split("[", 1)[0]
        if not root or root.isdigit():
            raise ValueError(f"key template {template!r} must name parameters, e.g. {{post_id}}")
        if root not in signature.parameters:
            raise ValueError(f"key template {template!r} names {root!r}, which is not a parameter")
