"""Which commands may be sent again after their reply was lost.

A reply can be lost after the command reached Redis (the connection is reset
after the write, the server's answer never arrives): sending it again then
runs it twice. redis-py's default ``Retry`` does exactly that; the executor
owns the retries of its own commands instead, and resends a command whose
reply was lost only when running it twice has the same effect and the same
reply as running it once:

* commands that only read (``GET``, ``MGET``, ``EXISTS``, ``PTTL``, ...);
* ``SET key value`` with nothing but an expiry (``EX``/``PX``/``EXAT``/
  ``PXAT``/``KEEPTTL``): the same value again (``NX``, ``XX`` and ``GET``
  make the reply depend on the first run, so not those);
* scripts whose source says ``-- Resend: safe (<reason>)`` (see
  ``_scripts.py``).

Anything else (``DEL``, ``INCR``, ``PUBLISH``, every other script) is never
resent once it may have reached Redis: the call fails with
``RedisUnavailable`` instead, and was applied at most once. A command that
certainly never left (the connection could not be made, the connection was
seen closed before the write) or that Redis refused without running it
(``MOVED``, ``ASK``, ``TRYAGAIN``, ``NOSCRIPT``) is always safe to send again.
Callers can say better than the name: ``Executor.command(...,
resend_safe=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from redis.exceptions import ConnectionError as RedisConnectionError

from .scripts import Script

__all__ = ["ReplyLost", "is_resend_safe"]

_READS: Final = frozenset(
    {
        "BITCOUNT",
        "BITPOS",
        "DBSIZE",
        "ECHO",
        "EXISTS",
        "GET",
        "GETRANGE",
        "HEXISTS",
        "HGET",
        "HGETALL",
        "HKEYS",
        "HLEN",
        "HMGET",
        "HSTRLEN",
        "HVALS",
        "LINDEX",
        "LLEN",
        "LRANGE",
        "MGET",
        "PING",
        "PTTL",
        "SCARD",
        "SISMEMBER",
        "SMEMBERS",
        "SMISMEMBER",
        "STRLEN",
        "TIME",
        "TTL",
        "TYPE",
        "ZCARD",
        "ZCOUNT",
        "ZLEXCOUNT",
        "ZMSCORE",
        "ZRANGE",
        "ZRANGEBYLEX",
        "ZRANGEBYSCORE",
        "ZRANK",
        "ZREVRANGE",
        "ZREVRANGEBYLEX",
        "ZREVRANGEBYSCORE",
        "ZREVRANK",
        "ZSCORE",
    }
)
#: Options of SET after which a second run leaves the same value and gives the same reply.
_SET_EXPIRY: Final = frozenset({"EX", "PX", "EXAT", "PXAT"})
#: command name as sent (str or bytes, any case) -> its upper-case str, cached
_NAMES: dict[Any, str] = {}


class ReplyLost(RedisConnectionError):
    """The connection failed after the command may have reached Redis, and the command
    is not safe to send again: it was applied at most once (maybe once)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(
            "the connection failed after the command was sent, so it may have been "
            f"applied; it was not sent again ({type(cause).__name__}: {cause})"
        )
        self.__cause__ = cause


def _name(command: Any) -> str:
    name = _NAMES.get(command)
    if name is None:
        text = command.decode("ascii", "replace") if isinstance(command, bytes) else str(command)
        name = text.upper()
        if len(_NAMES) < 256:
            _NAMES[command] = name
    return name


def _plain_set(args: Sequence[Any]) -> bool:
    i = 3
    while i < len(args):
        option = _name(args[i])
        if option in _SET_EXPIRY:
            i += 2
        elif option == "KEEPTTL":
            i += 1
        else:
            return False
    return len(args) >= 3


def is_resend_safe(args: Sequence[Any], script: Script | None = None) -> bool:
    """Whether ``args`` may be sent again after its reply was lost (see the module docs)."""
    if script is not None:
        return script.resend_safe
    name = _name(args[0])
    if name in _READS:
        return True
    return name == "SET" and _plain_set(args)
