"""The client libraries the library accepts, and their exceptions, told apart once.

redis-py (``redis.asyncio.Redis``, ``RedisCluster``, a Sentinel ``master_for()``
client, ``fakeredis.FakeAsyncRedis``) and valkey-py (``valkey.asyncio.Valkey``,
``ValkeyCluster``: a fork of redis-py) share their API but not their exception
classes: valkey's ``ConnectionError`` is not redis-py's, so an ``except`` that
names redis-py's classes lets valkey's through (a ``get_or_load`` would raise it
instead of failing open). Here each kind of error the executor tells apart is a
tuple of the classes of every installed client library, so one ``except`` (or
``isinstance``) catches either; valkey-py is imported only when it is installed.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Final

from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster

__all__ = [
    "CLIENT_ERRORS",
    "CLUSTER_CLIENTS",
    "CONNECTION_ERRORS",
    "NO_PERMISSION_ERRORS",
    "NO_SCRIPT_ERRORS",
    "OUT_OF_MEMORY_ERRORS",
    "RESPONSE_ERRORS",
    "TIMEOUT_ERRORS",
    "UNAVAILABLE_ERRORS",
    "is_cluster_client",
]


def _valkey_errors() -> ModuleType | None:
    try:
        from valkey import exceptions
    except ImportError:
        return None
    return exceptions


_VALKEY: Final = _valkey_errors()


def _classes(redis_name: str, valkey_name: str | None = None) -> tuple[type[BaseException], ...]:
    """redis-py's exception class ``redis_name`` and valkey-py's counterpart."""
    found: list[type[BaseException]] = [getattr(redis_errors, redis_name)]
    if _VALKEY is not None:
        other = getattr(_VALKEY, valkey_name or redis_name, None)
        if isinstance(other, type) and issubclass(other, BaseException):
            found.append(other)
    return tuple(found)


def _cluster_clients() -> tuple[type[Any], ...]:
    try:
        from valkey.asyncio.cluster import ValkeyCluster
    except ImportError:
        return (RedisCluster,)
    return (RedisCluster, ValkeyCluster)


#: Any error a client library raises on purpose (redis-py's ``RedisError``, valkey's
#: ``ValkeyError``).
CLIENT_ERRORS: Final = _classes("RedisError", "ValkeyError")
#: A connection that could not be made or failed (includes ``MaxConnectionsError``,
#: ``BusyLoadingError``, ``AuthenticationError``).
CONNECTION_ERRORS: Final = _classes("ConnectionError")
TIMEOUT_ERRORS: Final = _classes("TimeoutError")
#: An error reply (``ResponseError`` and its subclasses).
RESPONSE_ERRORS: Final = _classes("ResponseError")
NO_SCRIPT_ERRORS: Final = _classes("NoScriptError")
OUT_OF_MEMORY_ERRORS: Final = _classes("OutOfMemoryError")
NO_PERMISSION_ERRORS: Final = _classes("NoPermissionError")

#: What makes Redis unavailable for a call (rather than a command's own error).
UNAVAILABLE_ERRORS: Final[tuple[type[BaseException], ...]] = (
    *CONNECTION_ERRORS,
    *TIMEOUT_ERRORS,
    *_classes("ClusterDownError"),
    *_classes("TryAgainError"),
    *_classes("MasterDownError"),
    *_classes("RedisClusterException", "ValkeyClusterException"),
    *_classes("ReadOnlyError"),
    OSError,  # includes the built-in ConnectionError and TimeoutError
)

#: The cluster client classes (``RedisCluster``, and ``ValkeyCluster`` when installed).
CLUSTER_CLIENTS: Final = _cluster_clients()


def is_cluster_client(client: Any) -> bool:
    """Whether ``client`` is a cluster client (keys of one MGET must share a slot)."""
    return isinstance(client, CLUSTER_CLIENTS)
