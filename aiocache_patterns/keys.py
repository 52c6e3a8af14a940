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

A stored key is one of three disjoint forms, so no user key can reach another's
entry: a key that does not start with ``#`` is stored as it is; one that starts
with ``#`` is stored with one more ``#`` in front (``#x`` -> ``##x``); a hashed
key is ``#h:`` and a digest. ``#h:...`` given as a key is stored as ``##h:...``,
never as the hashed form of some other key.

:func:`quote` escapes an untrusted part of a key you build yourself, the way
``@cache.cached`` escapes its template's fields.
"""

from __future__ import annotations

import hashlib
from typing import Final, TypeAlias

__all__ = ["DEFAULT_MAX_KEY_BYTES", "KeyBuilder", "KeyT", "key_bytes", "quote"]

KeyT: TypeAlias = "str | bytes"

#: User keys longer than this (in bytes, after UTF-8 encoding) are hashed.
DEFAULT_MAX_KEY_BYTES: Final = 512

#: Stored keys that start with ``#`` are the library's: ``#h:`` + digest for a hashed
#: key, ``#`` + the user key for a user key that itself starts with ``#``.
_HASHED_PREFIX: Final = b"#h:"
_RESERVED: Final = 0x23  # "#"
_EMPTY_TAG: Final = 0x7D  # "}"


def quote(part: object, also: str = "") -> str:
    """``part`` as a string that cannot contain ``:`` (nor any character of ``also``).

    Percent-encodes ``%``, ``:`` and the characters of ``also`` (their UTF-8
    bytes, ``%3A`` for ``:``); everything else is kept, so keys stay readable in
    ``redis-cli``. Use it for an untrusted part of a key you build yourself:
    ``cache.get(f"post:{quote(slug)}:comments")`` can then never be reached
    by a slug like ``"x:comments"``. Non-strings are formatted with ``format()``.
    """
    text = part if type(part) is str else format(part)
    for char in ("%", ":", *also):
        if char in text:
            return text.translate(_escape_table(also))
    return text


_TABLES: dict[str, dict[int, str]] = {}


def _escape_table(also: str) -> dict[int, str]:
    table = _TABLES.get(also)
    if table is None:
        table = {
            ord(c): "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
            for c in ("%", ":", *also)
        }
        if len(_TABLES) < 256:
            _TABLES[also] = table
    return table


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
        first = data[0]
        if len(data) > self._max or first == _EMPTY_TAG:
            # Too long, or starting with "}" (which would make the hash tag empty).
            data = _HASHED_PREFIX + hashlib.sha256(data).hexdigest().encode("ascii")
        elif first == _RESERVED:
            data = b"#" + data  # never the hashed form, nor another escaped key
        return self._prefix + data + b"}"

    @staticmethod
    def derived(redis_key: bytes, suffix: str) -> bytes:
        """A bookkeeping key in the same cluster slot as ``redis_key``."""
        return redis_key + b":" + suffix.encode("ascii")
