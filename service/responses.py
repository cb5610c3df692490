"""The one place exceptions become HTTP answers, shared by the HTTP functions.

Each function's `errors.py` defines its hierarchy with a `status` per class, and one table saying
which of the layers' errors (the registry's, the bus's) is which of its own. This module turns
ours into `{"error": ...}` JSON, theirs into ours through that table, request validation into a
4xx naming the fields, and anything unexpected into a 500 with a request id and no stack trace.

It also says so in the OpenAPI documents: `error_responses` turns error classes into a route's
`responses=` (status, the class's docstring, the `ErrorBody` schema, its headers), and
`document_validation` replaces FastAPI's default 422 (a body we never send) with the status and
body `install_error_handlers` really answers a request that does not match the document with.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from pydantic import BaseModel

if TYPE_CHECKING:  # the framework loads with the first app that installs handlers, not with the errors
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

VALIDATION_DESCRIPTION = "the request does not match this document (the message names the parameters or fields)"


class HTTPError(Exception):
    """Base of the functions' error hierarchies; subclasses set `status` (and `headers`, if any)."""

    status = 500
    headers: ClassVar[dict[str, str]] = {}


class ErrorBody(BaseModel):
    """Every error answer's JSON: a sentence saying what went wrong and, where it can, how to fix it."""

    error: str
    request_id: str | None = None  # only on a 500: the id its log line carries, to quote in a report


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


def error_responses(*errors: type[HTTPError]) -> dict[int | str, dict[str, Any]]:
    """A route's (or router's) `responses=` for the errors it can raise: status, meaning, body, headers."""
    by_status: dict[int, list[type[HTTPError]]] = {}
    for error in errors:
        by_status.setdefault(error.status, []).append(error)
    responses: dict[int | str, dict[str, Any]] = {}
    for status, classes in sorted(by_status.items()):
        described: dict[str, Any] = {
            "model": ErrorBody,
            "description": "; ".join(dict.fromkeys(map(_meaning, classes))),
        }
        if headers := {name: value for c in classes for name, value in c.headers.items()}:
            described["headers"] = {
                name: {"description": f"`{value}`", "schema": {"type": "string"}} for name, value in headers.items()
            }
        responses[status] = described
    return responses


def _meaning(error: type[HTTPError]) -> str:
    # The docstring's first line without its "404: " prefix (each class's docstring starts so).
    first = (error.__doc__ or error.__name__).strip().splitlines()[0]
    return first.partition(": ")[2] or first


def document_validation(document: dict[str, Any], status: int) -> dict[str, Any]:
    """`document` with FastAPI's default 422 answers replaced by `status` and `ErrorBody`, what we send.

    FastAPI adds a 422 with its `HTTPValidationError` body to every operation that has parameters or
    a body; `install_error_handlers` answers those requests with `validation_status` and `{"error": ...}`.
    A status the route already documents (a 400 of its own) gains the validation's meaning.
    """
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for operation in (op for path in document.get("paths", {}).values() for op in path.values()):
        responses = operation.get("responses", {})
        default = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
        if not default.get("$ref", "").endswith("/HTTPValidationError"):
            continue
        del responses["422"]
        if (ours := responses.get(str(status))) is not None:
            ours["description"] = f"{ours['description']}; or {VALIDATION_DESCRIPTION}"
        else:
            ref = {"$ref": "#/components/schemas/ErrorBody"}
            responses[str(status)] = {
                "description": VALIDATION_DESCRIPTION,
                "content": {"application/json": {"schema": ref}},
            }
        operation["responses"] = dict(sorted(responses.items()))
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.setdefault("ErrorBody", ErrorBody.model_json_schema())
    return document


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
        # the same shape as ours. A body it could not parse (JSON that is not UTF-8, a broken
        # multipart form) is FastAPI's 400 raised from the parser's error: that is a request that
        # does not match the document, answered like any other (and so documented).
        if exc.status_code == 400 and isinstance(exc.__cause__, Exception):
            why = f"invalid request: body: not readable ({type(exc.__cause__).__name__}: {exc.__cause__})"
            return JSONResponse({"error": why}, status_code=validation_status)
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
