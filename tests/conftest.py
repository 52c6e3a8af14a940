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

WARNING: the real backends are flushed before every test: FLUSHDB on the
database at ``REDIS_URL`` (default ``redis://127.0.0.1:6379/9``) and FLUSHALL
on every primary of ``REDIS_CLUSTER_URL``. See ``tests/_backends.py``.

``private_server`` -> a :class:`tests._servers.RedisProcess` of its own (a
                      ``redis-server`` on a free port, killed after the test),
                      for fault tests: kill it, fill it (``redis_full``), set
                      ACLs. Skipped without the binary (a failure in CI).

``@pytest.mark.real_only`` skips a test on the fakeredis backend. A real
backend that does not answer is skipped, or fails the test when ``CI=true``.
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


@pytest.fixture(params=BACKEND_NAMES)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    name = request.param
    url: str | None = None
    if name == "fakeredis":
        if request.node.get_closest_marker("real_only") is not None:
            pytest.skip("real_only: needs a real Redis server, not fakeredis")
    else:
        availability = cluster_availability() if name == "cluster" else standalone_availability()
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
