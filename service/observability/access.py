"""Access logs and HTTP metrics as one pure ASGI middleware (no BaseHTTPMiddleware: no extra task).

Each request gets a request id (the caller's `X-Request-Id`, or a new one) bound into the log
context and echoed in the answer; when it ends, one `fermion.access` line says method, route
template (never the raw path: bounded), status and duration. With metrics on, the same figures
go to `fermion_http_requests_total` and `fermion_http_request_duration_seconds`.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING

from . import logs
from .emf import Emf
from .exposition import LATENCY_BUCKETS
from .tracing import tracing

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("fermion.access")


class HttpMetrics:
    """Requests by route template, method and status, and their duration."""

    def __init__(self, function: str, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Histogram  # loads with the first metrics built

        self.requests = Counter(
            "fermion_http_requests",
            "HTTP requests answered, by function, route template, method and status.",
            ["function", "route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "fermion_http_request_duration_seconds",
            "HTTP request duration, by function and route template.",
            ["function", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.function = function


class AccessMiddleware:
    """The access log line and HTTP metrics of every request."""

    def __init__(
        self, app: ASGIApp, *, function: str, metrics: HttpMetrics | None, log: bool, emf: bool = False
    ) -> None:
        self.app = app
        self.function = function
        self.metrics = metrics
        self.log = log
        self.tracing = tracing(function)
        self.emf = Emf(function) if emf else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.tracing.enabled:  # a server span, continuing the caller's `traceparent`
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
            with self.tracing.span(scope["method"], headers, kind="server") as span:
                try:
                    await self._measured(scope, receive, send)
                finally:  # the route is known once the router has matched it
                    span.update_name(f"{scope['method']} {_route(scope)}")
                    span.set_attribute("http.route", _route(scope))
            return
        if self.metrics is None and not access_log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        await self._measured(scope, receive, send)

    async def _measured(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = _header(scope, b"x-request-id") or uuid.uuid4().hex[:16]
        logs.bind(request_id=request_id, tenant=None)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = _route(scope)
            if self.metrics is not None:
                self.metrics.requests.labels(self.function, route, scope["method"], str(status)).inc()
                self.metrics.latency.labels(self.function, route).observe(seconds)
                if self.emf is not None:
                    dimensions = {"Route": route, "Status": str(status)}
                    self.emf.emit(dimensions, {"Requests": (1, "Count"), "Latency": (seconds * 1000, "Milliseconds")})
            if self.log and access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d %.1fms",
                    scope["method"],
                    route,
                    status,
                    seconds * 1000,
                    extra={
                        "request_id": request_id,
                        "tenant": logs.current("tenant"),
                        "fields": {
                            "method": scope["method"],
                            "route": route,
                            "status": status,
                            "duration_ms": round(seconds * 1000, 3),
                        },
                    },
                )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            text: str = value.decode("latin-1")[:64]
            return text if text.isprintable() else None
    return None


def _route(scope: Scope) -> str:
    """The matched route's template (`/v2/models/{name}/infer`); `unmatched` for a 404: never the raw path.

    The router records the route in the scope it was given, which a middleware between us may have
    copied; then the app's own routes are matched again (included routers have no single template).
    """
    path = getattr(scope.get("route"), "path", None)
    if path:
        return str(path)
    from starlette.routing import Match  # only apps with a framework router get here

    for candidate in getattr(getattr(scope.get("app"), "router", None), "routes", ()):
        template = getattr(candidate, "path", None)
        if template and candidate.matches(scope)[0] is Match.FULL:
            return str(template)
    return "unmatched"
