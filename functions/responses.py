"""The one place exceptions become HTTP answers, shared by the HTTP functions.

Each function's `errors.py` defines its hierarchy with a `status` per class, and one table saying
which of the layers' errors (the registry's, the bus's) is which of its own. This module turns
ours into `{"error": ...}` JSON, theirs into ours through that table, request validation into a
4xx naming the fields, and anything unexpected into a 500 with a request id and no stack trace.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

if TYPE_CHECKING:  # the framework loads with the first app that installs handlers, not with the errors
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse


class HTTPError(Exception):
    """Base of the functions' error hierarchies; subclasses set `status` (and `headers`, if any)."""

    status = 500
    headers: ClassVar[dict[str, str]] = {}


class Translation(NamedTuple):
    """A lower layer's error, the function's own error it becomes, and the message ('{exc}' is theirs)."""

    theirs: type[Exception]
    ours: type[HTTPError]
    message: str = "{exc}"


def translate(exc: Exception, table: Sequence[Translation]) -> HTTPError:
    """The first translation in `table` that `exc` is an instance of (order subclasses first)."""
    for row in table:
        if isinstance(exc, row.theirs):
            return row.ours(row.message.format(exc=exc))
    raise LookupError(f"no translation for {type(exc).__name__}") from exc


def describe_validation(errors: Sequence[Mapping[str, Any]]) -> str:
    """Pydantic validation errors as one line: 'field.path: message; ...'."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in errors[:5])


def error_answer(
    exc: Exception, table: Sequence[Translation], log: logging.Logger, what: str
) -> tuple[int, dict[str, Any], Mapping[str, str]]:
    """Status, JSON body and headers for `exc`: ours as it says, theirs through `table`, else a 500.

    For routes served without the framework (the inference function's infer routes); the handlers
    below answer the same for the others. `what` ("POST /path") names the request in the log line.
    """
    if not isinstance(exc, HTTPError):
        try:
            exc = translate(exc, table)
        except LookupError:
            request_id = uuid.uuid4().hex[:12]
            log.error("request %s failed (request id %s)", what, request_id, exc_info=exc)
            return 500, {"error": "internal error", "request_id": request_id}, {}
    return exc.status, {"error": str(exc)}, exc.headers


def install_error_handlers(
    app: FastAPI, log: logging.Logger, table: Sequence[Translation], *, validation_status: int = 400
) -> None:
    """Register the handlers that turn every exception into a JSON answer; `table` maps other layers' errors."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    @app.exception_handler(HTTPError)
    async def _known(request: Request, exc: HTTPError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=exc.headers or None)

    async def _translated(request: Request, exc: Exception) -> JSONResponse:
        return await _known(request, translate(exc, table))

    for row in table:
        app.add_exception_handler(row.theirs, _translated)

    @app.exception_handler(HTTPException)
    async def _framework(request: Request, exc: HTTPException) -> JSONResponse:
        # The framework's own refusals (unknown route, wrong method, body over a route's limit) in
        # the same shape as ours.
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"error": f"invalid request: {describe_validation(exc.errors())}"}, status_code=validation_status
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        status, body, _ = error_answer(exc, (), log, f"{request.method} {request.url.path}")
        return JSONResponse(body, status_code=status)
