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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    app = create_app(database=args.db, redis_url=args.redis_url)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
