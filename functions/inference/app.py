"""The inference function: Open Inference Protocol v2 over ONNX Runtime. No torch here, ever.

`create_app` builds it from the route table below; `app` (built on first use) is the process's,
for uvicorn and the Lambda handler. Under Mangum the ASGI lifespan runs on every invocation, so
nothing is loaded in a lifespan: the runtime comes from a cached getter, and `FERMION_PRELOAD`
warms a model at import.

The two infer routes are plain Starlette routes that take the request and parse it themselves
(`protocol.py`, which names every problem): on a small model, FastAPI's per-request dependency
solving and path-parameter validation cost more than the model run (bench/serving.py measured
it). The control routes take the request too and return plain dicts (`response_model=None`): a
typed parameter or return makes FastAPI build validators per route and import pydantic.v1,
tens of milliseconds of cold start. Every route is still described in the OpenAPI document
(`openapi.py`).
"""

from __future__ import annotations

from . import preload

_preloading = preload.start()  # before the heavy imports below, so the model loads beside them

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.routing import Route

from fermion.model_store import IntegrityError, KeyStore, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from fermion.events import Bus

from ..responses import HTTPError, describe_validation, install_error_handlers, translate
from ..security import Auditor, Authenticator, Principal, Unauthorized
from ..security.http import SecurityState, authorize
from ..telemetry import endpoints
from ..telemetry.emf import Emf
from ..telemetry.inference import InferenceMetrics
from ..telemetry.readiness import Readiness, store_check
from . import images
from .errors import TRANSLATIONS, BadRequest, ModelUnavailable, PayloadTooLarge
from .openapi import INFER_PATHS, SERVER_VERSION, PredictRequest, build_openapi, doc
from .protocol import HEADER_LENGTH, InferenceRequest, encode_response, parse_request, to_array
from .routing import Traffic
from .runtime import LoadedModel, ModelRef, ModelRuntime, default_runtime
from .scheduler import Scheduler
from .settings import InferenceSettings, get_settings

log = logging.getLogger("fermion.inference")
VARIANTS = ("auto", "fp32", "int8", "fp16")
# What an infer request can be refused with: our errors, and the lower layers' that TRANSLATIONS maps.
REFUSALS: tuple[type[Exception], ...] = (HTTPError, *(row.theirs for row in TRANSLATIONS))
LOAD_FAILURES = (ModelUnavailable, IntegrityError, StoreUnavailable)


@dataclass(frozen=True)
class Services:
    """What the routes work with, from `request.app.state.services`."""

    runtime: Callable[[], ModelRuntime]
    settings: Callable[[], InferenceSettings]
    scheduler: Scheduler
    traffic: Traffic  # issue 17: weighted aliases, per-version telemetry, shadow
    metrics: InferenceMetrics | None = None


def create_app(
    runtime: Callable[[], ModelRuntime] = default_runtime,
    settings: Callable[[], InferenceSettings] = get_settings,
    *,
    batching: bool = True,
) -> FastAPI:
    """The inference app over `runtime()` and `settings()` (called per request; cached getters).

    `batching=False` is for one request per invocation (Mangum on Lambda): nothing to merge.
    """
    app = FastAPI(title="Fermion inference", version=SERVER_VERSION)
    emf = Emf("inference") if settings().lambda_function else None
    metrics = endpoints.metrics_of(
        settings(), lambda registry: InferenceMetrics(registry, lambda: runtime().loaded, emf)
    )
    scheduler = Scheduler(
        settings, lambda: runtime().loaded, batching=batching, on_run=metrics.ran if metrics is not None else None
    )
    app.state.services = Services(runtime, settings, scheduler, Traffic(runtime, settings), metrics)
    app.state.readiness = Readiness(
        "inference",
        {"store": store_check(lambda: runtime().registry.store)},
        (StoreError, ModelUnavailable),
        metrics.registry if metrics else None,
    )
    app.state.security = SecurityState(
        Authenticator(lambda: KeyStore(runtime().registry.store), settings(), tenant=settings().tenant),
        Auditor(_AuditBus(settings).get),
    )
    install_error_handlers(app, log, TRANSLATIONS)
    # First in the table (before FastAPI's /docs routes): the route most requests take is matched first.
    app.router.routes[:0] = [Route(path, infer, methods=["POST"], name="infer") for path in INFER_PATHS]
    for method, path, endpoint, openapi_extra in CONTROL_ROUTES:
        app.add_api_route(path, endpoint, methods=[method], response_model=None, openapi_extra=openapi_extra)
    # The infer routes count themselves (by model); the middleware only logs (when fermion.access is on).
    endpoints.install(app, settings(), metrics.registry if metrics else None, function="inference", http_metrics=False)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app


