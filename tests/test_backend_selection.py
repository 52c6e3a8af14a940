"""Which real Redis the tests use: never one they did not start unless REDIS_URL says so."""

from __future__ import annotations

import atexit
import socket
import types

import pytest
import redis

from tests import _backends, conftest
from tests._servers import redis_server_binary


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """No REDIS_URL nor REDIS_CLUSTER_URL (the decisions below are made afresh,
    not the session's cached ones)."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_CLUSTER_URL", raising=False)


def decide() -> _backends.Availability:
    """The standalone decision, made again (the session's stays cached)."""
    availability: _backends.Availability = _backends.standalone_availability.__wrapped__()
    return availability


def _port(url: str) -> int:
    port = redis.Redis.from_url(url).connection_pool.connection_kwargs["port"]
    assert isinstance(port, int)
    return port


@pytest.mark.usefixtures("fresh")
def test_without_redis_url_a_private_server_never_6379() -> None:
    if redis_server_binary() is None:
        pytest.skip("redis-server is not on PATH")
    availability = decide()
    assert availability.url is not None
    assert availability.url.startswith("redis://127.0.0.1:")
    assert _port(availability.url) != 6379
    assert "private redis-server" in availability.source
    with redis.Redis.from_url(availability.url) as client:
        assert client.ping()
        assert client.dbsize() == 0


@pytest.mark.usefixtures("fresh")
def test_without_redis_url_or_binary_only_fakeredis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_backends, "redis_server_binary", lambda: None)
    availability = decide()
    assert availability.url is None
    assert "REDIS_URL is not set" in availability.reason
    monkeypatch.setattr(conftest, "standalone_availability", lambda: availability)
    monkeypatch.setattr(
        conftest, "cluster_availability", _backends.cluster_availability.__wrapped__
    )
    line = conftest.backends_line()
    assert line.startswith("backends: fakeredis;")
    assert "install redis-server" in line
    assert "REDIS_CLUSTER_URL is not set" in line


@pytest.mark.usefixtures("fresh")
def test_redis_url_is_used_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nothing answers on
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{dead}/9")
    monkeypatch.setattr(
        _backends, "redis_server_binary", lambda: pytest.fail("must not start a server")
    )
    availability = decide()
    assert availability.url is None
    assert f"REDIS_URL=redis://127.0.0.1:{dead}/9 does not answer PING" in availability.reason


class _Item:
    def __init__(self, params: dict[str, object] | None, real_only: bool = False) -> None:
        if params is not None:
            self.callspec = types.SimpleNamespace(params=params)
        self._real_only = real_only

    def get_closest_marker(self, name: str) -> object | None:
        return object() if name == "real_only" and self._real_only else None


def _deselect(
    monkeypatch: pytest.MonkeyPatch, items: list[_Item], *, ci: bool, off: set[str]
) -> list[_Item]:
    dropped: list[_Item] = []
    config = types.SimpleNamespace(
        hook=types.SimpleNamespace(pytest_deselected=lambda items: dropped.extend(items))
    )
    monkeypatch.setattr(conftest, "_unavailable", lambda: off)
    monkeypatch.setattr(conftest, "in_ci", lambda: ci)
    kept = list(items)
    conftest.pytest_collection_modifyitems(config, kept)  # type: ignore[arg-type]
    assert len(kept) + len(dropped) == len(items)
    return dropped


def test_tests_of_a_missing_backend_are_deselected_not_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, real, cluster = (
        _Item({"backend": "fakeredis"}),
        _Item({"backend": "redis"}),
        _Item({"backend": "cluster"}),
    )
    own_cluster, plain = _Item({"through": "cluster"}), _Item(None)
    fake_real_only = _Item({"backend": "fakeredis"}, real_only=True)
    items = [fake, real, cluster, own_cluster, plain, fake_real_only]
    assert _deselect(monkeypatch, items, ci=False, off={"cluster"}) == [
        cluster,
        own_cluster,
        fake_real_only,
    ]
    assert _deselect(monkeypatch, items, ci=False, off=set()) == [fake_real_only]
    # CI=true: a missing backend's tests stay, to fail.
    assert _deselect(monkeypatch, items, ci=True, off={"redis", "cluster"}) == [fake_real_only]


@pytest.fixture
def server_with_data(fresh: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """REDIS_URL naming a private server whose db 3 holds a key nobody gave the tests."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not on PATH")
    private = _backends._private_availability()
    assert private.url is not None
    url = private.url.rsplit("/", 1)[0] + "/3"
    with redis.Redis.from_url(url) as client:
        client.set(b"someone-elses", b"data")
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.delenv(_backends.MAY_FLUSH_ENV, raising=False)
    return url


def test_redis_url_holding_other_data_is_refused_and_left_alone(server_with_data: str) -> None:
    availability = decide()
    assert availability.url is None
    assert "holds 1 keys the tests did not create" in availability.reason
    assert _backends.MAY_FLUSH_ENV in availability.reason
    with redis.Redis.from_url(server_with_data) as client:
        assert client.get(b"someone-elses") == b"data"


def test_redis_url_declared_disposable_is_taken(
    server_with_data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_backends.MAY_FLUSH_ENV, "1")
    assert decide().url == server_with_data


def test_an_empty_redis_url_is_taken_and_emptied_at_exit(
    server_with_data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with redis.Redis.from_url(server_with_data) as client:
        client.delete(b"someone-elses")
    emptied: list[tuple[str, str]] = []
    monkeypatch.setattr(atexit, "register", lambda *args: emptied.append(args[1:]))
    assert decide().url == server_with_data
    assert emptied == [(server_with_data, "REDIS_URL")]
    with redis.Redis.from_url(server_with_data) as client:
        client.set(b"left-by-a-test", b"x")
    _backends._empty_quietly(server_with_data, "REDIS_URL")
    with redis.Redis.from_url(server_with_data) as client:
        assert client.dbsize() == 0
