"""The inference function's other routes: health, metadata, the v1 predict form, `/metrics`, OpenAPI.

A FastAPI app, built by `app.InferenceApp` on the first request that is not an infer (a probe, a
scrape, `/docs`), never before the first answer: importing and building the framework is a good
part of a cold start, and the warm infer path does not need it. It is handed the inference app's
state (`services`, `security`, `pipeline`, `readiness`) and imports nothing of `app.py`, and it
answers errors in the same shape. `:predict` runs through the same pipeline as infer
(`pipeline.py`): this module only parses its rows (`RowsRequest`; pictures: `pictures.py`) and
encodes its answer (`columns.py`).

The routes take the request and return plain dicts (`response_model=None`): a typed parameter or
return makes FastAPI build validators per route and import pydantic.v1, tens of milliseconds.
Their parameters, bodies and statuses are described by hand in `openapi.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.routing import Route
from starlette.types import ASGIApp

from fermion.service import endpoints
from fermion.service.auth import Forbidden, Unauthorized
from fermion.service.auth.http import authorize
from fermion.service.responses import describe_validation, install_error_handlers

from . import columns, pictures, preload
from .errors import TRANSLATIONS, BadRequest, ModelUnavailable, PayloadTooLarge
from .openapi import ERROR_BODY, ON_A_MODEL, SECURITY, SERVER_VERSION, PredictRequest, build_openapi, doc
from .pipeline import Answer, Call, Parsed, Pipeline
from .protocol import INFER_PATHS
from .runtime import LoadedModel, ModelRef
from .services import model_for
from .settings import InferenceSettings

log = logging.getLogger("fermion.inference")


def create_control_app(state: SimpleNamespace, infer: ASGIApp) -> FastAPI:
    """The FastAPI app beside the core, sharing its `state`; `infer` serves the infer paths if one reaches it."""
    app = FastAPI(title="Fermion inference", version=SERVER_VERSION)
    app.state.services = state.services
    app.state.security = state.security
    app.state.pipeline = state.pipeline
    app.state.readiness = state.readiness
    install_error_handlers(app, log, TRANSLATIONS)
    # The core matches the infer paths before this app sees a request; here they only make another
    # method on them a 405, as a router would.
    app.router.routes.extend(Route(path, infer, methods=["POST"], name="infer") for path in INFER_PATHS)
    for method, path, endpoint, openapi_extra in CONTROL_ROUTES:
        app.add_api_route(path, endpoint, methods=[method], response_model=None, openapi_extra=openapi_extra)
    settings = state.services.settings()
    metrics = state.services.metrics
    # The routes that run a model are counted by the pipeline (by model); the middleware only logs
    # (when fermion.access is on).
    endpoints.install(app, settings, metrics.registry if metrics else None, function="inference", http_metrics=False)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app


async def live() -> dict[str, bool]:
    """The process is up."""
    return {"live": True}


async def ready(request: Request) -> dict[str, Any] | JSONResponse:
    """Ready to serve (a probe: no key needed; 503 naming what is down); with a key, lists its tenant's models."""
    # Not ready until the preload model serves.
    if (problem := preload.problem(request.app.state.services.preloading)) is not None:
        raise ModelUnavailable(f"not ready: {problem}")
    if problems := await request.app.state.readiness.problems():
        return JSONResponse({"ready": False, "problems": problems}, status_code=503)
    try:
        tenant: str | None = (await authorize(request, "infer")).tenant
    except Unauthorized:
        tenant = None  # a probe: say nothing about what is loaded
    loaded = request.app.state.services.runtime().loaded
    return {
        "ready": True,
        "models": [
            {"name": m.name, "version": m.version, "providers": m.providers, "gpu_fallback": m.gpu_fallback}
            for m in loaded
            if m.manifest.tenant == tenant
        ],
    }


async def server_metadata(request: Request) -> dict[str, Any]:
    """Server metadata."""
    await authorize(request, "infer")
    return {"name": "fermion", "version": SERVER_VERSION, "extensions": ["binary_tensor_data"]}


async def model_metadata(request: Request) -> dict[str, Any]:
    """Inputs, outputs, versions, and the providers the session got."""
    caller = await authorize(request, "infer")
    return _metadata(await model_for(request.app.state.services, caller, _ref(request)))


async def model_ready(request: Request) -> dict[str, Any]:
    """Loads the model if needed; ready once its session exists."""
    caller = await authorize(request, "infer")
    model = await model_for(request.app.state.services, caller, _ref(request))
    return {"name": model.name, "version": str(model.version), "ready": True}


