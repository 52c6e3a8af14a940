"""Keys built from a function's arguments: ``"post:{post_id}"`` templates.

Shared by ``@cache.cached`` and ``@limiter.limited``. A template is checked
when the function is decorated (every field must name a parameter); without
one, the key is the function's qualified name and its arguments, which must
then be of simple types, so a key never depends on a ``repr`` that changes
from process to process.

A field's value can never produce another field split, nor another
template's key: each formatted value is escaped with
:func:`~aiocache_patterns.keys.quote` (``%``, ``:`` and the first character of
the text that follows the field are percent-encoded), and two fields must be
separated by some text. So ``"{user}:{action}"`` gives ``alice%3Ax:y`` for
``("alice:x", "y")`` and ``alice:x%3Ay`` for ``("alice", "x:y")``, and a
``scope`` prefix (the decorated function's name, for the cache) is never
reached by a value, since a value never contains ``:``.
"""

from __future__ import annotations

import inspect
import string
from collections.abc import Callable, Mapping
from typing import Any

from .keys import quote

__all__ = ["KeyTemplate"]

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