async def infer(request: Request) -> Response:
    """Run the model on OIP v2 tensors (JSON, or the binary tensor extension)."""
    services: Services = request.app.state.services
    metrics = services.metrics
    if metrics is None:
        return (await _infer(request, services))[0]
    started = time.perf_counter()
    try:
        response, model = await _infer(request, services)
    except REFUSALS as exc:
        ours = exc if isinstance(exc, HTTPError) else translate(exc, TRANSLATIONS)
        metrics.refused_request(type(exc).__name__, ours.status)
        raise
    params = request.path_params
    alias = params["name"].partition("@")[2] or ("" if "model_version" in params else services.settings().default_alias)
    metrics.answered(model.name, model.version, alias, started)
    return response


async def _infer(request: Request, services: Services) -> tuple[Response, LoadedModel]:
    caller = await authorize(request, "infer")
    body = await _read_body(request, services.settings().max_body_bytes)
    payload, binary = parse_request(body, request.headers.get(HEADER_LENGTH))
    variant = (payload.parameters or {}).get("variant")
    if variant is not None and variant not in VARIANTS:
        raise BadRequest(f"parameters.variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    route = await services.traffic.route(_ref(request), request.headers, caller.tenant)  # which version answers
    with route.observed():
        model = await _model(services, caller, route.ref, variant)
        feeds = {t.name: to_array(t, binary) for t in payload.inputs}
        if any(a.dtype == object for a in feeds.values()):  # BYTES: encoded pictures (images.py)
            feeds = await images.decode_feeds(feeds, model, services.settings().max_picture_pixels)
        wanted = [o.name for o in payload.outputs] if payload.outputs else None
        results = await services.scheduler.run(model, feeds, wanted)
    headers = route.answered(model, feeds, results, payload.id)
    content, header_length = encode_response(
        model.name, model.version, payload.id, results, model.variant, _binary_outputs(payload, results)
    )
    if header_length is None:
        return Response(content, media_type="application/json", headers=headers), model
    headers["Inference-Header-Content-Length"] = str(header_length)
    return Response(content, media_type="application/octet-stream", headers=headers), model


async def live() -> dict[str, bool]:
    """The process is up."""
    return {"live": True}


async def ready(request: Request) -> dict[str, Any] | JSONResponse:
    """Ready to serve (a probe: no key needed; 503 naming what is down); with a key, lists its tenant's models."""
    if (problem := preload.problem(_preloading)) is not None:  # not ready until the preload model serves
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
    return _metadata(await _model(request.app.state.services, caller, _ref(request)))


async def model_ready(request: Request) -> dict[str, Any]:
    """Loads the model if needed; ready once its session exists."""
    caller = await authorize(request, "infer")
    model = await _model(request.app.state.services, caller, _ref(request))
    return {"name": model.name, "version": str(model.version), "ready": True}


async def predict(request: Request) -> Response:
    """Rows in, the first output's rows out (and the predicted labels, when the model has them)."""
    caller = await authorize(request, "infer")
    services: Services = request.app.state.services
    raw = await _read_body(request, services.settings().max_body_bytes)
    ref = ModelRef.parse(request.path_params["name"])
    if images.is_picture_request(request.headers, raw):  # pictures in (images.py)
        return await _predict_pictures(request, services, caller, ref, raw)
    try:
        body = PredictRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise BadRequest(f"invalid request: {describe_validation(exc.errors())}") from exc
    route = await services.traffic.route(ref, request.headers, caller.tenant)
    with route.observed():
        model = await _model(services, caller, route.ref)
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
        model = await _model(services, caller, route.ref)

        def run(m: LoadedModel, feeds: dict[str, np.ndarray]) -> Awaitable[dict[str, np.ndarray]]:
            return services.scheduler.run(m, feeds, None)

        answer = await images.predict(request, raw, model, run, services.settings().max_picture_pixels)
    return JSONResponse(answer)


CONTROL_ROUTES: list[tuple[str, str, Callable[..., Any], dict[str, Any] | None]] = [
    ("GET", "/v2/health/live", live, None),
    ("GET", "/v2/health/ready", ready, None),
    ("GET", "/v2", server_metadata, None),
    ("GET", "/v2/models/{name}", model_metadata, doc("/v2/models/{name}")),
    ("GET", "/v2/models/{name}/ready", model_ready, doc("/v2/models/{name}")),
    ("GET", "/v2/models/{name}/versions/{model_version}", model_metadata, doc("{name}/versions/{model_version}")),
    ("GET", "/v2/models/{name}/versions/{model_version}/ready", model_ready, doc("{name}/versions/{model_version}")),
    ("POST", "/v1/models/{name}:predict", predict, doc("{name}", PredictRequest)),
]


async def _model(services: Services, caller: Principal, ref: ModelRef, variant: str | None = None) -> LoadedModel:
    """The caller's tenant's model: the warm path does no I/O and hops no thread; a load runs off the loop."""
    models = services.runtime()
    model = models.cached(ref, variant, caller.tenant)
    if model is None:
        try:
            model = await asyncio.to_thread(models.get, ref, caller.tenant, variant)
        except LOAD_FAILURES as exc:
            if services.metrics is not None:
                services.metrics.load_failed(type(exc).__name__)
            raise
        if services.metrics is not None:
            services.metrics.loaded(model, model.load_seconds)
    return model


class _AuditBus:
    """A NATS connection for audit records, made on first need (never on the request path's warm part)."""

    def __init__(self, settings: Callable[[], InferenceSettings]) -> None:
        self._settings = settings
        self._bus: Bus | None = None

    async def get(self) -> Bus:
        from fermion.events import Bus, BusUnavailable  # nats-py loads with the first audit record

        settings = self._settings()
        if settings.nats_url is None:
            raise BusUnavailable("no FERMION_NATS_URL: audit records of this function are only logged")
        if self._bus is None or not self._bus.connected:
            self._bus = await Bus.from_settings(settings, name="fermion-inference", timeout_s=3.0)
        return self._bus


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with a 413 as soon as it is known to be over `limit` (never buffered whole)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    if declared is not None:
        return await request.body()  # at most `limit` bytes, as declared
    chunks, size = [], 0
    async for chunk in request.stream():  # chunked: count as it arrives
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes ({size} received so far)")
        chunks.append(chunk)
    return b"".join(chunks)


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
            "image": model.manifest.image,  # the image contract of a model on pictures (images.py)
            "metrics": model.manifest.metrics,
            "content_sha256": model.manifest.content_sha256,
        },
    }


def _binary_outputs(payload: InferenceRequest, results: dict[str, np.ndarray]) -> set[str]:
    """Outputs the client asked to receive as raw bytes (per output, or all by request parameter)."""
    if payload.outputs:
        return {o.name for o in payload.outputs if (o.parameters or {}).get("binary_data")}
    return set(results) if (payload.parameters or {}).get("binary_data_output") else set()


def __getattr__(name: str) -> Any:
    # `app` is built on first use, so a process that builds its own (the Lambda handler) builds one.
    if name == "app":
        app = globals()["app"] = create_app()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
