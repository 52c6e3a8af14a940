"""A small blog API (FastAPI + SQLite) that uses every aiocache_patterns pattern.

Start it from the repository root with ``python -m examples.blog_api``; see README.md.
"""

from .app import Blog, blog_of, create_app

__all__ = ["Blog", "blog_of", "create_app"]
