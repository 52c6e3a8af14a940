"""Scripts: the name EVALSHA knows them by, and the resend marker in their source."""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

import pytest

from aiocache_patterns._redis.scripts import Script, declares_resend_safe, load_script


@pytest.mark.parametrize(
    "source",
    [
        b"-- resend-safe: a script\n-- Resend: safe (it only reads)\nreturn 1",
        b"-- Resend: safe (x)\r\nreturn 1",
        b"--Resend:safe(reads)\nreturn 1",
        # after a prepended library, where a composed script's own header is
        b"local function lib() end\n\n-- my_script: ...\n-- Resend: safe (idempotent)\nreturn 1",
    ],
)
def test_the_resend_marker_is_found(source: bytes) -> None:
    assert declares_resend_safe(source)
    assert Script("s", source).resend_safe


@pytest.mark.parametrize(
    "source",
    [
        b"return 1",
        b"-- Resend: safe\nreturn 1",  # no reason given
        b"-- Resend: safe ()\nreturn 1",  # an empty reason
        b"-- Resend: unsafe (it counts)\nreturn 1",
        b"-- Resend: never\nreturn 1",
        b"return 1 -- Resend: safe (not a line of its own)",
        b"-- resend: safe (wrong case)\nreturn 1",
    ],
)
def test_without_the_marker_a_script_is_not_resent(source: bytes) -> None:
    assert not declares_resend_safe(source)
    assert not Script("s", source).resend_safe


def test_no_packaged_script_claims_safety_by_accident() -> None:
    """Every marker in the package's scripts is a header line with a reason."""
    found = 0
    for pattern in ("cache", "lock", "ratelimit", "leaderboard", "idempotency"):
        package = f"aiocache_patterns.{pattern}"
        for entry in resources.files(package).joinpath("lua").iterdir():
            source = entry.read_bytes()
            claimed = b"Resend:" in source
            assert declares_resend_safe(source) == claimed, entry.name
            assert load_script(package, entry.name.removesuffix(".lua")).resend_safe == claimed
            found += 1
    assert found >= 20


def test_the_sha_is_evalsha_s_name_not_a_security_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """SHA-1 names a script for EVALSHA: it is asked for with usedforsecurity=False, so a
    FIPS-mode Python (which refuses SHA-1 for security) still loads the scripts."""
    calls: list[dict[str, Any]] = []
    real_sha1 = hashlib.sha1

    def strict_sha1(data: bytes = b"", **kwargs: Any) -> Any:
        calls.append(kwargs)
        if kwargs.get("usedforsecurity", True):
            raise ValueError("[digital envelope routines] unsupported (FIPS mode)")
        return real_sha1(data, **kwargs)

    monkeypatch.setattr(hashlib, "sha1", strict_sha1)  # what _scripts.py calls
    script = Script("s", b"return 1")
    assert calls == [{"usedforsecurity": False}]
    assert script.sha == real_sha1(b"return 1").hexdigest()
