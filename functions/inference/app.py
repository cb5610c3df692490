"""The inference function: Open Inference Protocol v2 over ONNX Runtime. No torch here, ever.

`create_app` builds an `InferenceApp`, a plain ASGI app: it serves the two infer routes itself
(`infer` below: authenticate, read and parse the body, route to a version, run, encode, count) and
hands every other request (health, metadata, `/v1/...:predict`, `/metrics`, OpenAPI, `/docs`) to a
FastAPI app (`control.py`) that it builds on the first such request. On a small model, a
framework's per-request work (middleware stack, router, request objects, dependency solving) costs
more than the model run, and importing it is a good part of a cold start; bench/serving.py and
bench/cold_start.py measure both against a bare ASGI app.

`app` (built on first use) is the process's, for uvicorn and the Lambda handler. Under Mangum the
ASGI lifespan runs on every invocation, so nothing is loaded in one: the runtime comes from a
cached getter, and `FERMION_PRELOAD` warms a model at import.
"""

from __future__ import annotations

from . import preload

preloading = preload.start()  # before the heavy imports below, so the model loads beside them

import logging
import re
import time
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from pydantic_core import to_json

from fermion.model_store import KeyStore, StoreError
from fermion.service.auth import Auditor, Authenticator
from fermion.service.auth.state import SecurityState
from fermion.service.endpoints import metrics_of
from fermion.service.observability.access import AccessMiddleware
from fermion.service.observability.emf import Emf
from fermion.service.observability.inference import InferenceMetrics
from fermion.service.observability.readiness import Readiness, store_check
from fermion.service.responses import HTTPError, error_answer, translate

from .errors import TRANSLATIONS, BadRequest, ModelUnavailable
from .protocol import HEADER_LENGTH, INFER_PATHS, InferenceRequest, encode_response, parse_request, to_array
from .routing import Traffic
from .runtime import LoadedModel, ModelRef, ModelRuntime, default_runtime
from .scheduler import Scheduler
from .services import AuditBus, Disconnected, Services, model_for, read_body
from .settings import InferenceSettings, get_settings
from .trim import Trimmer

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import Receive, Scope, Send

log = logging.getLogger("fermion.inference")
VARIANTS = ("auto", "fp32", "int8", "fp16")
# What an infer request can be refused with: our errors, and the lower layers' that TRANSLATIONS maps.
REFUSALS: tuple[type[Exception], ...] = (HTTPError, *(row.theirs for row in TRANSLATIONS))
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
        metrics = metrics_of(settings(), lambda registry: InferenceMetrics(registry, lambda: runtime().loaded, emf))
        scheduler = Scheduler(
            settings, lambda: runtime().loaded, batching=batching, on_run=metrics.ran if metrics is not None else None
        )
        self.state = SimpleNamespace(
            services=Services(runtime, settings, scheduler, Traffic(runtime, settings), metrics, preloading),
            security=SecurityState(
                Authenticator(lambda: KeyStore(runtime().registry.store), settings(), tenant=settings().tenant),
                Auditor(AuditBus(settings).get),
            ),
            readiness=Readiness(
                "inference",
                {"store": store_check(lambda: runtime().registry.store)},
                (StoreError, ModelUnavailable),
                metrics.registry if metrics else None,
            ),
        )
        # The access log and the trace span, as every other route gets them (each costs nothing when off).
        self.infer = AccessMiddleware(
            self._serve_infer, function="inference", metrics=None, log=settings().access_log, emf=emf is not None
        )
        self._control: FastAPI | None = None
        self._trimmer = Trimmer()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and (match := INFER_PATH.fullmatch(scope["path"])):
            version = match["model_version"]
            scope["path_params"] = {"name": match["name"]} if version is None else match.groupdict()
            scope["route"] = ROUTES[version is not None]
            await self.infer(scope, receive, send)
            return
        if scope["type"] == "lifespan":  # nothing starts or stops with the app (see the module's docstring)
            await _lifespan(receive, send)
            return
        await self.control(scope, receive, send)

    @property
    def control(self) -> FastAPI:
        """The FastAPI app for every other route, built on first use (see the module's docstring)."""
        if self._control is None:
            from .control import create_control_app

            self._control = create_control_app(self, self.infer)
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
        services: Services = self.state.services
        metrics = services.metrics
        started = time.perf_counter()
        try:
            content, media_type, extra, model = await infer(services, self.state.security, scope, headers, receive)
        except Disconnected:
            return
        except Exception as exc:
            if metrics is not None and isinstance(exc, REFUSALS):
                ours = exc if isinstance(exc, HTTPError) else translate(exc, TRANSLATIONS)
                metrics.refused_request(type(exc).__name__, ours.status)
            status, body, error_headers = error_answer(exc, TRANSLATIONS, log, f"POST {scope['path']}")
            await _answer(send, status, to_json(body), b"application/json", error_headers)
            return
        if metrics is not None:
            params = scope["path_params"]
            alias = params["name"].partition("@")[2]  # NAME@ALIAS
            if not alias and "model_version" not in params:  # a bare name: its default alias
                alias = services.settings().default_alias
            metrics.answered(model.name, model.version, alias, started)
        await _answer(send, 200, content, media_type, extra)
        declared = headers.get("content-length", "")
        self._trimmer.after(len(content) + (int(declared) if declared.isdigit() else 0))  # a large one: trim after


async def infer(
    services: Services, security: SecurityState, scope: Scope, headers: dict[str, str], receive: Receive
) -> tuple[bytes, bytes, dict[str, str], LoadedModel]:
    """Run the model on OIP v2 tensors (JSON, or the binary tensor extension): body, type, headers, model."""
    caller = await security.authorize(headers.get("authorization"), "infer", f"POST {scope['path']}")
    settings = services.settings()
    body = await read_body(receive, headers.get("content-length"), settings.max_body_bytes)
    payload, binary = parse_request(body, headers.get(HEADER_LENGTH))
    variant = (payload.parameters or {}).get("variant")
    if variant is not None and variant not in VARIANTS:
        raise BadRequest(f"parameters.variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    params = scope["path_params"]
    ref = ModelRef.parse(params["name"], params.get("model_version"))
    route = await services.traffic.route(ref, headers, caller.tenant)  # which version answers
    with route.observed():
        model = await model_for(services, caller, route.ref, variant)
        feeds = {t.name: to_array(t, binary) for t in payload.inputs}
        if any(a.dtype == object for a in feeds.values()):  # BYTES: encoded pictures (pictures.py)
            from . import pictures  # its multipart parser is for pictures only: not on every cold start

            feeds = await pictures.decode_feeds(feeds, model, settings.max_picture_pixels)
        wanted = [o.name for o in payload.outputs] if payload.outputs else None
        results = await services.scheduler.run(model, feeds, wanted)
    extra = route.answered(model, feeds, results, payload.id)
    content, header_length = encode_response(
        model.name, model.version, payload.id, results, model.variant, _binary_outputs(payload, results)
    )
    if header_length is None:
        return content, b"application/json", extra, model
    extra["Inference-Header-Content-Length"] = str(header_length)
    return content, b"application/octet-stream", extra, model


async def _lifespan(receive: Receive, send: Send) -> None:
    """The ASGI lifespan protocol, answered without building the framework for it."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _answer(send: Send, status: int, body: bytes, media_type: bytes, extra: Mapping[str, str]) -> None:
    headers = [(b"content-type", media_type), (b"content-length", str(len(body)).encode())]
    headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items())
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
