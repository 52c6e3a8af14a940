from __future__ import annotations

import pytest
from redis.crc import key_slot

from aiocache_patterns.keys import KeyBuilder, key_bytes


def test_key_is_namespaced_and_tagged() -> None:
    kb = KeyBuilder("blog")
    assert kb.key("post:1") == b"blog:{post:1}"
    assert kb.key(b"\x00\xff") == b"blog:{\x00\xff}"
    assert kb.key("é") == "blog:{é}".encode()


@pytest.mark.parametrize("key", ["a", "x}y", "{a}", "}{", "a{b}c", "\n", "\x00", "{"])
def test_derived_keys_share_the_slot(key: str) -> None:
    kb = KeyBuilder("ns")
    main = kb.key(key)
    assert key_slot(kb.derived(main, "lock")) == key_slot(main)
    assert key_slot(kb.derived(main, "signal")) == key_slot(main)


def test_long_keys_are_hashed_deterministically() -> None:
    kb = KeyBuilder("ns", max_key_bytes=64)
    long = "x" * 1_000_000
    hashed = kb.key(long)
    assert len(hashed) < 100
    assert hashed == kb.key(long)
    assert hashed != kb.key(long + "y")
    assert kb.key("x" * 64) == b"ns:{" + b"x" * 64 + b"}"


@pytest.mark.parametrize("bad", [1, 1.5, None, ["a"], object()])
def test_key_type_is_checked(bad: object) -> None:
    with pytest.raises(TypeError, match="key must be str or bytes"):
        key_bytes(bad)


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="key must not be empty"):
        KeyBuilder("ns").key("")
    with pytest.raises(ValueError, match="key must not be empty"):
        KeyBuilder("ns").key(b"")


@pytest.mark.parametrize("bad", ["", "a{b", "a}b"])
def test_bad_namespace(bad: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        KeyBuilder(bad)


def test_namespace_type() -> None:
    with pytest.raises(TypeError, match="namespace must be str"):
        KeyBuilder(b"ns")  # type: ignore[arg-type]
