"""How values become bytes in Redis, and back.

``JsonSerializer`` is the default: fast (the C-accelerated ``json``
module), readable from ``redis-cli``, and exact for ``dict`` (``str`` keys),
``list``, ``str``, ``int`` (any size), ``float`` (finite; ``repr`` round-trips),
``bool`` and ``None``. JSON has no tuple, so a tuple comes back as a list; a
value JSON cannot represent (a ``set``, ``nan``, an arbitrary object) raises
``SerializationError`` when it is stored, never
later when it is read.

It also stores the values application code returns, as readable JSON (via
``msgspec.to_builtins``): ``datetime``, ``date``, ``time`` (ISO 8601),
``UUID``, ``Decimal`` (as strings), ``Enum`` (its value), dataclasses,
``msgspec.Struct`` and pydantic models (``model_dump(mode="json")``), and
containers of them. Read back untyped, they are that JSON (a ``datetime`` is
its ISO string); ``loads_as(tp)`` decodes to a type instead (``msgspec``'s
typed JSON decoding, or pydantic's ``TypeAdapter`` for types with pydantic
models), which is what ``@cache.cached`` does with the function's return annotation.

``MsgpackSerializer`` is smaller and faster for big values (``msgpack``
extra). ``PickleSerializer`` round-trips any picklable object, and is
never the default: loading a pickle runs code, so every payload is signed with
HMAC-SHA256 under a secret key and checked in constant time before it is
unpickled; an unsigned or forged payload is refused.

A serializer may also be a ``BoundSerializer``: then ``Cache`` hands it
the entry's *context* (its Redis key, namespace included, and the envelope's
header) and it authenticates the payload together with that context.
``PickleSerializer`` is one: a signed entry copied under another key, or
with its freshness deadline rewritten, is refused like a forged one.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import pickle
import struct
from collections.abc import Callable
from typing import Any, Final, Protocol, runtime_checkable

import msgspec
import msgspec.inspect

from .errors import SerializationError

__all__ = [
    "BoundSerializer",
    "JsonSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "Serializer",
]


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back. Raise ``SerializationError`` on failure."""

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode bytes made by ``dumps()``."""
        ...


@runtime_checkable
class BoundSerializer(Protocol):
    """A [`Serializer`][aiocache_patterns.Serializer] whose payloads are bound to their context.

    ``context`` is opaque bytes naming where the payload lives (``Cache``
    passes the entry's Redis key and its envelope header); ``loads_bound``
    must refuse, with ``SerializationError``, a payload made for any other
    context.
    """

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``, bound to nothing."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode bytes made by ``dumps()``."""
        ...

    def dumps_bound(self, value: Any, context: bytes) -> bytes:
        """Encode ``value`` for ``context`` only."""
        ...

    def loads_bound(self, data: bytes, context: bytes) -> Any:
        """Decode bytes made by ``dumps_bound()`` for this very ``context``."""
        ...


class JsonSerializer:
    """Compact UTF-8 JSON (the default)."""

    __slots__ = ("_decoder", "_encoder")

    def __init__(self) -> None:
        self._encoder = json.JSONEncoder(
            ensure_ascii=False,
            allow_nan=False,
            separators=(",", ":"),
            check_circular=True,
            default=_to_json,
        )
        self._decoder = json.JSONDecoder()

    def dumps(self, value: Any) -> bytes:
        """Compact UTF-8 JSON; ``SerializationError`` for what JSON cannot hold."""
        try:
            return self._encoder.encode(value).encode("utf-8", "surrogatepass")
        except (TypeError, ValueError, RecursionError) as exc:
            raise SerializationError(f"value is not JSON-serializable: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        """The value; ``SerializationError`` if ``data`` is not UTF-8 JSON."""
        try:
            return self._decoder.decode(data.decode("utf-8", "surrogatepass"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise SerializationError(f"stored bytes are not valid JSON: {exc}") from exc

    def loads_as(self, tp: Any) -> Callable[[bytes], Any] | None:
        """A decoder of this serializer's bytes into ``tp`` (``list[Post]``,
        ``datetime``, a pydantic model...), or None if no library here can decode to it.

        ``msgspec``'s typed JSON decoder where it supports the type; otherwise
        pydantic's ``TypeAdapter.validate_json`` when pydantic is installed.
        Bytes that do not fit the type raise ``SerializationError``.
        """
        return typed_json_decoder(tp)


def _to_json(value: Any) -> Any:
    """``json``'s ``default``: what the stdlib encoder cannot hold, as JSON builtins."""
    if isinstance(value, (set, frozenset, bytes, bytearray, memoryview)):
        raise TypeError(f"a {type(value).__name__} has no JSON form")
    if isinstance(value, enum.Enum):
        return value.value
    dump = getattr(value, "model_dump", None)
    if callable(dump) and isinstance(value, type) is False:  # a pydantic model
        return dump(mode="json")
    try:
        return msgspec.to_builtins(value, enc_hook=_no_hook, str_keys=True)
    except (TypeError, msgspec.EncodeError) as exc:
        raise TypeError(f"{type(value).__name__} is not JSON-serializable") from exc


def _no_hook(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _has_custom_type(tp: Any) -> bool:
    """Whether ``tp`` names a type msgspec cannot decode itself (a pydantic model...)."""
    try:
        root = msgspec.inspect.type_info(tp)
    except (TypeError, ValueError):
        return True
    seen: set[int] = set()
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, msgspec.inspect.CustomType):
            return True
        if isinstance(node, (list, tuple)):
            stack.extend(node)
        elif isinstance(node, (msgspec.inspect.Type, msgspec.inspect.Field)):
            stack.extend(getattr(node, name) for name in node.__struct_fields__)
    return False


def typed_json_decoder(tp: Any) -> Callable[[bytes], Any] | None:
    """Decode JSON bytes into ``tp`` (see ``JsonSerializer.loads_as``); None if unsupported."""
    try:
        decoder: Any = None if _has_custom_type(tp) else msgspec.json.Decoder(tp)
    except TypeError:
        decoder = None
    if decoder is not None:
        decode = decoder.decode
        errors: tuple[type[Exception], ...] = (msgspec.DecodeError,)

        def loads(data: bytes) -> Any:
            try:
                return decode(data)
            except errors as exc:
                raise SerializationError(f"stored JSON does not fit {tp!r}: {exc}") from exc

        return loads
    try:
        import pydantic
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    try:
        adapter: Any = pydantic.TypeAdapter(tp)
    except Exception:  # pydantic refuses the type (PydanticSchemaGenerationError and kin)
        return None
    validate = adapter.validate_json
    invalid = pydantic.ValidationError

    def loads_pydantic(data: bytes) -> Any:
        try:
            return validate(data)
        except (invalid, ValueError) as exc:
            raise SerializationError(f"stored JSON does not fit {tp!r}: {exc}") from exc

    return loads_pydantic


class MsgpackSerializer:
    """MessagePack, via the ``msgpack`` package (``pip install aiocache-patterns[msgpack]``)."""

    __slots__ = ("_msgpack",)

    def __init__(self) -> None:
        try:
            import msgpack
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "MsgpackSerializer needs the msgpack package: "
                "pip install 'aiocache-patterns[msgpack]'"
            ) from exc
        self._msgpack: Any = msgpack

    def dumps(self, value: Any) -> bytes:
        """MessagePack bytes; ``SerializationError`` for what msgpack cannot hold."""
        try:
            data: bytes = self._msgpack.packb(value, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"value is not msgpack-serializable: {exc}") from exc
        return data

    def loads(self, data: bytes) -> Any:
        """The value; ``SerializationError`` if ``data`` is not valid MessagePack."""
        try:
            return self._msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises a zoo of ValueError subclasses
            raise SerializationError(f"stored bytes are not valid msgpack: {exc}") from exc


