"""An HTTP load test: ``python -m examples.http_load`` (needs ``wrk``).

Starts :mod:`examples.http_load.app` (a FastAPI app over a fake database
that takes 20 ms a query) under uvicorn, one worker, and drives it with wrk:
a cached route and the same route uncached, each over 1,000 ids; then a cold
key under 50 concurrent requests, counting the database calls it made.
"""
