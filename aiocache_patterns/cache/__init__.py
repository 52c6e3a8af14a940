"""Cache-aside, write-through and invalidation, with stampede control.

``Cache`` (``_cache``) is the door; behind it, the decorator
(``_decorator``), the engine of ``get_or_load`` (``_loading``), the stored
entry (``_entry``: envelope, codec, reading and writing), the cross-process
recompute lock and XFetch (``_recompute``), the counters (``_stats``), tag
invalidation by versions (``_tags``), the rules one call reads and stores by
(``_spec``: ttl, ``cache_if``, tags, typed decoding) and ``get_or_load_many``
(``_bulk``).
Its Lua scripts are in ``lua/``. See docs/cache-aside.md and docs/stampede.md.
"""

from ._cache import Cache as Cache
from ._decorator import CachedFunction as CachedFunction
from ._near import NearCache as NearCache
from ._stats import CacheStats as CacheStats

__all__ = ("Cache", "CacheStats", "CachedFunction", "NearCache")
