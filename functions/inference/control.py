"""The inference function's other routes: health, metadata, the v1 predict form, `/metrics`, OpenAPI.

A FastAPI app, built by `app.InferenceApp` on the first request that is not an infer (a probe, a
scrape, `/docs`), never before the first answer: importing and building the framework is a good
part of a cold start, and the warm infer path does not need it. It shares the inference app's
state (`services`, `security`, `readiness`) and answers errors in the same shape.

The routes take the request and return plain dicts (`response_model=None`): a typed parameter or
return makes FastAPI build validators per route and import pydantic.v1, tens of milliseconds.
Their parameters, bodies and statuses are described by hand in `openapi.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.routing import Route
from starlette.types import ASGIApp

from fermion.service import endpoints
from fermion.service.auth import Forbidden, Principal, Unauthorized
from fermion.service.auth.http import authorize
from fermion.service.responses import describe_validation, install_error_handlers

from . import pictures, preload
from .errors import TRANSLATIONS, BadRequest, ModelUnavailable, PayloadTooLarge
from .openapi import ERROR_BODY, ON_A_MODEL, SECURITY, SERVER_VERSION, PredictRequest, build_openapi, doc
from .protocol import INFER_PATHS
from .runtime import LoadedModel, ModelRef
from .services import Services, model_for, read_body

if TYPE_CHECKING:
    from .app import InferenceApp

log = logging.getLogger("fermion.inference")


def create_control_app(core: InferenceApp, infer: ASGIApp) -> FastAPI:
    """The FastAPI app beside `core`, sharing its state; `infer` serves the infer paths if one reaches it."""
    app = FastAPI(title="Fermion inference", version=SERVER_VERSION)
    app.state.services = core.state.services
    app.state.security = core.state.security
    app.state.readiness = core.state.readiness
    install_error_handlers(app, log, TRANSLATIONS)
    # The core matches the infer paths before this app sees a request; here they only make another
    # method on them a 405, as a router would.
    app.router.routes.extend(Route(path, infer, methods=["POST"], name="infer") for path in INFER_PATHS)
    for method, path, endpoint, openapi_extra in CONTROL_ROUTES:
        app.add_api_route(path, endpoint, methods=[method], response_model=None, openapi_extra=openapi_extra)
    settings = core.state.services.settings()
    metrics = core.state.services.metrics
    # The infer routes count themselves (by model); the middleware only logs (when fermion.access is on).
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
    """Rows in, the first output's rows out (and the predicted labels, when the model has them)."""
    caller = await authorize(request, "infer")
    services: Services = request.app.state.services
    raw = await read_body(request.receive, request.headers.get("content-length"), services.settings().max_body_bytes)
    ref = ModelRef.parse(request.path_params["name"])
    if pictures.is_picture_request(request.headers, raw):  # pictures in (pictures.py)
        return await _predict_pictures(request, services, caller, ref, raw)
    try:
        body = PredictRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise BadRequest(f"invalid request: {describe_validation(exc.errors())}") from exc
    route = await services.traffic.route(ref, request.headers, caller.tenant)
    with route.observed():
        model = await model_for(services, caller, route.ref)
        if len(model.inputs) != 1:
            raise BadRequest(f"model {model.name} has {len(model.inputs)} inputs; use the v2 infer route")
        ((input_name, (dtype, _)),) = model.inputs.items()
        try:
            x = np.asarray(body.instances, dtype=dtype)
        except ValueError as exc:
            raise BadRequest(f"instances must be rows of equal length: {exc}") from exc
        results = await services.scheduler.run(model, {input_name: x}, None)
    headers = route.answered(model, {input_name: x}, results, request.headers.get("fermion-request-id"))
    (out,) = results.values()
    labels = model.manifest.labels
    answer: dict[str, Any] = {
        "model_name": model.name,
        "model_version": str(model.version),
        "predictions": out.tolist(),
    }
    if labels and out.ndim == 2 and out.shape[1] == len(labels):
        answer["labels"] = [labels[i] for i in out.argmax(axis=1)]
    return JSONResponse(answer, headers=headers)


async def _predict_pictures(
    request: Request, services: Services, caller: Principal, ref: ModelRef, raw: bytes
) -> Response:
    route = await services.traffic.route(ref, request.headers, caller.tenant)
    with route.observed():
        model = await model_for(services, caller, route.ref)

        def run(m: LoadedModel, feeds: dict[str, np.ndarray]) -> Awaitable[dict[str, np.ndarray]]:
            return services.scheduler.run(m, feeds, None)

        answer = await pictures.predict(request, raw, model, run, services.settings().max_picture_pixels)
    return JSONResponse(answer)


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
    ("POST", "/v1/models/{name}:predict", predict, doc("{name}", *ON_A_MODEL, PayloadTooLarge, body=PredictRequest)),
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
            "image": model.manifest.image,  # the image contract of a model on pictures (pictures.py)
            "metrics": model.manifest.metrics,
            "content_sha256": model.manifest.content_sha256,
        },
    }
