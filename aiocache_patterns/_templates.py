"""Keys built from a function's arguments: ``"post:{post_id}"`` templates.

Shared by ``@cache.cached`` and ``@limiter.limited``. A template is checked
when the function is decorated (every field must name a parameter); without
one, the key is the function's qualified name and its arguments, which must
then be of simple types, so a key never depends on a ``repr`` that changes
from process to process.
"""

from __future__ import annotations

import inspect
import string
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["KeyTemplate"]

_SIMPLE = (str, bytes, int, float, bool, type(None))


class KeyTemplate:
    """Turns a call's arguments into a key string."""

    __slots__ = ("_defaults", "_name", "_names", "_plain", "_signature", "_template")

    def __init__(self, fn: Callable[..., Any], template: str | None) -> None:
        self._signature = inspect.signature(fn)
        self._name = f"{fn.__module__}.{fn.__qualname__}"
        if template is not None:
            _check(template, self._signature)
        self._template = template
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
        if self._template is not None:
            return self._template.format(**arguments)
        parts = [self._name]
        for name, value in arguments.items():
            if not isinstance(value, _SIMPLE):
                raise TypeError(
                    f"{self._name}: cannot build a key from argument {name!r} of type "
                    f"{type(value).__name__}; pass key='...' to the decorator"
                )
            parts.append(f"{name}={value!r}")
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


def _check(template: str, signature: inspect.Signature) -> None:
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
