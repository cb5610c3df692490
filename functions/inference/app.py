"""The inference function: Open Inference Protocol v2 over ONNX Runtime. No torch here, ever.

`create_app` builds it; `app` (built on first use) is the process's, for uvicorn and the Lambda
handler. Under Mangum the ASGI lifespan runs on every invocation, so nothing is loaded in a
lifespan: the runtime comes from a cached getter, and `FERMION_PRELOAD` warms a model at import.

The two infer routes are plain Starlette routes that take the request and parse it themselves
(`protocol.py`, which names every problem): on a small model, FastAPI's per-request dependency
solving and path-parameter validation cost more than the model run (bench/serving.py measured
it). They are still described in the OpenAPI document. The rest is ordinary FastAPI.
"""

from __future__ import annotations

from . import preload

_preloading = preload.start()  # before the heavy imports below, so the model loads beside them

import asyncio
import logging
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.routing import Route

from ..responses import describe_validation, install_error_handlers
from . import images
from .batching import Batcher
from .errors import BadRequest, ModelNotFound, ModelUnavailable, PayloadTooLarge
from .protocol import HEADER_LENGTH, InferenceRequest, InferenceResponse, encode_response, parse_request, to_array
from .runtime import LoadedModel, ModelRef, ModelRuntime, default_runtime, rows_of
from .settings import InferenceSettings, get_settings

log = logging.getLogger("fermion.inference")
INLINE_ELEMENTS = 65_536  # tensors up to this many elements may run on the event loop...
INLINE_RUN_MS = 0.5  # ...when the model's recent cost per row, times the request's rows, is below this
VARIANTS = ("auto", "fp32", "int8", "fp16")
INFER_PATHS = ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{model_version}/infer")

try:
    SERVER_VERSION = version("fermion")
except PackageNotFoundError:
    SERVER_VERSION = "0+unknown"


