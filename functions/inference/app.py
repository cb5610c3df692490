"""The inference function: Open Inference Protocol v2 over ONNX Runtime. No torch here, ever.

Under Mangum the ASGI lifespan runs on every invocation, so nothing is loaded in a lifespan:
the runtime comes from a cached getter, and `FERMION_PRELOAD` warms a model at import.
"""

from __future__ import annotations

from . import preload

_preloading = preload.start()  # before the heavy imports below, so the model loads beside them

import asyncio
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ..responses import install_error_handlers
from .batching import Batcher
from .errors import BadRequest, PayloadTooLarge
from .protocol import HEADER_LENGTH, InferenceRequest, InferenceResponse, encode_response, parse_request, to_array
from .runtime import LoadedModel, ModelRef, ModelRuntime, default_runtime
from .settings import InferenceSettings, get_settings

log = logging.getLogger("fermion.inference")
INLINE_ELEMENTS = 65_536  # tensors up to this many elements may run on the event loop...
INLINE_RUN_MS = 0.5  # ...when the model's recent runs took less than this
BATCHING = {"enabled": True}

try:
    SERVER_VERSION = version("fermion")
except PackageNotFoundError:
    SERVER_VERSION = "0+unknown"


# Dependencies are coroutines on purpose: FastAPI runs a plain `def` dependency in its thread pool,
# a hop per request that costs more than the model run on the warm path.
async def get_runtime() -> ModelRuntime:
    """Dependency: the model runtime."""
    return default_runtime()


async def current_settings() -> InferenceSettings:
    """Dependency: the settings."""
    return get_settings()


Runtime = Annotated[ModelRuntime, Depends(get_runtime)]
Settings = Annotated[InferenceSettings, Depends(current_settings)]

app = FastAPI(title="Fermion inference", version=SERVER_VERSION)
install_error_handlers(app, log)


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
            "metrics": model.manifest.metrics,
            "content_sha256": model.manifest.content_sha256,
        },
    }


@app.get("/v2/health/live")
async def live() -> dict[str, bool]:
    """The process is up."""
    return {"live": True}


@app.get("/v2/health/ready")
async def ready(runtime: Runtime) -> dict[str, Any]:
    """Ready to serve; lists the loaded models with the providers their sessions really got."""
    return {
        "ready": True,
        "models": [
            {"name": m.name, "version": m.version, "providers": m.providers, "gpu_fallback": m.gpu_fallback}
            for m in runtime.loaded
        ],
    }


@app.get("/v2")
async def server_metadata() -> dict[str, Any]:
    """Server metadata."""
    return {"name": "fermion", "version": SERVER_VERSION, "extensions": []}


@app.get("/v2/models/{name}")
@app.get("/v2/models/{name}/versions/{model_version}")
async def model_metadata(name: str, runtime: Runtime, model_version: str | None = None) -> dict[str, Any]:
    """Inputs, outputs, versions, and the providers the session got."""
    model = await asyncio.to_thread(runtime.get, ModelRef.parse(name, model_version))
    return _metadata(model)


@app.get("/v2/models/{name}/ready")
@app.get("/v2/models/{name}/versions/{model_version}/ready")
async def model_ready(name: str, runtime: Runtime, model_version: str | None = None) -> dict[str, Any]:
    """Loads the model if needed; ready once its session exists."""
    model = await asyncio.to_thread(runtime.get, ModelRef.parse(name, model_version))
    return {"name": model.name, "version": str(model.version), "ready": True}


@app.post("/v2/models/{name}/infer", response_model=InferenceResponse, response_model_exclude_none=True)
@app.post(
    "/v2/models/{name}/versions/{model_version}/infer",
    response_model=InferenceResponse,
    response_model_exclude_none=True,
)
async def infer(
    name: str, request: Request, runtime: Runtime, settings: Settings, model_version: str | None = None
) -> Response:
    """Run the model on JSON tensors."""
    body = await request.body()
    if len(body) > settings.max_body_bytes:
        raise PayloadTooLarge(f"request body is {len(body)} bytes; the limit is {settings.max_body_bytes}")
    payload, binary = parse_request(body, request.headers.get(HEADER_LENGTH))
    variant = (payload.parameters or {}).get("variant")
    if variant is not None and variant not in ("auto", "fp32", "int8", "fp16"):
        raise BadRequest(f"parameters.variant must be auto, fp32, int8 or fp16; got {variant!r}")
    ref = ModelRef.parse(name, model_version)
    # The warm path does no I/O and hops no thread; a load (fetch, verify, session) runs off the loop.
    model = runtime.cached(ref, variant) or await asyncio.to_thread(runtime.get, ref, None, variant)
    feeds = {t.name: to_array(t, binary) for t in payload.inputs}
    wanted = [o.name for o in payload.outputs] if payload.outputs else None
    results = await _run(model, feeds, wanted, settings)
    content, header_length = encode_response(
        model.name, model.version, payload.id, results, model.variant, _binary_outputs(payload, results)
    )
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content, media_type="application/octet-stream", headers={"Inference-Header-Content-Length": str(header_length)}
    )


class PredictRequest(BaseModel):
    """POST /v1/models/{name}:predict: rows of features, the KServe v1 convenience form."""

    model_config = ConfigDict(extra="forbid")

    instances: list[list[float]] = Field(min_length=1)


@app.post("/v1/models/{name}:predict")
async def predict(name: str, body: PredictRequest, runtime: Runtime, settings: Settings) -> dict[str, Any]:
    """Rows in, the first output's rows out (and the predicted labels, when the model has them)."""
    ref = ModelRef.parse(name)
    model = runtime.cached(ref) or await asyncio.to_thread(runtime.get, ref)
    (input_name,) = model.inputs if len(model.inputs) == 1 else (None,)
    if input_name is None:
        raise BadRequest(f"model {model.name} has {len(model.inputs)} inputs; use the v2 infer route")
    try:
        x = np.asarray(body.instances, dtype=model.inputs[input_name][0])
    except ValueError as exc:
        raise BadRequest(f"instances must be rows of equal length: {exc}") from exc
    (out,) = (await _run(model, {input_name: x}, None, settings)).values()
    labels = model.manifest.labels
    answer: dict[str, Any] = {
        "model_name": model.name,
        "model_version": str(model.version),
        "predictions": out.tolist(),
    }
    if labels and out.ndim == 2 and out.shape[1] == len(labels):
        answer["labels"] = [labels[i] for i in out.argmax(axis=1)]
    return answer


async def _run(
    model: LoadedModel, feeds: dict[str, np.ndarray], wanted: list[str] | None, settings: InferenceSettings
) -> dict[str, np.ndarray]:
    """Route a run: inline when cheap and nothing is queued, batched under load, else a worker thread."""
    batcher: Batcher | None = model.batcher
    idle = batcher is None or batcher.idle
    if idle and model.run_ms < INLINE_RUN_MS and sum(a.size for a in feeds.values()) <= INLINE_ELEMENTS:
        return model.run(feeds, wanted)  # a thread hop would cost more than the run itself
    options = {
        "batching": float(settings.batching and BATCHING["enabled"]),
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


def disable_batching() -> None:
    """One request per invocation (Mangum on Lambda): nothing to merge."""
    BATCHING["enabled"] = False


def _binary_outputs(payload: InferenceRequest, results: dict[str, np.ndarray]) -> set[str]:
    """Outputs the client asked to receive as raw bytes (per output, or all by request parameter)."""
    if payload.outputs:
        return {o.name for o in payload.outputs if (o.parameters or {}).get("binary_data")}
    return set(results) if (payload.parameters or {}).get("binary_data_output") else set()