async def predict(request: Request) -> Response:
    """Rows in (by column name or position), predictions out (class names and probabilities); or pictures."""
    pipeline: Pipeline = request.app.state.pipeline
    params = request.path_params
    call = Call(request.url.path, params["name"], params.get("model_version"), request.headers, request.receive)
    answer = await pipeline.serve(call, predict_wire)
    return Response(answer.content, media_type=answer.media_type.decode(), headers=answer.headers)


def predict_wire(body: bytes, headers: Mapping[str, str], settings: InferenceSettings) -> Parsed:
    """The `:predict` wire format: pictures (`pictures.py`), else `{"instances": [{...} or [...], ...]}` rows."""
    if pictures.is_picture_request(headers, body):
        return pictures.PictureRequest(body, headers, settings.max_picture_pixels)
    return RowsRequest(body, headers.get("fermion-request-id"))


class RowsRequest:
    """`:predict` on rows: objects by column or input name, or lists; answers people can use (`columns.py`)."""

    variant: str | None = None  # the runtime's choice
    wanted: list[str] | None = None  # every output

    def __init__(self, body: bytes, request_id: str | None) -> None:
        try:
            self.instances = PredictRequest.model_validate_json(body).instances
        except ValidationError as exc:
            raise BadRequest(f"invalid request: {describe_validation(exc.errors())}") from exc
        self.request_id = request_id

    async def feeds(self, model: LoadedModel) -> dict[str, np.ndarray]:
        """The rows as the model's inputs: by column name, by input name, or positional."""
        return columns.feeds(model, self.instances)

    def encode(self, model: LoadedModel, results: dict[str, np.ndarray], headers: dict[str, str]) -> Answer:
        """Class names and probabilities, values in the label's units, or the first output's rows."""
        answer = {"model_name": model.name, "model_version": str(model.version), **columns.answer(model, results)}
        return Answer.json(answer, headers)


READY = {
    "security": [{}, *SECURITY],  # a probe needs no key; with one, the answer lists its tenant's models
    "responses": {
        "403": doc("", Forbidden)["responses"]["403"],
        "503": {
            "description": "not ready: what is down, and why (or, from a key check, the store down)",
            "content": {
                "application/json": {"schema": {"anyOf": [{"$ref": "#/components/schemas/NotReady"}, ERROR_BODY]}}
            },
        },
    },
}
PREDICT = doc("{name}", *ON_A_MODEL, PayloadTooLarge, body=PredictRequest)
PREDICT["responses"] = {
    "200": {
        "description": "predictions per row (class names or values), with probabilities for a classifier",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}},
    },
    **PREDICT["responses"],
}
PREDICT_VERSION = {
    **doc("{name}{model_version}", *ON_A_MODEL, PayloadTooLarge, body=PredictRequest),
    "responses": PREDICT["responses"],
}
CONTROL_ROUTES: list[tuple[str, str, Callable[..., Any], dict[str, Any] | None]] = [
    ("GET", "/v2/health/live", live, None),
    ("GET", "/v2/health/ready", ready, READY),
    ("GET", "/v2", server_metadata, doc("/v2")),
    ("GET", "/v2/models/{name}", model_metadata, doc("{name}", *ON_A_MODEL)),
    ("GET", "/v2/models/{name}/ready", model_ready, doc("{name}", *ON_A_MODEL)),
    ("GET", "/v2/models/{name}/versions/{model_version}", model_metadata, doc("{name}{model_version}", *ON_A_MODEL)),
    (
        "GET",
        "/v2/models/{name}/versions/{model_version}/ready",
        model_ready,
        doc("{name}{model_version}", *ON_A_MODEL),
    ),
    ("POST", "/v1/models/{name}:predict", predict, PREDICT),
    ("POST", "/v1/models/{name}/versions/{model_version}:predict", predict, PREDICT_VERSION),
]


def _ref(request: Request) -> ModelRef:
    params = request.path_params
    return ModelRef.parse(params["name"], params.get("model_version"))


def _metadata(model: LoadedModel) -> dict[str, Any]:
    sig = model.manifest.signature
    return {
        "name": model.name,
        "versions": [str(model.version)],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": t.name, "datatype": t.datatype, "shape": t.shape} for t in sig.inputs],
        "outputs": [{"name": t.name, "datatype": t.datatype, "shape": t.shape} for t in sig.outputs],
        "parameters": {
            "providers": model.providers,
            "gpu_fallback": model.gpu_fallback,
            "variant": model.variant,
            "variants": sorted(model.manifest.variants or {"fp32": "model.onnx"}),
            "labels": model.manifest.labels,
            "features": model.manifest.features,  # a table model's columns by name (model_store/features.py)
            "image": model.manifest.image,  # the image contract of a model on pictures (pictures.py)
            "metrics": model.manifest.metrics,
            "content_sha256": model.manifest.content_sha256,
        },
    }
