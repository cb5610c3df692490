"""The inference function: Open Inference Protocol v2 over ONNX Runtime. No torch here, ever.

`create_app` builds an `InferenceApp`, a plain ASGI app: it serves the two infer routes itself
(`OipRequest` below is their wire format; `pipeline.py` takes the request from authorization to
the counted answer, as it does for every route that runs a model) and hands every other request
(health, metadata, `/v1/...:predict`, `/metrics`, OpenAPI, `/docs`) to a FastAPI app (`control.py`)
that it builds on the first such request. On a small model, a framework's per-request work
(middleware stack, router, request objects, dependency solving) costs more than the model run, and
importing it is a good part of a cold start; bench/serving.py and bench/cold_start.py measure both
against a bare ASGI app.

`app` (built on first use) is the process's, for uvicorn and the Lambda handler. Under Mangum the
ASGI lifespan runs on every invocation, so nothing is loaded in one: the runtime comes from a
cached getter, and `FERMION_PRELOAD` warms a model at import. What the app holds open (the NATS
connections of audit records and of telemetry) is flushed and closed in `aclose()`: at lifespan
shutdown, or when the entry point's server has stopped (it runs without the lifespan).
"""

from __future__ import annotations

from . import preload

preloading = preload.start()  # before the heavy imports below, so the model loads beside them

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from pydantic_core import to_json

from fermion.model_store import KeyStore, StoreError
from fermion.service.auth import Auditor, Authenticator
from fermion.service.auth.state import SecurityState
from fermion.service.observability.access import AccessMiddleware
from fermion.service.observability.emf import Emf
from fermion.service.observability.readiness import Readiness, store_check
from fermion.service.responses import error_answer

from .counting import AfterFirstAnswer, Counts, EmfCounts
from .errors import TRANSLATIONS, BadRequest, ModelUnavailable
from .pipeline import Answer, Call, Pipeline
from .protocol import HEADER_LENGTH, INFER_PATHS, InferenceRequest, encode_response, parse_request, to_array
from .routing import Traffic
from .runtime import LoadedModel, ModelRuntime, default_runtime
from .scheduler import Scheduler
from .services import AuditBus, Disconnected, Services
from .settings import InferenceSettings, get_settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import Receive, Scope, Send

    from fermion.service.observability.inference import InferenceMetrics

log = logging.getLogger("fermion.inference")
VARIANTS = ("auto", "fp32", "int8", "fp16")
INFER_PATH = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<model_version>[^/]+))?/infer")


class InferRoute(NamedTuple):
    """What a router would record in the scope: the template the access log and traces name."""

    path: str


ROUTES = {False: InferRoute(INFER_PATHS[0]), True: InferRoute(INFER_PATHS[1])}


def create_app(
    runtime: Callable[[], ModelRuntime] = default_runtime,
    settings: Callable[[], InferenceSettings] = get_settings,
    *,
    batching: bool = True,
) -> InferenceApp:
    """The inference app over `runtime()` and `settings()` (called per request; cached getters).

    `batching=False` is for one request per invocation (Mangum on Lambda): nothing to merge.
    """
    return InferenceApp(runtime, settings, batching=batching)


class InferenceApp:
    """The ASGI app: the infer routes served here, every other request by `control.py`'s FastAPI app."""

    def __init__(
        self, runtime: Callable[[], ModelRuntime], settings: Callable[[], InferenceSettings], *, batching: bool
    ) -> None:
        emf = Emf("inference") if settings().lambda_function else None
        self._unbuilt: AfterFirstAnswer | None = None  # the metrics, until the first answer is out
        metrics: Counts | None = None
        if settings().metrics and emf is not None:
            metrics = EmfCounts(emf)
        elif settings().metrics:
            metrics = self._unbuilt = AfterFirstAnswer(lambda: _inference_metrics(runtime))
        # `metrics.ran` looked up per run: once the metrics are built it is theirs (counting.py).
        on_run = None if metrics is None else lambda *run: metrics.ran(*run)
        scheduler = Scheduler(settings, lambda: runtime().loaded, batching=batching, on_run=on_run)
        services = Services(runtime, settings, scheduler, Traffic(runtime, settings), metrics, preloading)
        self.audit = AuditBus(settings)
        security = SecurityState(
            Authenticator(lambda: KeyStore(runtime().registry.store), settings(), tenant=settings().tenant),
            Auditor(self.audit.get),
        )
        self.pipeline = Pipeline(services, security)
        self.state = SimpleNamespace(services=services, security=security, pipeline=self.pipeline)
        self._store_check = store_check(lambda: runtime().registry.store)
        # The access log and the trace span, as every other route gets them (each costs nothing when off).
        self.infer = AccessMiddleware(
            self._serve_infer, function="inference", metrics=None, log=settings().access_log, emf=emf is not None
        )
        self._control: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and (match := INFER_PATH.fullmatch(scope["path"])):
            version = match["model_version"]
            scope["path_params"] = {"name": match["name"]} if version is None else match.groupdict()
            scope["route"] = ROUTES[version is not None]
            await self.infer(scope, receive, send)
            if self._unbuilt is not None:  # the first answer is out: now the metrics (counting.py)
                self._unbuilt.build()
                self._unbuilt = None
            return
        if scope["type"] == "lifespan":  # nothing starts with the app; aclose() at its stop
            await _lifespan(receive, send, self.aclose)
            return
        await self.control(scope, receive, send)

    async def aclose(self) -> None:
        """At shutdown: the audit records still going out and the telemetry since its last interval, then
        their NATS connections close. Never raises: what fails is logged, and the stop goes on."""
        try:
            await self.state.security.auditor.drain()
            await self.audit.close()
        except Exception:
            log.exception("audit records: not closed cleanly at shutdown")
        try:
            await self.state.services.traffic.telemetry.close()
        except Exception:
            log.exception("telemetry: not flushed at shutdown")

    @property
    def control(self) -> FastAPI:
        """The FastAPI app for every other route, built on first use (see the module's docstring)."""
        if self._control is None:
            from .control import create_control_app  # control imports nothing of this module

            metrics = self.state.services.metrics  # its registry: /metrics, and the readiness gauge
            self.state.readiness = Readiness(
                "inference",
                {"store": self._store_check},
                (StoreError, ModelUnavailable),
                metrics.registry if metrics is not None else None,
            )
            self._control = create_control_app(self.state, self.infer)
        return self._control

    @property
    def routes(self) -> list[Any]:
        """Every route the function serves (the control app lists the infer routes too)."""
        return self.control.routes

    def openapi(self) -> dict[str, Any]:
        """The function's OpenAPI document (every route, the infer routes included)."""
        return self.control.openapi()

    async def _serve_infer(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The first of a repeated header wins, as Starlette's `Headers.get` answers.
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in reversed(scope["headers"])}
        params = scope["path_params"]
        call = Call(scope["path"], params["name"], params.get("model_version"), headers, receive)
        try:
            answer = await self.pipeline.serve(call, OipRequest.parse)
        except Disconnected:
            return
        except Exception as exc:
            status, body, error_headers = error_answer(exc, TRANSLATIONS, log, f"POST {scope['path']}")
            await _answer(send, status, to_json(body), b"application/json", error_headers)
        else:
            await _answer(send, 200, answer.content, answer.media_type, answer.headers)


