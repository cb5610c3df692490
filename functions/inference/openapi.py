"""The inference function's OpenAPI document, including what FastAPI cannot see for itself.

The infer routes are served without the framework and the control routes read their own path
parameters and bodies (see `app.py` and `control.py` for why), so their parameters, bodies,
statuses and security are described here by hand: the parameters from the naming rule, the bodies
from the protocol models, the statuses from the error classes (`responses.error_responses`, as
the ingest function's routes get them), each error with the `ErrorBody` every error answer has.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from fermion.events.envelope import NAME_PATTERN
from fermion.service.auth import Forbidden, Unauthorized
from fermion.service.responses import ErrorBody, HTTPError, error_responses

from .errors import BadRequest, ModelNotFound, ModelUnavailable, PayloadTooLarge
from .protocol import INFER_PATHS, InferenceRequest, InferenceResponse

if TYPE_CHECKING:
    from fastapi import FastAPI


try:
    SERVER_VERSION = version("fermion")
except PackageNotFoundError:
    SERVER_VERSION = "0+unknown"

_NAME = NAME_PATTERN.removeprefix("^").removesuffix("$")
PARAMETERS = {
    "name": {
        "type": "string",
        "pattern": f"^{_NAME}(?:@{_NAME})?$",
        "maxLength": 127,
        "description": "NAME (its default alias), or NAME@ALIAS",
    },
    "model_version": {"type": "integer", "minimum": 1, "description": "a version number, 1 or more"},
}
# Every route that needs a key: no key or an unknown one, a key without the scope, the key store down.
AUTHENTICATED: tuple[type[HTTPError], ...] = (Unauthorized, Forbidden, ModelUnavailable)
ON_A_MODEL = (*AUTHENTICATED, BadRequest, ModelNotFound)
SECURITY: list[dict[str, list[str]]] = [{"APIKey": []}]
ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}


Cell = float | str | bool | None


class PredictRequest(BaseModel):
    """POST /v1/models/{name}:predict: rows, the KServe v1 convenience form.

    A row is an object keyed by column name (a table model: any order, its label column ignored) or by
    graph input name (any other graph: each value that input's row), or a list of values (a table
    model's columns in its order, or a single-input model's features).
    """

    model_config = ConfigDict(extra="forbid")

    instances: list[dict[str, Any] | list[Cell]] = Field(min_length=1)


class PredictResponse(BaseModel):
    """200 of :predict: one prediction per row; a classifier's probabilities per row, in `classes` order.

    `predictions` are class names for a classifier (indices when it has none recorded), values in the
    label's units for a regression, the first output's rows for any other model (the raw outputs of
    every model stay on the OIP v2 infer route). Pictures answer with one object per picture.
    """

    model_name: str
    model_version: str
    predictions: list[Any]
    probabilities: list[list[float | None]] | None = None
    classes: list[str | int] | None = None


class NotReady(BaseModel):
    """503 of /v2/health/ready: what is down, and why."""

    ready: bool = False
    problems: dict[str, str]


def doc(path: str, *errors: type[HTTPError], body: type[BaseModel] | None = None) -> dict[str, Any]:
    """OpenAPI for a route that reads its own path parameters (and JSON body) and needs a key."""
    names = [n for n in ("name", "model_version") if "{" + n + "}" in path]
    described: dict[str, Any] = {
        "parameters": [{"name": n, "in": "path", "required": True, "schema": PARAMETERS[n]} for n in names],
        "security": SECURITY,
        "responses": _error_content(*(errors or AUTHENTICATED)),
    }
    if body is not None:
        schema = {"$ref": f"#/components/schemas/{body.__name__}"}
        described["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    return described


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the two infer routes, which it does not see (built once per app)."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        document = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = document.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for model in (InferenceRequest, InferenceResponse, PredictRequest, PredictResponse, ErrorBody, NotReady):
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        components.setdefault("securitySchemes", {})["APIKey"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "an API key: `Authorization: Bearer fmn_...` (scope `infer`)",
        }
        for path in INFER_PATHS:
            document["paths"][path] = {"post": _infer_operation(path)}
        app.openapi_schema = document
    return app.openapi_schema


def _error_content(*errors: type[HTTPError]) -> dict[str, Any]:
    """`error_responses` (status, meaning, headers) in OpenAPI's own form, each with the ErrorBody schema."""
    out: dict[str, Any] = {}
    for status, described in error_responses(*errors).items():
        entry = {k: v for k, v in described.items() if k != "model"}
        entry["content"] = {"application/json": {"schema": ERROR_BODY}}
        out[str(status)] = entry
    return out


def _infer_operation(path: str) -> dict[str, Any]:
    ref = "#/components/schemas/"
    described = doc(path, *ON_A_MODEL, PayloadTooLarge, body=InferenceRequest)
    described["requestBody"]["content"]["application/octet-stream"] = {
        "schema": {"type": "string", "format": "binary"},
        "x-description": "the binary tensor extension: JSON, then raw tensors (Inference-Header-Content-Length)",
    }
    return {
        "summary": "Infer",
        "description": "Run the model on OIP v2 tensors; `name` may be NAME or NAME@ALIAS.",
        "operationId": "infer" + ("_version" if "model_version" in path else ""),
        **described,
        "responses": {
            "200": {
                "description": "the outputs (raw bytes after the JSON when binary outputs were asked for)",
                "content": {
                    "application/json": {"schema": {"$ref": ref + "InferenceResponse"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            **described["responses"],
        },
    }
