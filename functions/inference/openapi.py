"""The inference function's OpenAPI document, including what FastAPI cannot see for itself.

The infer routes are plain Starlette routes and the control routes read their own path
parameters and bodies (see `app.py` for why), so their parameters, bodies and error statuses are
described here by hand, from the protocol models and the error classes.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from .errors import BadRequest, ModelNotFound, ModelUnavailable, PayloadTooLarge
from .protocol import INFER_PATHS, InferenceRequest, InferenceResponse

if TYPE_CHECKING:
    from fastapi import FastAPI


try:
    SERVER_VERSION = version("fermion")
except PackageNotFoundError:
    SERVER_VERSION = "0+unknown"


class PredictRequest(BaseModel):
    """POST /v1/models/{name}:predict: rows of features, the KServe v1 convenience form."""

    model_config = ConfigDict(extra="forbid")

    instances: list[list[float]] = Field(min_length=1)


def doc(path: str, body: type[BaseModel] | None = None) -> dict[str, Any]:
    """OpenAPI for a route that reads its own path parameters (and JSON body)."""
    names = [n for n in ("name", "model_version") if "{" + n + "}" in path]
    described: dict[str, Any] = {
        "parameters": [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]
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
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for model in (InferenceRequest, InferenceResponse, PredictRequest):
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        for path in INFER_PATHS:
            document["paths"][path] = {"post": _infer_operation(path)}
        app.openapi_schema = document
    return app.openapi_schema


def _infer_operation(path: str) -> dict[str, Any]:
    ref = "#/components/schemas/"
    return {
        "summary": "Infer",
        "description": "Run the model on OIP v2 tensors; `name` may be NAME or NAME@ALIAS.",
        "operationId": "infer" + ("_version" if "model_version" in path else ""),
        **doc(path, InferenceRequest),
        "responses": {
            "200": {"content": {"application/json": {"schema": {"$ref": ref + "InferenceResponse"}}}},
            **{
                str(error.status): {"description": (error.__doc__ or "").partition(": ")[2]}
                for error in (BadRequest, ModelNotFound, PayloadTooLarge, ModelUnavailable)
            },
        },
    }