class PredictRequest(BaseModel):
    """POST /v1/models/{name}:predict: rows of features, the KServe v1 convenience form."""

    model_config = ConfigDict(extra="forbid")

    instances: list[list[float]] = Field(min_length=1)


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
    app.state.runtime, app.state.settings = runtime, settings
    install_error_handlers(app, log)

    async def infer(request: Request) -> Response:
        """Run the model on OIP v2 tensors (JSON, or the binary tensor extension)."""
        config, models = settings(), runtime()
        body = await _read_body(request, config.max_body_bytes)
        payload, binary = parse_request(body, request.headers.get(HEADER_LENGTH))
        variant = (payload.parameters or {}).get("variant")
        if variant is not None and variant not in VARIANTS:
            raise BadRequest(f"parameters.variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
        ref = _ref(request)
        # The warm path does no I/O and hops no thread; a load (fetch, verify, session) runs off the loop.
        model = models.cached(ref, variant)
        if model is None:
            model = await asyncio.to_thread(models.get, ref, None, variant)
        feeds = {t.name: to_array(t, binary) for t in payload.inputs}
        if any(a.dtype == object for a in feeds.values()):  # BYTES: encoded pictures (images.py)
            feeds = await images.decode_feeds(feeds, model, config.max_picture_pixels)
        wanted = [o.name for o in payload.outputs] if payload.outputs else None
        results = await _run(model, feeds, wanted, config, batching)
        content, header_length = encode_response(
            model.name, model.version, payload.id, results, model.variant, _binary_outputs(payload, results)
        )
        if header_length is None:
            return Response(content, media_type="application/json")
        return Response(
            content,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(header_length)},
        )

    # First in the table (before FastAPI's /docs routes): the route most requests take is matched first.
    app.router.routes[:0] = [Route(path, infer, methods=["POST"], name="infer") for path in INFER_PATHS]

    # The routes below take the request itself and return plain dicts (`response_model=None`): a typed
    # parameter or return makes FastAPI build validators per route and import pydantic.v1 to check
    # it is not a v1 model, tens of milliseconds of cold start before the first answer. Their
    # parameters and bodies are described for OpenAPI by hand (`_doc`).

    @app.get("/v2/health/live", response_model=None)
    async def live() -> dict[str, bool]:
        """The process is up."""
        return {"live": True}

    @app.get("/v2/health/ready", response_model=None)
    async def ready() -> dict[str, Any]:
        """Ready to serve; lists the loaded models with the providers their sessions really got."""
        return {
            "ready": True,
            "models": [
                {"name": m.name, "version": m.version, "providers": m.providers, "gpu_fallback": m.gpu_fallback}
                for m in runtime().loaded
            ],
        }

    @app.get("/v2", response_model=None)
    async def server_metadata() -> dict[str, Any]:
        """Server metadata."""
        return {"name": "fermion", "version": SERVER_VERSION, "extensions": ["binary_tensor_data"]}

    async def model_metadata(request: Request) -> dict[str, Any]:
        """Inputs, outputs, versions, and the providers the session got."""
        model = await asyncio.to_thread(runtime().get, _ref(request))
        return _metadata(model)

    async def model_ready(request: Request) -> dict[str, Any]:
        """Loads the model if needed; ready once its session exists."""
        model = await asyncio.to_thread(runtime().get, _ref(request))
        return {"name": model.name, "version": str(model.version), "ready": True}

    for path in ("/v2/models/{name}", "/v2/models/{name}/versions/{model_version}"):
        app.add_api_route(path, model_metadata, response_model=None, openapi_extra=_doc(path))
        app.add_api_route(path + "/ready", model_ready, response_model=None, openapi_extra=_doc(path))

    @app.post("/v1/models/{name}:predict", response_model=None, openapi_extra=_doc("{name}", PredictRequest))
    async def predict(request: Request) -> dict[str, Any]:
        """Rows in, the first output's rows out (and the predicted labels, when the model has them)."""
        raw = await _read_body(request, settings().max_body_bytes)
        if images.is_picture_request(request.headers, raw):  # pictures in (images.py)
            run = lambda m, feeds: _run(m, feeds, None, settings(), batching)  # noqa: E731
            return await images.predict(request, raw, runtime(), run, settings().max_picture_pixels)
        try:
            body = PredictRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise BadRequest(f"invalid request: {describe_validation(exc.errors())}") from exc
        ref, models = ModelRef.parse(request.path_params["name"]), runtime()
        model = models.cached(ref)
        if model is None:
            model = await asyncio.to_thread(models.get, ref)
        (input_name,) = model.inputs if len(model.inputs) == 1 else (None,)
        if input_name is None:
            raise BadRequest(f"model {model.name} has {len(model.inputs)} inputs; use the v2 infer route")
        try:
            x = np.asarray(body.instances, dtype=model.inputs[input_name][0])
        except ValueError as exc:
            raise BadRequest(f"instances must be rows of equal length: {exc}") from exc
        (out,) = (await _run(model, {input_name: x}, None, settings(), batching)).values()
        labels = model.manifest.labels
        answer: dict[str, Any] = {
            "model_name": model.name,
            "model_version": str(model.version),
            "predictions": out.tolist(),
        }
        if labels and out.ndim == 2 and out.shape[1] == len(labels):
            answer["labels"] = [labels[i] for i in out.argmax(axis=1)]
        return answer

    def openapi() -> dict[str, Any]:
        """FastAPI's document plus the two infer routes, which it does not see."""
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
            doc.setdefault("components", {}).setdefault("schemas", {})
            for model in (InferenceRequest, InferenceResponse, PredictRequest):
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                doc["components"]["schemas"].update(schema.pop("$defs", {}))
                doc["components"]["schemas"][model.__name__] = schema
            for path in INFER_PATHS:
                doc["paths"][path] = {"post": _infer_operation(path)}
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _doc(path: str, body: type[BaseModel] | None = None) -> dict[str, Any]:
    """OpenAPI for a route that reads its own path parameters (and JSON body)."""
    names = [n for n in ("name", "model_version") if "{" + n + "}" in path]
    doc: dict[str, Any] = {
        "parameters": [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]
    }
    if body is not None:
        schema = {"$ref": f"#/components/schemas/{body.__name__}"}
        doc["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    return doc


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


def _infer_operation(path: str) -> dict[str, Any]:
    ref = "#/components/schemas/"
    return {
        "summary": "Infer",
        "description": "Run the model on OIP v2 tensors; `name` may be NAME or NAME@ALIAS.",
        "operationId": "infer" + ("_version" if "model_version" in path else ""),
        **_doc(path, InferenceRequest),
        "responses": {
            "200": {"content": {"application/json": {"schema": {"$ref": ref + "InferenceResponse"}}}},
            **{
                str(error.status): {"description": (error.__doc__ or "").partition(": ")[2]}
                for error in (BadRequest, ModelNotFound, PayloadTooLarge, ModelUnavailable)
            },
        },
    }


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


async def _run(
    model: LoadedModel,
    feeds: dict[str, np.ndarray],
    wanted: list[str] | None,
    settings: InferenceSettings,
    batching: bool,
) -> dict[str, np.ndarray]:
    """Route a run: inline when cheap, else batched with concurrent requests, else a worker thread.

    Cheap is the model's recent cost per row when run alone, times this request's rows: a model
    whose rows take microseconds is never batched (a batch would only add a thread hop and a
    wait), and a batched model's merged runs, cheaper per row, never make it look cheap.
    """
    if model.row_ms * rows_of(feeds) < INLINE_RUN_MS and sum(a.size for a in feeds.values()) <= INLINE_ELEMENTS:
        return model.run(feeds, wanted)  # a thread hop would cost more than the run itself
    batcher: Batcher | None = model.batcher
    options = {
        "batching": float(settings.batching and batching),
        "max_batch_size": settings.max_batch_size,
        "max_delay_ms": settings.max_delay_ms,
        **settings.batch_overrides.get(model.name, {}),
    }
    if options["batching"]:
        if batcher is None:
            batcher = model.batcher = Batcher(
                model, max_batch_size=int(options["max_batch_size"]), max_delay_ms=float(options["max_delay_ms"])
            )
        if batcher.batchable(feeds):
            return await batcher.run(feeds, wanted)
    return await asyncio.to_thread(model.run, feeds, wanted)


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