_SIG: Final = hashlib.sha256().digest_size
#: Starts what a bound signature covers, so it never equals an unbound one's input.
_BOUND_DOMAIN: Final = b"aiocache_patterns/bound-pickle/1\x00"
_LENGTH: Final = struct.Struct(">Q")


class PickleSerializer:
    """Pickle, signed with HMAC-SHA256. Only for data written by processes you trust.

    ``secret`` must be at least 32 bytes (``secrets.token_bytes(32)``), shared by
    every process that reads or writes the cache, and kept out of the data.
    Payloads are ``signature || pickle``; the signature is checked with
    ``hmac.compare_digest()`` before ``pickle.loads`` ever sees the bytes.

    In a ``Cache`` the signature also covers the entry's context (its Redis
    key, namespace included, and the envelope header with its creation time
    and freshness deadline): ``dumps_bound()`` / ``loads_bound()``.
    """

    __slots__ = ("_protocol", "_secret")

    def __init__(self, secret: bytes, *, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        if not isinstance(secret, bytes):
            raise TypeError(f"secret must be bytes, not {type(secret).__name__}")
        if len(secret) < 32:
            raise ValueError("secret must be at least 32 bytes; unsigned pickle is refused")
        self._secret = secret
        self._protocol = protocol

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()

    def _sign_bound(self, context: bytes, payload: bytes) -> bytes:
        mac = hmac.new(self._secret, _BOUND_DOMAIN, hashlib.sha256)
        mac.update(_LENGTH.pack(len(context)))
        mac.update(context)
        mac.update(payload)
        return mac.digest()

    def _pickle(self, value: Any) -> bytes:
        try:
            return pickle.dumps(value, protocol=self._protocol)
        except Exception as exc:
            raise SerializationError(f"value is not picklable: {exc}") from exc

    def dumps(self, value: Any) -> bytes:
        """``signature || pickle``, signed with HMAC-SHA256 under the secret."""
        payload = self._pickle(value)
        return self._sign(payload) + payload

    def loads(self, data: bytes) -> Any:
        """Check the signature in constant time, then unpickle; refuse anything else."""
        signature, payload = data[:_SIG], data[_SIG:]
        if len(signature) != _SIG or not hmac.compare_digest(signature, self._sign(payload)):
            raise SerializationError("pickle payload has a bad signature; refused")
        return _unpickle(payload)

    def dumps_bound(self, value: Any, context: bytes) -> bytes:
        """``signature || pickle``, the signature covering ``context`` too."""
        payload = self._pickle(value)
        return self._sign_bound(context, payload) + payload

    def loads_bound(self, data: bytes, context: bytes) -> Any:
        """Unpickle only if the signature holds for this payload in this ``context``."""
        signature, payload = data[:_SIG], data[_SIG:]
        if len(signature) != _SIG or not hmac.compare_digest(
            signature, self._sign_bound(context, payload)
        ):
            raise SerializationError(
                "pickle payload has a bad signature for this key and header; refused"
            )
        return _unpickle(payload)


def _unpickle(payload: bytes) -> Any:
    try:
        return pickle.loads(payload)
    except Exception as exc:
        raise SerializationError(f"signed pickle payload failed to load: {exc}") from exc
