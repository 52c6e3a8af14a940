"""No user-supplied key part can reach another key (issue 15.2).

A path parameter is attacker-controlled in every web app: a value must never
produce another field split, another function's key, or the hashed form of a
long key. Checked on every backend, through the public API, and as a property
of the key functions themselves.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiocache_patterns import Cache, RateLimiter
from aiocache_patterns.keys import KeyBuilder, KeyTemplate, quote

MISS: Any = object()


async def test_a_value_with_the_separator_reaches_no_other_functions_entry(redis: Any) -> None:
    cache = Cache(redis, namespace="blog")
    for shared in (False, True):  # escaping alone keeps them apart, scoping too

        @cache.cached(key="post:{post_id}", shared=shared)
        async def get_post(post_id: str) -> dict[str, str] | None:
            return None  # no such post

        @cache.cached(key="post:{post_id}:comments", shared=shared)
        async def get_comments(post_id: str) -> list[str]:
            return ["first!"]

        assert await get_comments("hello") == ["first!"]
        assert await get_post("hello:comments") is None  # its own load, its own entry
        assert await get_comments("hello") == ["first!"]  # not overwritten with None
        await cache.delete(get_comments.key_for("hello"), get_post.key_for("hello:comments"))


async def test_a_value_never_moves_a_field_split(redis: Any) -> None:
    cache = Cache(redis, namespace="docs")
    calls: list[tuple[str, str]] = []

    @cache.cached(key="{org}:{name}")
    async def doc(org: str, name: str) -> str:
        calls.append((org, name))
        return f"{org}/{name}"

    assert await doc("acme", "x:1") == "acme/x:1"
    assert await doc("acme:x", "1") == "acme:x/1"  # not acme's x:1
    assert await doc("acme", "x:1") == "acme/x:1"
    assert calls == [("acme", "x:1"), ("acme:x", "1")]
    assert doc.key_for("acme", "x:1") != doc.key_for("acme:x", "1")
    # Readable in redis-cli: only the separator (and %) is escaped.
    assert doc.key_for("acme:x", "1").endswith(":acme%3Ax:1")


async def test_each_function_keeps_its_keys_unless_shared(redis: Any) -> None:
    cache = Cache(redis, namespace="own")

    @cache.cached(key="post:{post_id}")
    async def get_post(post_id: int) -> str:
        return "full post"

    @cache.cached(key="post:{post_id}")
    async def get_summary(post_id: int) -> str:
        return "summary"

    assert await get_post(1) == "full post"
    assert await get_summary(1) == "summary"  # same template, its own entry
    assert await get_post(1) == "full post"
    # The function's key, for write-through and friends: key_for.
    assert await cache.get(get_post.key_for(1)) == "full post"
    assert await cache.get("post:1", MISS) is MISS

    @cache.cached(key="post:{post_id}", shared=True)
    async def shared_post(post_id: int) -> str:
        return "loaded"

    await cache.write_through("post:2", "written", _noop)
    assert await shared_post(2) == "written"  # the key as written, on purpose
    assert shared_post.key_for(2) == "post:2"
    assert await shared_post.invalidate(post_id=2)
    assert await cache.get("post:2", MISS) is MISS


async def test_design_flow_still_works(redis: Any) -> None:
    cache = Cache(redis, namespace="blog")
    loads = 0

    @cache.cached(key="post:{post_id}")
    async def get_post(post_id: int) -> dict[str, int]:
        nonlocal loads
        loads += 1
        return {"id": post_id, "v": loads}

    assert await get_post(1) == {"id": 1, "v": 1}
    assert await get_post(post_id=1) == {"id": 1, "v": 1}
    assert await get_post.invalidate(post_id=1)
    assert await get_post(1) == {"id": 1, "v": 2}
    await cache.write_through(get_post.key_for(post_id=1), {"id": 1, "v": 9}, _noop)
    assert await get_post(1) == {"id": 1, "v": 9}


async def test_hashed_keys_are_out_of_reach_of_short_keys(redis: Any) -> None:
    cache = Cache(redis, namespace="h", max_key_bytes=80)  # "#h:<digest>" fits
    long = "k" * 200
    await cache.set(long, "long key's value")
    await cache.set("}x", "brace key's value")
    for target in (long, "}x"):
        forged = "#h:" + hashlib.sha256(target.encode()).hexdigest()
        assert await cache.get(forged, MISS) is MISS
        await cache.set(forged, "forged")
        assert await cache.get(forged) == "forged"
    assert await cache.get(long) == "long key's value"
    assert await cache.get("}x") == "brace key's value"
    # Keys that start with "#" are still keys like any other, and distinct.
    await cache.set("#tag", 1)
    await cache.set("##tag", 2)
    assert (await cache.get("#tag"), await cache.get("##tag")) == (1, 2)


async def test_limiter_fields_never_share_a_quota(redis: Any) -> None:
    limiter = RateLimiter(redis, limit=1, window=60)

    @limiter.limited("{user}:{action}")
    async def act(user: str, action: str) -> None:
        return None

    await act("alice", "x:y")
    await act("alice:x", "y")  # another user's quota, not alice's x:y
    await act("bob", "post")
    assert (await limiter.peek("alice:x%3Ay")).remaining == 0
    assert (await limiter.peek("alice%3Ax:y")).remaining == 0


async def _noop(value: Any) -> None:
    return None


# -- the key functions, as properties ------------------------------------------------

parts = st.text(alphabet=st.sampled_from(":%/#}{ab3A\u00e9"), max_size=6)


async def _two(a: Any, b: Any) -> None:
    return None


@settings(max_examples=200, deadline=None)
@given(parts, parts, parts)
def test_a_separator_in_a_value_never_moves_the_split(p: str, q: str, r: str) -> None:
    # (p, q<sep>r) and (p<sep>q, r) render alike unless values are escaped.
    separated = (("{a}:{b}", ":"), ("p/{a}/{b}", "/"), ("{a}3{b}:", "3"), ("{a}A{b}", "A"))
    for template, sep in separated:
        render = KeyTemplate(_two, template, scope="m.f")
        assert render((p, q + sep + r), {}) != render((p + sep + q, r), {}), template
    # Different functions never meet, whatever their arguments.
    one = KeyTemplate(_two, "{a}:{b}", scope="m.one")
    other = KeyTemplate(_two, "{a}:{b}", scope="m.one:x")
    assert one((p, q), {}) != other((q, r), {})


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=40), st.binary(min_size=1, max_size=40))
def test_stored_keys_are_injective(x: bytes, y: bytes) -> None:
    builder = KeyBuilder("ns", max_key_bytes=16)
    if x != y:
        assert builder.key(x) != builder.key(y)


@given(parts, parts)
def test_quote_is_injective_and_colon_free(x: str, y: str) -> None:
    assert ":" not in quote(x)
    if x != y:
        assert quote(x) != quote(y)


def test_templates_that_would_be_ambiguous_are_refused() -> None:
    with pytest.raises(ValueError, match="side by side"):
        KeyTemplate(_two, "{a}{b}")
    with pytest.raises(ValueError, match="'%' right after a field"):
        KeyTemplate(_two, "{a}%{b}")


def test_shared_needs_a_template(redis: Any) -> None:
    cache = Cache(redis, namespace="x")
    with pytest.raises(ValueError, match="shared=True needs a key template"):
        cache.cached(shared=True)(_two)
    with pytest.raises(TypeError, match="shared must be a bool"):
        cache.cached(key="{a}:{b}", shared="yes")(_two)  # type: ignore[arg-type]
