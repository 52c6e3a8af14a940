"""How one call stores and reads its entry: time to live, ``cache_if``, tags, typed decoding.

A ``Spec`` travels with a load from ``Cache.get_or_load`` (or the decorator,
or ``get_or_load_many``) through the engine (``_loading``) down to the codec
(``_entry``), so every place that reads or writes the entry on the call's
behalf applies the same rules:

* ``ttl``: seconds, or ``ttl_of(value)`` deciding from the result;
* ``cache_if(value)``: false means the value is returned but not stored;
* ``stamp``: the tag versions the entry is written under and must still carry
  to be read (``_tags``); ``None`` for an untagged call;
* ``loads``: a typed decoder for the payload (``@cache.cached`` with a return
  annotation), or ``None`` for the cache's serializer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from .._validate import milliseconds, seconds

__all__ = ["ABSENT", "NO_STORE", "Spec", "TtlArg", "ttl_for"]

#: ``ttl=``: seconds, a ``timedelta``, or a callable of the result returning one of them.
TtlArg = Any

#: What ``Spec.ttl_for`` returns for a value that must not be stored.
NO_STORE: Final = -1.0

#: A bulk loader's answer for a key it did not return: never stored.
ABSENT: Any = object()


class Spec:
    """The rules of one call (see the module docs); immutable once made."""

    __slots__ = ("cache_if", "ensured", "loads", "stamp", "tag_keys", "ttl", "ttl_of")

    def __init__(
        self,
        ttl: float,
        *,
        ttl_of: Callable[[Any], Any] | None = None,
        cache_if: Callable[[Any], object] | None = None,
        tag_keys: tuple[bytes, ...] = (),
        stamp: bytes | None = None,
        loads: Callable[[bytes], Any] | None = None,
        ensured: bool = False,
    ) -> None:
        self.ttl = ttl
        self.ttl_of = ttl_of
        self.cache_if = cache_if
        self.tag_keys = tag_keys
        self.stamp = stamp
        self.loads = loads
        #: ``stamp`` holds versions made sure of just before loading (``TagIndex.ensure``).
        self.ensured = ensured

    def with_stamp(self, stamp: bytes | None, *, ensured: bool = False) -> Spec:
        """The same rules, writing (and reading) under the tag versions ``stamp``."""
        return Spec(
            self.ttl,
            ttl_of=self.ttl_of,
            cache_if=self.cache_if,
            tag_keys=self.tag_keys,
            stamp=stamp,
            loads=self.loads,
            ensured=ensured,
        )

    def storing_only_found(self) -> Spec:
        """The same rules, never storing ``ABSENT`` (a key a bulk loader did not return)."""
        user = self.cache_if

        def cache_if(value: Any) -> object:
            return value is not ABSENT and (user is None or user(value))

        return Spec(
            self.ttl,
            ttl_of=self.ttl_of,
            cache_if=cache_if,
            tag_keys=self.tag_keys,
            stamp=self.stamp,
            loads=self.loads,
            ensured=self.ensured,
        )

    def ttl_for(self, value: Any) -> float:
        """Seconds to keep ``value``, or ``NO_STORE`` if ``cache_if`` rejects it.

        A ``ttl`` callable returning ``None`` or ``0`` means: do not store.
        Raises ``TypeError``/``ValueError`` for a ttl that is not a duration.
        """
        if self.cache_if is not None and not self.cache_if(value):
            return NO_STORE
        if self.ttl_of is None:
            return self.ttl
        return ttl_for(self.ttl_of(value))


def ttl_for(result: object) -> float:
    """A ``ttl`` callable's answer as seconds (``NO_STORE`` for ``None`` or 0)."""
    if result is None:
        return NO_STORE
    value = seconds(result, "ttl", allow_zero=True)
    if value == 0:
        return NO_STORE
    milliseconds(value, "ttl")
    return value
