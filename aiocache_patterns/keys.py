"""Building Redis keys: namespaces, Redis Cluster hash tags, binary safety.

A user key (``str`` or ``bytes``) becomes ``<namespace>:{<key>}``. The braces are
a Redis Cluster *hash tag*: every key the library derives from the same user key
(the cache entry, its recompute lock, its wake-up signal) lands in the same slot,
so one Lua script may touch them all on a cluster. The layout is the same on a
single server, so moving to a cluster needs no key migration.

Keys are binary-safe: ``bytes`` are used as they are, ``str`` is UTF-8 encoded.
A key longer than ``max_key_bytes`` is replaced by ``#h:`` and its SHA-256
digest, so a 1 MB key costs 64 bytes of Redis memory and never trips a limit.

Braces inside a user key are harmless (the tag always closes at the first ``}``
after the namespace's ``{``, and every derived key shares that prefix). Two
cases would leave the tag empty, which makes Redis hash the whole key and split
the family across slots: a namespace with braces is refused, and a user key
starting with ``}`` is stored hashed, like a long one.
"""

from __future__ import annotations

import hashlib
from typing import Final, TypeAlias

__all__ = ["DEFAULT_MAX_KEY_BYTES", "KeyBuilder", "KeyT", "key_bytes"]

KeyT: TypeAlias = "str | bytes"

#: User keys longer than this (in bytes, after UTF-8 encoding) are hashed.
DEFAULT_MAX_KEY_BYTES: Final = 512

_HASHED_PREFIX: Final = b"#h:"


def key_bytes(key: object, argname: str = "key") -> bytes:
    """Return ``key`` as bytes, or raise ``TypeError``/``ValueError`` naming ``argname``."""
    if isinstance(key, str):
        data = key.encode("utf-8", "surrogatepass")
    elif isinstance(key, (bytes, bytearray, memoryview)):
        data = bytes(key)
    else:
        raise TypeError(f"{argname} must be str or bytes, not {type(key).__name__}")
    if not data:
        raise ValueError(f"{argname} must not be empty")
    return data


def validate_namespace(namespace: object, argname: str = "namespace") -> bytes:
    """Check a namespace and return it encoded."""
    if not isinstance(namespace, str):
        raise TypeError(f"{argname} must be str, not {type(namespace).__name__}")
    if not namespace:
        raise ValueError(f"{argname} must not be empty")
    if "{" in namespace or "}" in namespace:
        raise ValueError(f"{argname} must not contain '{{' or '}}' (they form cluster hash tags)")
    return namespace.encode("utf-8")


class KeyBuilder:
    """Turns user keys into namespaced, hash-tagged Redis keys.

    >>> kb = KeyBuilder("blog")
    >>> kb.key("post:1")
    b'blog:{post:1}'
    >>> kb.derived(kb.key("post:1"), "lock")
    b'blog:{post:1}:lock'
    """

    __slots__ = ("_max", "_prefix")

    def __init__(self, namespace: str, *, max_key_bytes: int = DEFAULT_MAX_KEY_BYTES) -> None:
        ns = validate_namespace(namespace)
        if isinstance(max_key_bytes, bool) or not isinstance(max_key_bytes, int):
            raise TypeError("max_key_bytes must be an int")
        if max_key_bytes < 16:
            raise ValueError("max_key_bytes must be at least 16")
        self._prefix = ns + b":{"
        self._max = max_key_bytes

    def key(self, key: object, argname: str = "key") -> bytes:
        """The Redis key for a user key."""
        data = key_bytes(key, argname)
        if len(data) > self._max or data[0] == 0x7D:
            # Too long, or starting with "}" (which would make the hash tag empty).
            data = _HASHED_PREFIX + hashlib.sha256(data).hexdigest().encode("ascii")
        return self._prefix + data + b"}"

    @staticmethod
    def derived(redis_key: bytes, suffix: str) -> bytes:
        """A bookkeeping key in the same cluster slot as ``redis_key``."""
        return redis_key + b":" + suffix.encode("ascii")
