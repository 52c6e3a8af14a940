"""Errors as RFC 9457 problem documents, never carrying exception text.

Every error the app answers is ``application/problem+json``: ``type``
(``about:blank``: the status says it all), ``title`` (the status phrase),
``status``, and a ``detail`` written for the client. What went wrong inside
(an exception's message, which may name hosts, files or keys) is logged, not
sent. Validation errors list where and what, without echoing the input.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

__all__ = ["PROBLEM_JSON", "install_problem_handlers", "problem"]

logger = logging.getLogger("examples.blog_api")

PROBLEM_JSON = "application/problem+json"


def problem(
    status: int,
    detail: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **members: Any,
) -> Response:
    """An RFC 9457 problem response of ``status``."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": http.HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body.update(members)
    return JSONResponse(body, status, dict(headers or {}), media_type=PROBLEM_JSON)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem(exc.status_code, detail, headers=exc.headers)


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", ""))}
        for error in exc.errors()
    ]
    return problem(422, "the request is not valid", errors=errors)


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("%s %s failed", request.method, request.url.path)
    return problem(500, "something went wrong on our side")


def install_problem_handlers(app: FastAPI) -> None:
    """Answer HTTP errors, validation errors and anything unexpected as problems."""
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(Exception, _unexpected)
