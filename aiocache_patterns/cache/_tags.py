"""Tag invalidation by versions: O(1) per tag, atomic per tag, every process, cluster-safe.

Every tag has a *version key* (``<namespace>:{#t:<tag>}``) holding a random
version. An entry written with tags carries, in its envelope, each tag's key
and the version it was written under (the *stamp*). A read is valid only if
every one of its tags still has that very version.

* ``invalidate_tags`` deletes the version keys: one DEL per tag, whatever the
  number of entries; nothing is written, so a full Redis cannot refuse it.
* A missing version key makes every entry that names it invalid: the next
  writer sets a new random version (``lua/tag_version.lua``), never an old
  one, so an expired, evicted or deleted version key can never make an old
  entry valid again. Version keys live at least as long as the entries
  written under them (their TTL is raised on every write, never lowered).
* The stamp is taken *before* the loader runs: a load that an invalidation
  overtakes stores an entry that is already invalid.
* A read that knows its tags (``get_or_load(..., tags=...)``, the decorator)
  reads the entry and the version keys together (one MGET, shared with
  concurrent callers; one pipeline per node on a cluster); a plain ``get`` of a
  tagged entry reads its versions in a second round trip.

The stamp's byte form is what the envelope stores (``section``): sorted tag
keys with their versions, so checking an entry is one bytes comparison.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final

from .._redis.scripts import load_script
from ..keys import key_bytes

if TYPE_CHECKING:
    from .._redis.executor import Executor

__all__ = ["MAGIC_TAGGED", "UNKNOWN", "TagIndex", "section", "section_end", "section_keys"]

#: The first two bytes of a tagged envelope (an untagged one starts ``0xAC 0x01``).
MAGIC_TAGGED: Final = b"\xac\x02"

#: The stamp of a reader with tags whose versions are unknown or missing: it matches no
#: entry (a section starts with a zero byte: at most 64 tags).
UNKNOWN: Final = b"\xff"

_VERSION: Final = load_script(__package__, "tag_version")
_COUNT: Final = struct.Struct(">H")
#: Where the section starts in a tagged envelope: after the magic and three f64 times.
_HEADER_SIZE: Final = 26
_MAX_TAGS: Final = 64
_MAX_TAG_BYTES: Final = 1024
#: Tuples of tags whose version keys are remembered, at most.
_MEMO: Final = 4096


def section(pairs: Sequence[tuple[bytes, bytes]]) -> bytes:
    """The stamp's stored form: ``count | (key length, key, version length, version)*``,
    ``pairs`` sorted by key."""
    parts = [_COUNT.pack(len(pairs))]
    for key, version in pairs:
        parts.append(_COUNT.pack(len(key)) + key + bytes((len(version),)) + version)
    return b"".join(parts)


def section_keys(data: bytes, at: int) -> tuple[list[bytes], int]:
    """The tag keys of the section starting at ``data[at]``, and where it ends.

    Raises ``ValueError`` for a truncated section.
    """
    (count,) = _COUNT.unpack_from(data, at)
    if count > _MAX_TAGS:
        raise ValueError("more tags than an entry may have")
    at += _COUNT.size
    keys = []
    for _ in range(count):
        (length,) = _COUNT.unpack_from(data, at)
        at += _COUNT.size
        key = data[at : at + length]
        at += length
        if len(key) != length or at >= len(data):
            raise ValueError("truncated tag section")
        at += 1 + data[at]
        keys.append(key)
    if at > len(data):
        raise ValueError("truncated tag section")
    return keys, at


def section_end(data: bytes, at: int) -> int:
    """Where the section starting at ``data[at]`` ends (``ValueError`` if truncated)."""
    return section_keys(data, at)[1]


class TagIndex:
    """One cache's tags: their version keys, reading and making versions, invalidating."""

    __slots__ = ("_executor", "_memo", "_prefix", "_stamps", "_timeout")

    def __init__(self, executor: Executor, namespace: bytes, timeout: float) -> None:
        self._executor = executor
        self._prefix = namespace + b":{#t:"
        self._timeout = timeout
        #: ``keys()`` of recent tuples of tags (a hit's tags are usually the same few).
        self._memo: dict[tuple[object, ...], tuple[bytes, ...]] = {}
        #: ``stamp()`` of recent (keys, versions): hits mostly see the same versions.
        self._stamps: dict[tuple[object, ...], bytes] = {}

    async def read(self, rkey: bytes, keys: tuple[bytes, ...]) -> list[bytes | None]:
        """GET the entry ``rkey`` and its tags' versions together: one MGET on a
        server, one pipeline per node on a cluster; batched with concurrent callers."""
        return await self._executor.get_many((rkey, *keys), self._timeout)

    def keys(self, tags: Iterable[object], argname: str = "tags") -> tuple[bytes, ...]:
        """The version keys of ``tags``, sorted and without repeats.

        A tag is a non-empty ``str`` or ``bytes`` of at most 1024 bytes; at most 64 tags.
        A user key never reaches a version key: a stored user key never starts
        with a single ``#`` (see ``keys.py``).
        """
        if type(tags) is tuple:
            known = self._memo.get(tags)
            if known is not None:
                return known
        if isinstance(tags, (str, bytes)):
            raise TypeError(f"{argname} must be an iterable of tags, not a single tag")
        given = tags
        found = set()
        for tag in tags:
            data = key_bytes(tag, argname)
            if len(data) > _MAX_TAG_BYTES:
                raise ValueError(f"a tag must be at most {_MAX_TAG_BYTES} bytes")
            found.add(self._prefix + data + b"}")
        if len(found) > _MAX_TAGS:
            raise ValueError(f"at most {_MAX_TAGS} tags per entry, got {len(found)}")
        keys = tuple(sorted(found))
        if type(given) is tuple:
            if len(self._memo) >= _MEMO:
                self._memo.clear()
            self._memo[given] = keys
        return keys

    def stamp(self, keys: Sequence[bytes], versions: Sequence[bytes | None]) -> bytes | None:
        """The stamp of these current versions; ``None`` if one is missing (the
        entries naming it are invalid, and a writer must make it first)."""
        memo_key = (*keys, *versions)
        known = self._stamps.get(memo_key)
        if known is not None:
            return known
        stamp = self._make_stamp(keys, versions)
        if stamp is not None:
            if len(self._stamps) >= _MEMO:
                self._stamps.clear()
            self._stamps[memo_key] = stamp
        return stamp

    @staticmethod
    def _make_stamp(keys: Sequence[bytes], versions: Sequence[bytes | None]) -> bytes | None:
        pairs = []
        for key, version in zip(keys, versions, strict=True):
            if not version:
                return None
            pairs.append((key, version))
        return section(pairs)

    async def versions(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """The current versions (``None`` where missing): one MGET, batched."""
        return await self._executor.get_many(keys, self._timeout)

    async def stamps_of(self, raws: Sequence[bytes | None]) -> list[bytes | None]:
        """For each stored entry, the stamp of its tags' current versions: ``None``
        for an untagged one (or none), ``UNKNOWN`` if a version is gone or the
        section is unreadable. One MGET for all of them (none if none is tagged)."""
        wanted: list[list[bytes] | None] = []
        keys: dict[bytes, None] = {}
        for raw in raws:
            tag_keys = None
            if raw is not None and raw.startswith(MAGIC_TAGGED):
                try:
                    tag_keys = section_keys(raw, _HEADER_SIZE)[0]
                except (ValueError, struct.error):
                    tag_keys = []
                if not all(key.startswith(self._prefix) for key in tag_keys):
                    tag_keys = []  # not this cache's version keys: never read them
                keys.update(dict.fromkeys(tag_keys))
            wanted.append(tag_keys)
        if not keys:
            return [None if tags is None else UNKNOWN for tags in wanted]
        ordered = list(keys)
        current = dict(zip(ordered, await self.versions(ordered), strict=True))
        stamps: list[bytes | None] = []
        for tag_keys in wanted:
            if tag_keys is None:
                stamps.append(None)
            elif not tag_keys:
                stamps.append(UNKNOWN)
            else:
                stamp = self.stamp(tag_keys, [current[k] for k in tag_keys])
                stamps.append(UNKNOWN if stamp is None else stamp)
        return stamps

    async def ensure(self, keys: Sequence[bytes], px: int, *, make: bool = True) -> bytes | None:
        """The stamp to write under: current versions, made where missing, each key
        kept alive for at least ``px`` ms. ``make=False`` only raises TTLs (and
        returns ``None`` if a version is missing). One pipeline per node."""
        arg = "" if not make else None
        replies = await asyncio.gather(
            *(
                self._executor.script(
                    _VERSION,
                    [key],
                    [secrets.token_hex(16) if arg is None else arg, px],
                    self._timeout,
                )
                for key in keys
            )
        )
        versions = [r.encode() if isinstance(r, str) else r for r in replies]
        return self.stamp(keys, versions)

    async def invalidate(self, keys: Sequence[bytes]) -> int:
        """Delete the version keys; how many existed. Errors raise (never fail open)."""
        if not keys:
            return 0
        replies = await self._executor.commands([("DEL", key) for key in keys], self._timeout)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return sum(int(reply) for reply in replies)
