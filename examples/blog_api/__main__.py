"""``python -m examples.blog_api``: serve the blog on http://127.0.0.1:8000 with uvicorn."""

from __future__ import annotations

import argparse
import logging
import os

import uvicorn

from .app import DEFAULT_DATABASE, create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.blog_api", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--db",
        default=os.environ.get("BLOG_DB", str(DEFAULT_DATABASE)),
        help="SQLite file, created on first run (default: $BLOG_DB, else %(default)s)",
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help="default: $REDIS_URL, else redis://127.0.0.1:6379/0; "
        "an in-process fakeredis if nothing answers there",
    )
    parser.add_argument(
        "--rate-limit",
        type=_positive,
        default=100,
        metavar="N",
        help="requests per client IP per minute, every route but /health (default: "
        "%(default)s; raise it to load-test from one address)",
    )
    parser.add_argument(
        "--no-access-log",
        action="store_true",
        help="no line per request (under load, the access log costs more than the app)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    app = create_app(database=args.db, redis_url=args.redis_url, rate_limit=args.rate_limit)
    uvicorn.run(app, host=args.host, port=args.port, access_log=not args.no_access_log)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


if __name__ == "__main__":
    main()
