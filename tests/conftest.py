"""Shared fixtures: every behaviour test runs on every backend.

Fixtures
    ``backend``        -> :class:`tests._backends.Backend`, parametrized
                          ``fakeredis`` / ``redis`` / ``cluster`` (test ids end in
                          ``[fakeredis]`` etc.; ``-k fakeredis`` runs just one).
                          The backend's data is empty when the test starts.
    ``redis``          -> ``await backend.client()``: bytes responses.
    ``redis_decoded``  -> ``await backend.client(decode_responses=True)``: ``str``.

More clients on the same data: ``await backend.client(...)``; all are closed at
teardown.

Which real backends run: ``REDIS_URL`` if set, else a private ``redis-server``
this session starts on a free port (when the binary is on PATH); a cluster only
at ``REDIS_CLUSTER_URL``. The header says which run and how to enable the
others; the tests of a backend that is not available are deselected (with
``CI=true`` they run and fail instead). The real backends are flushed before
every test (FLUSHDB on the database at ``REDIS_URL``, FLUSHALL on every primary
of ``REDIS_CLUSTER_URL``) and at the end, so a database or cluster that holds
keys the tests did not create is refused, not used. See ``tests/_backends.py``.

``private_server`` -> a :class:`tests._servers.RedisProcess` of its own (a
                      ``redis-server`` on a free port, killed after the test),
                      for fault tests: kill it, fill it (``redis_full``), set
                      ACLs. Skipped without the binary (a failure in CI).

``@pytest.mark.real_only`` keeps a test off the fakeredis backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests._backends import (
    BACKEND_NAMES,
    Backend,
    Client,
    cluster_availability,
    in_ci,
    make_backend,
    standalone_availability,
)
from tests._servers import RedisProcess, private_redis, redis_server_binary

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def backends_line() -> str:
    """One line: which backends run, and how to enable the ones that do not."""
    running = ["fakeredis"]
    off: list[str] = []
    standalone = standalone_availability()
    if standalone.url is not None:
        running.append(f"redis ({standalone.source})")
    else:
        off.append(f"redis ({standalone.reason})")
    cluster = cluster_availability()
    if cluster.url is not None:
        running.append("cluster (REDIS_CLUSTER_URL)")
    else:
        off.append(f"cluster ({cluster.reason})")
    line = f"backends: {', '.join(running)}"
    if off:
        fate = "FAIL (CI=true)" if in_ci() else "not run"
        line += f"; {fate}: {'; '.join(off)}"
    return line


def pytest_report_header(config: pytest.Config) -> str:
    return backends_line()


def pytest_collection_finish(session: pytest.Session) -> None:
    """With ``-q`` there is no header: say it here instead."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and session.config.get_verbosity() < 0:
        reporter.write_line(backends_line())


def _unavailable() -> set[str]:
    """The real backends without a server: a cluster's, or else the standalone one's."""
    names: set[str] = set()
    for name in BACKEND_NAMES:
        if name == "fakeredis":
            continue
        availability = cluster_availability() if name == "cluster" else standalone_availability()
        if availability.url is None:
            names.add(name)
    return names


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect tests of backends that will not run: one header line instead of
    a SKIPPED line each. With ``CI=true`` they stay, and fail."""
    unavailable = set() if in_ci() else _unavailable()
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        name = params.get("backend")
        # Fixtures of their own parametrized over "cluster" (test_resend's ``through``).
        on_cluster = "cluster" in params.values()
        off = (
            name in unavailable
            or (on_cluster and "cluster" in unavailable)
            or (name == "fakeredis" and item.get_closest_marker("real_only") is not None)
        )
        (dropped if off else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(params=BACKEND_NAMES)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    name = request.param
    url: str | None = None
    if name == "fakeredis":
        if request.node.get_closest_marker("real_only") is not None:
            pytest.skip("real_only: needs a real Redis server, not fakeredis")
    else:
        availability = standalone_availability() if name == "redis" else cluster_availability()
        if availability.url is None:
            reason = f"{name} backend unavailable: {availability.reason}"
            if in_ci():
                pytest.fail(f"{reason} (CI=true: a missing real backend is a failure)", False)
            pytest.skip(reason)
        url = availability.url

    be = make_backend(name, url)
    await be.flush()
    try:
        yield be
    finally:
        await be.aclose()


@pytest.fixture(name="redis")
async def redis_client(backend: Backend) -> Client:
    """A client on ``backend`` with bytes responses."""
    return await backend.client()


@pytest.fixture
async def redis_decoded(backend: Backend) -> Client:
    """A client on ``backend`` with ``decode_responses=True`` (``str`` responses)."""
    return await backend.client(decode_responses=True)


@pytest.fixture
async def private_server() -> AsyncIterator[RedisProcess]:
    """A ``redis-server`` of this test's own, on a free port (killed after the test)."""
    if redis_server_binary() is None:
        if in_ci():
            pytest.fail("redis-server is required in CI", False)
        pytest.skip("redis-server is not on PATH")
    async with private_redis() as process:
        yield process
