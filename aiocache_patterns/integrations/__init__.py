"""Integrations with web frameworks.

Import them from their own module, so the core library never imports a
framework: ``from aiocache_patterns.integrations.asgi import RateLimitMiddleware``.
"""

__all__: tuple[str, ...] = ()