class OipRequest:
    """The OIP v2 wire format (JSON, or the binary tensor extension) of the infer routes."""

    __slots__ = ("binary", "max_picture_pixels", "payload", "request_id", "variant", "wanted")

    def __init__(self, payload: InferenceRequest, binary: dict[str, np.ndarray], max_picture_pixels: int) -> None:
        self.payload, self.binary, self.max_picture_pixels = payload, binary, max_picture_pixels
        self.request_id = payload.id
        self.wanted = [o.name for o in payload.outputs] if payload.outputs else None
        self.variant = (payload.parameters or {}).get("variant")
        if self.variant is not None and self.variant not in VARIANTS:
            raise BadRequest(f"parameters.variant must be one of {', '.join(VARIANTS)}; got {self.variant!r}")

    @classmethod
    def parse(cls, body: bytes, headers: Mapping[str, str], settings: InferenceSettings) -> OipRequest:
        """A request body in JSON, or JSON then tensors when `Inference-Header-Content-Length` says so."""
        payload, binary = parse_request(body, headers.get(HEADER_LENGTH))
        return cls(payload, binary, settings.max_picture_pixels)

    async def feeds(self, model: LoadedModel) -> dict[str, np.ndarray]:
        """The input tensors as arrays; BYTES inputs are a table model's categories, else pictures to decode."""
        if model.manifest.features:
            from .columns import oip_feeds  # a table model's text columns: not on every cold start

            return oip_feeds(self.payload.inputs, self.binary)
        feeds = {t.name: to_array(t, self.binary) for t in self.payload.inputs}
        if any(a.dtype == object for a in feeds.values()):
            from . import pictures  # its multipart parser is for pictures only: not on every cold start

            feeds = await pictures.decode_feeds(feeds, model, self.max_picture_pixels)
        return feeds

    def encode(self, model: LoadedModel, results: dict[str, np.ndarray], headers: dict[str, str]) -> Answer:
        """The OIP v2 answer: JSON, or JSON then raw tensors for the outputs asked for as binary."""
        content, header_length = encode_response(
            model.name, model.version, self.payload.id, results, model.variant, self._binary_outputs(results)
        )
        if header_length is None:
            return Answer(content, b"application/json", headers)
        headers["Inference-Header-Content-Length"] = str(header_length)
        return Answer(content, b"application/octet-stream", headers)

    def _binary_outputs(self, results: dict[str, np.ndarray]) -> set[str]:
        """Outputs the client asked to receive as raw bytes (per output, or all by request parameter)."""
        payload = self.payload
        if payload.outputs:
            return {o.name for o in payload.outputs if (o.parameters or {}).get("binary_data")}
        return set(results) if (payload.parameters or {}).get("binary_data_output") else set()


def _inference_metrics(runtime: Callable[[], ModelRuntime]) -> InferenceMetrics:
    """The function's Prometheus metrics (prometheus-client loads here)."""
    from fermion.service.observability.inference import inference_metrics

    return inference_metrics(lambda: runtime().loaded)


async def _lifespan(receive: Receive, send: Send, shutdown: Callable[[], Awaitable[None]]) -> None:
    """The ASGI lifespan protocol, answered without building the framework for it."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _answer(send: Send, status: int, body: bytes, media_type: bytes, extra: Mapping[str, str]) -> None:
    headers = [(b"content-type", media_type), (b"content-length", str(len(body)).encode())]
    headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items())
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def __getattr__(name: str) -> Any:
    # `app` is built on first use, so a process that builds its own (the Lambda handler) builds one.
    if name == "app":
        app = globals()["app"] = create_app()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
