"""Example applications built on aiocache_patterns (see each package's README)."""
