"""Rate limiting: five algorithms, one atomic script each, on the server's clock.

``RateLimiter`` (``_limiter``) runs the scripts in ``lua/``, which share
one prologue (``lua/lib.lua``: the server's time, the rates, the binding
rate). See docs/rate-limiting.md.
"""

from ._limiter import Algorithm as Algorithm
from ._limiter import Rate as Rate
from ._limiter import RateLimiter as RateLimiter
from ._limiter import RateLimiterStats as RateLimiterStats
from ._limiter import RateLimitResult as RateLimitResult

__all__ = ("Algorithm", "Rate", "RateLimitResult", "RateLimiter", "RateLimiterStats")
