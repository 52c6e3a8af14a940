"""``Cache.get_or_load_many``: one read for the hits, one loader call for the misses.

Every missing key goes through the same per-key path as ``get_or_load``
(single-flight in this process, the recompute lock across processes, waiting
for another process's load, storing, invalidation races), with one twist: its
loader is a *slot* in a shared bulk call. The bulk loader runs once every
key's path has either asked for its value or settled without it (it joined a
load already running here, or another process stored the value while it
waited); a key that asks later (its wait for another process ran out) is
loaded in a call of its own.

So a concurrent ``get_or_load`` of a key being bulk-loaded shares that load,
and a bulk load of a key another caller is loading shares theirs.

Keys the loader does not return are not stored, and are absent from the
result (``cache_missing=True`` stores and returns them as ``None``); a
``get_or_load`` that shared such a key's load gets ``None``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from ..errors import RedisUnavailable
from ._entry import MISS
from ._spec import ABSENT, Spec
from ._tags import MAGIC_TAGGED, UNKNOWN

if TYPE_CHECKING:
    from ..keys import KeyBuilder, KeyT
    from ._loading import Loader

__all__ = ["BulkLoad", "load_many"]

BulkLoader = Callable[[list[Any]], Awaitable[Mapping[Any, Any]]]


async def load_many(
    engine: Loader,
    keys: Iterable[KeyT],
    key_builder: KeyBuilder,
    loader: BulkLoader,
    spec: Spec,
    *,
    cache_missing: bool,
) -> dict[Any, Any]:
    """``Cache.get_or_load_many`` (see the module docs)."""
    wanted: dict[bytes, list[Any]] = {}
    for key in keys:
        wanted.setdefault(key_builder.key(key, "keys"), []).append(key)
    if not wanted:
        return {}
    rkeys = list(wanted)
    io = engine.io
    found: dict[Any, Any] = {}
    missing: list[bytes] = []
    try:
        if spec.tag_keys:  # the entries and the tags' versions, in one round trip
            raws = await io.executor.get_many([*rkeys, *spec.tag_keys], io.timeout)
            assert engine.tags is not None
            stamp = engine.tags.stamp(spec.tag_keys, raws[len(rkeys) :])
            spec = spec.with_stamp(UNKNOWN if stamp is None else stamp)
            raws = raws[: len(rkeys)]
            stamps: list[bytes | None] = [spec.stamp] * len(rkeys)
        else:
            raws = await io.executor.get_many(rkeys, io.timeout)
            stamps = [None] * len(rkeys)
            if engine.tags is not None and any(
                raw is not None and raw.startswith(MAGIC_TAGGED) for raw in raws
            ):
                stamps = await engine.tags.stamps_of(raws)
    except RedisUnavailable as exc:
        io.redis_failed("get_or_load_many", exc)
        raws, stamps = [None] * len(rkeys), [None] * len(rkeys)
    for rkey, raw, stamp in zip(rkeys, raws, stamps, strict=True):
        value = io.fresh_value(rkey, raw, stamp, spec.loads)
        if value is MISS:
            missing.append(rkey)
        else:
            for key in wanted[rkey]:
                found[key] = value
    if not missing:
        return found

    if spec.tag_keys:
        stamped = await engine.stamped(spec)  # once for every key, not once each
        if stamped is None:  # Redis failed: load, serve, store nothing
            loaded = await _call(loader, [wanted[rkey][0] for rkey in missing])
            for rkey in missing:
                first = wanted[rkey][0]
                if first in loaded or cache_missing:
                    for key in wanted[rkey]:
                        found[key] = loaded.get(first)
            return found
        spec = stamped
    bulk = BulkLoad(loader, cache_missing=cache_missing)
    store_spec = spec if cache_missing else spec.storing_only_found()
    for rkey in missing:
        if not engine.in_flight(rkey):
            bulk.expect(rkey)

    async def path(rkey: bytes) -> Any:
        try:
            return await engine.fill(rkey, bulk.slot(rkey, wanted[rkey][0]), store_spec)
        finally:
            bulk.settled(rkey)

    results = await asyncio.gather(*(path(rkey) for rkey in missing), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    for rkey, value in zip(missing, results, strict=True):
        if rkey not in bulk.absent:
            for key in wanted[rkey]:
                found[key] = value
    return found


async def _call(loader: BulkLoader, keys: list[Any]) -> Mapping[Any, Any]:
    found = await loader(keys)
    if not isinstance(found, Mapping):
        raise TypeError(
            "get_or_load_many's loader must return a mapping {key: value}, "
            f"not {type(found).__name__}"
        )
    return found


_PENDING: Final = 0
_ASKED: Final = 1
_DONE: Final = 2


class BulkLoad:
    """The misses of one ``get_or_load_many`` call, loaded by as few loader calls as can be."""

    def __init__(self, loader: BulkLoader, *, cache_missing: bool) -> None:
        self._loader = loader
        self._cache_missing = cache_missing
        self._state: dict[Hashable, int] = {}
        self._pending = 0
        self._asked: dict[Hashable, tuple[Any, asyncio.Future[Any]]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        #: Keys the loader did not return (left out of the result).
        self.absent: set[Hashable] = set()

    def expect(self, rkey: Hashable) -> None:
        """``rkey``'s path is about to start: the loader waits for it to ask or settle."""
        self._state[rkey] = _PENDING
        self._pending += 1

    def slot(self, rkey: Hashable, key: Any) -> Callable[[], Awaitable[Any]]:
        """The loader of ``key``'s path: its value from the shared call."""

        async def load() -> Any:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._asked[rkey] = (key, future)
            self._leave(rkey, _ASKED)
            return await future

        return load

    def settled(self, rkey: Hashable) -> None:
        """``rkey``'s path ended (with or without asking)."""
        self._leave(rkey, _DONE)

    def _leave(self, rkey: Hashable, state: int) -> None:
        if self._state.get(rkey) == _PENDING:
            self._pending -= 1
        if self._state.get(rkey) != _ASKED:
            self._state[rkey] = state
        if self._pending == 0 and self._asked:
            self._fire()

    def _fire(self) -> None:
        batch, self._asked = self._asked, {}
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

        def abandoned(_: asyncio.Future[Any]) -> None:
            # Nobody wants any of these values any more: stop the call.
            if all(future.cancelled() for _, future in batch.values()):
                task.cancel()

        for _, future in batch.values():
            future.add_done_callback(abandoned)

    async def _run(self, batch: dict[Hashable, tuple[Any, asyncio.Future[Any]]]) -> None:
        keys = [key for key, _ in batch.values()]
        try:
            found = await _call(self._loader, keys)
        except asyncio.CancelledError:
            for _, future in batch.values():
                future.cancel()
            raise
        except BaseException as exc:
            for _, future in batch.values():
                if not future.done():
                    future.set_exception(exc)
            return
        for rkey, (key, future) in batch.items():
            if future.done():
                continue
            if key in found:
                future.set_result(found[key])
            elif self._cache_missing:
                future.set_result(None)
            else:
                self.absent.add(rkey)
                future.set_result(ABSENT)
