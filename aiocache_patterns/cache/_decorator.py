"""The ``@cache.cached`` decorator: cache-aside for an async function."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from ..keys import KeyT, KeyTemplate

if typing.TYPE_CHECKING:
    from ._spec import Spec

__all__ = ["CacheBackend", "CachedFunction"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class CacheBackend(Protocol):
    """What the decorator needs of a cache (a ``Cache``)."""

    async def _get_or_load_spec(
        self, key: KeyT, loader: Callable[[], Awaitable[T]], spec: Spec
    ) -> T: ...

    def _spec(
        self,
        ttl: object,
        tags: Iterable[object] = (),
        cache_if: Callable[[Any], object] | None = None,
        loads: Callable[[bytes], Any] | None = None,
    ) -> Spec: ...

    def _typed_loads(self, tp: Any) -> Callable[[bytes], Any] | None: ...

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
        ttl: object,
        key: str | None,
        shared: bool = False,
        *,
        tags: Iterable[str] = (),
        cache_if: Callable[[Any], object] | None = None,
        typed: bool = True,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"cached() decorates a function, not {type(fn).__name__}")
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"cached() needs an async function; {fn!r} is not one")
        self._cache = cache
        self._fn = fn
        self._ttl = ttl
        self._cache_if = cache_if
        if not isinstance(shared, bool):
            raise TypeError("shared must be a bool")
        if not isinstance(typed, bool):
            raise TypeError("typed must be a bool")
        if shared and key is None:
            raise ValueError(
                "shared=True needs a key template: without one, keys are made from the "
                "function's name and are its own"
            )
        # The function's own keys start with its qualified name; shared ones are the
        # template alone, as written (the same key as cache.get("post:1")).
        scope = None if shared else f"{fn.__module__}.{fn.__qualname__}"
        self._key = KeyTemplate(fn, key, scope=scope)
        if isinstance(tags, (str, bytes)):
            raise TypeError("tags must be an iterable of tag templates, not a single tag")
        for tag in tags:
            if not isinstance(tag, str):
                raise TypeError(f"a tag template must be a str, not {type(tag).__name__}")
        #: Tag templates over the arguments, like ``key`` (``"user:{author_id}"``);
        #: a tag without fields is its text, formatted once here.
        self._tags = tuple(
            KeyTemplate(fn, tag, scope=None) if "{" in tag or "}" in tag else tag for tag in tags
        )
        self._typed = typed
        #: The rules of recent calls, by their tags.
        self._tagged: dict[tuple[str, ...], Spec] = {}
        # Checks ttl, cache_if and the templates' tags now, at decoration.
        self._spec: Spec | None = None
        cache._spec(ttl, (), cache_if)
        functools.update_wrapper(self, fn)

    def _static_spec(self) -> Spec:
        """The rules every call shares (the return type is read at the first call,
        once forward references can be resolved)."""
        spec = self._spec
        if spec is None:
            loads = self._cache._typed_loads(_return_type(self._fn)) if self._typed else None
            spec = self._spec = self._cache._spec(self._ttl, (), self._cache_if, loads)
        return spec

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = self._key(args, kwargs)
        spec = self._spec or self._static_spec()
        if self._tags:
            tags = tuple(
                [tag if isinstance(tag, str) else tag(args, kwargs) for tag in self._tags]
            )
            tagged = self._tagged.get(tags)
            if tagged is None:
                tagged = self._cache._spec(self._ttl, tags, self._cache_if, spec.loads)
                if len(self._tagged) >= 4096:
                    self._tagged.clear()
                self._tagged[tags] = tagged
            spec = tagged
        return await self._cache._get_or_load_spec(key, lambda: self._fn(*args, **kwargs), spec)

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the cached result for these arguments; True if there was one."""
        return await self._cache.delete(self._key(args, kwargs)) > 0

    def key_for(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key (before namespacing) for these arguments: pass it to
        ``cache.write_through`` / ``cache.set`` / ``cache.get`` to reach this
        function's entry."""
        return self._key(args, kwargs)

    def tags_for(self, *args: P.args, **kwargs: P.kwargs) -> list[str]:
        """The tags these arguments' entry is stored with (pass them to ``invalidate_tags``)."""
        return [tag if isinstance(tag, str) else tag(args, kwargs) for tag in self._tags]

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        # Support decorating methods: bind like a function would.
        if instance is None:
            return self
        return functools.partial(self.__call__, instance)


def _return_type(fn: Callable[..., Any]) -> Any:
    """The declared return type of ``fn``; ``Any`` if none or not resolvable."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an unresolvable forward reference: no typing, as before
        return Any
    return hints.get("return", Any)
