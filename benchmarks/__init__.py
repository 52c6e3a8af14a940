"""Benchmarks: ``python -m benchmarks [--quick] [--redis-url URL] [--scenario NAME ...]``.

Each scenario measures this library, raw redis-py and the peer libraries side
by side in one run, on the same server, interleaving them in rounds so a noisy
machine slows them all alike. See ``benchmarks/_cli.py`` for the options.
"""
