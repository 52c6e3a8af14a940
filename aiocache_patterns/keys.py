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

``quote`` escapes an untrusted part of a key you build yourself, the way
``@cache.cached`` escapes its template's fields.

Keys built from a function's arguments, ``"post:{post_id}"`` templates
(``KeyTemplate``, used by ``@cache.cached`` and ``@limiter.limited``).
A template is checked
when the function is decorated (every field must name a parameter); without
one, the key is the function's qualified name and its arguments, which must
then be of simple types, so a key never depends on a ``repr`` that changes
from process to process.

A field's value can never produce another field split, nor another
template's key: each formatted value is escaped with
``quote`` (``%``, ``:`` and the first character of
the text that follows the field are percent-encoded), and two fields must be
separated by some text. So ``"{user}:{action}"`` gives ``alice%3Ax:y`` for
``("alice:x", "y")`` and ``alice:x%3Ay`` for ``("alice", "x:y")``, and a
``scope`` prefix (the decorated function's name, for the cache) is never
reached by a value, since a value never contains ``:``.
"""

from __future__ import annotations

import hashlib
import inspect
import string
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias

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


_SIMPLE = (str, bytes, int, float, bool, type(None))

#: One field of a template: (parameter name, ``None`` for a plain ``{name}`` or a
#: format string rendering the field from the arguments, text that follows it).
_Field = tuple[str, "str | None", str]


class KeyTemplate:
    """Turns a call's arguments into a key string.

    ``scope`` is put in front of every key, followed by ``:`` (``None``: no
    prefix with a template; the function's qualified name without one).
    """

    __slots__ = (
        "_also",
        "_defaults",
        "_fields",
        "_head",
        "_name",
        "_names",
        "_plain",
        "_scope",
        "_signature",
        "_single",
    )

    def __init__(
        self, fn: Callable[..., Any], template: str | None, *, scope: str | None = None
    ) -> None:
        self._signature = inspect.signature(fn)
        self._name = f"{fn.__module__}.{fn.__qualname__}"
        if scope is not None and not isinstance(scope, str):
            raise TypeError(f"scope must be a str or None, not {type(scope).__name__}")
        self._scope = quote(scope if scope is not None else self._name)
        head = "" if scope is None else self._scope + ":"
        self._fields: tuple[_Field, ...] | None = None
        self._also = ""
        if template is not None:
            head_text, self._fields, self._also = _compile(template, self._signature)
            head += head_text
        self._head = head
        #: The one plain field of the commonest template (``"post:{post_id}"``), if so.
        self._single = (
            self._fields[0][0]
            if self._fields is not None and len(self._fields) == 1 and self._fields[0][1] is None
            else None
        )
        params = self._signature.parameters.values()
        #: Only plain parameters (no *args, **kwargs, positional- or keyword-only):
        #: then arguments can be bound by name without Signature.bind, which is slow.
        self._plain = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
        self._names = tuple(p.name for p in params)
        self._defaults = {p.name: p.default for p in params if p.default is not p.empty}

    def __call__(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        arguments = self._fast_bind(args, kwargs) if self._plain else None
        if arguments is None:
            try:
                bound = self._signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{self._name}: {exc}") from None
            bound.apply_defaults()
            arguments = bound.arguments
        fields = self._fields
        if fields is not None:
            also = self._also
            name = self._single
            if name is not None:
                return self._head + quote(arguments[name], also) + fields[0][2]
            parts = [self._head]
            for name, render, tail in fields:
                value = arguments[name] if render is None else render.format_map(arguments)
                parts.append(quote(value, also))
                parts.append(tail)
            return "".join(parts)
        parts = [self._scope]
        for name, value in arguments.items():
            if not isinstance(value, _SIMPLE):
                raise TypeError(
                    f"{self._name}: cannot build a key from argument {name!r} of type "
                    f"{type(value).__name__}; pass key='...' to the decorator"
                )
            parts.append(f"{name}={quote(repr(value))}")
        return ":".join(parts)

    def _fast_bind(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The arguments by name, or None to let Signature.bind decide (and explain)."""
        names = self._names
        if len(args) > len(names):
            return None
        arguments = dict(self._defaults)
        arguments.update(zip(names, args, strict=False))  # args may be fewer
        for name in kwargs:
            if name not in arguments and name not in names:
                return None  # unknown keyword
            if name in names[: len(args)]:
                return None  # given twice
        arguments.update(kwargs)
        if len(arguments) != len(names):
            return None  # something missing
        return {name: arguments[name] for name in names}


def _compile(template: str, signature: inspect.Signature) -> tuple[str, tuple[_Field, ...], str]:
    """``(text before the first field, the fields, characters to escape in values)``."""
    if not isinstance(template, str):
        raise TypeError(f"key must be a str template, not {type(template).__name__}")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"key template {template!r} is malformed: {exc}") from None
    head = ""
    fields: list[list[Any]] = []
    for literal, field, spec, conversion in parsed:
        # str.format's own escapes ("{{") come back as single braces: keep them so.
        if fields:
            fields[-1][2] += literal
        else:
            head += literal
        if field is None:
            continue
        root = field.split(".", 1)[0].split("[", 1)[0]
        if not root or root.isdigit():
            raise ValueError(f"key template {template!r} must name parameters, e.g. {{post_id}}")
        if root not in signature.parameters:
            raise ValueError(f"key template {template!r} names {root!r}, which is not a parameter")
        if fields and not fields[-1][2]:
            raise ValueError(
                f"key template {template!r} puts two fields side by side; separate them "
                "with some text (e.g. ':'), or two different calls could share a key"
            )
        plain = field == root and not conversion and not spec
        render = None if plain else _field_format(field, conversion, spec)
        fields.append([root, render, ""])
    for _, _, tail in fields[:-1]:
        if tail.startswith("%"):
            raise ValueError(
                f"key template {template!r} has '%' right after a field; '%' starts the "
                "escapes of values, use another separator"
            )
    # Each value is escaped for the first character of the text after it, so the
    # value ends exactly where that text starts; the last field is followed by a
    # fixed suffix and needs nothing more.
    also = "".join(sorted({tail[0] for _, _, tail in fields[:-1]} - {"%", ":"}))
    compiled = tuple((root, render, tail) for root, render, tail in fields)
    return head, compiled, also


def _field_format(field: str, conversion: str | None, spec: str | None) -> str:
    text = "{" + field
    if conversion:
        text += "!" + conversion
    if spec:
        text += ":" + spec
    return text + "}"
