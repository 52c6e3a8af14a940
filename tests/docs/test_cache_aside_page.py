"""docs/cache-aside.md: the one-liner that decodes a cached entry works."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from aiocache_patterns import Cache
from tests._backends import in_ci, standalone_availability

PAGE = Path(__file__).resolve().parents[2] / "docs" / "cache-aside.md"


def decode_command() -> list[str]:
    text = PAGE.read_text()
    match = re.search(r"<!-- decode-entry -->\s*```bash\n(.*?)\n```", text, re.S)
    assert match is not None, "the decode one-liner lost its <!-- decode-entry --> marker"
    return shlex.split(match.group(1))


async def test_the_decode_one_liner_reads_an_entry_the_cache_wrote() -> None:
    url = standalone_availability().url
    if url is None:
        if in_ci():
            pytest.fail("the redis backend is required in CI", False)
        pytest.skip("needs a real Redis (REDIS_URL or redis-server)")
    client = aioredis.Redis.from_url(url)
    try:
        await client.flushdb()
        cache = Cache(client, namespace="blog", ttl=60)

        @cache.cached(key="post:{post_id}")
        async def get_post(post_id: int) -> dict[str, object]:
            return {"id": post_id, "title": "hello"}

        await get_post(1)
        keys = [k if isinstance(k, bytes) else k.encode() for k in await client.keys("blog:*")]
        (key,) = keys
        command = decode_command()
        assert command[:2] == ["python", "-c"]
        argv = [sys.executable, "-c", command[2], url, key.decode()]
        out = await asyncio.to_thread(
            subprocess.run, argv, capture_output=True, text=True, timeout=30, check=True
        )
        decoded = json.loads(out.stdout)
        assert decoded["value"] == {"id": 1, "title": "hello"}
        assert decoded["created"] <= decoded["fresh_until"]
        assert decoded["load_s"] >= 0
    finally:
        await client.flushdb()
        await client.aclose()
