"""The cached items shared by the cache scenarios: 1,000 small JSON documents."""

from __future__ import annotations

from typing import Any

__all__ = ["ITEMS", "KEYS", "TTL", "VALUES", "item_value"]

ITEMS = 1000
TTL = 600  # seconds: nothing expires during a run


def item_value(i: int) -> dict[str, Any]:
    """The JSON document cached for item ``i`` (about 100 bytes)."""
    return {
        "id": i,
        "name": f"item {i}",
        "price": round(i * 1.25, 2),
        "tags": ["bench", f"t{i % 7}"],
        "active": i % 2 == 0,
    }


VALUES = [item_value(i) for i in range(ITEMS)]
KEYS = [f"item:{i}" for i in range(ITEMS)]
