"""What a function's app gets from telemetry: its metrics object, `/metrics`, and the access middleware.

`/metrics` needs a key with the `read` scope (Prometheus sends it with `authorization:
credentials_file`), unless `FERMION_METRICS_AUTH=false` on a network only Prometheus reaches.
A `read` key of any tenant may scrape: the series carry model names and counts, never data, and
every tenant's models are in them, so give Prometheus a key of its own (an operator tenant).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from .observability.access import AccessMiddleware, HttpMetrics
from .observability.config import TelemetryConfig
from .observability.exposition import render

if TYPE_CHECKING:  # the framework loads with the app that installs these (inference: not before its first answer)
    from fastapi import FastAPI
    from prometheus_client import CollectorRegistry

_HTTP: weakref.WeakKeyDictionary[CollectorRegistry, HttpMetrics] = weakref.WeakKeyDictionary()


def install(
    app: FastAPI,
    settings: TelemetryConfig,
    registry: CollectorRegistry | None,
    *,
    function: str,
    http_metrics: bool = True,
) -> None:
    """`GET /metrics` (when metrics are on) and the access log / HTTP metrics middleware."""
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from .auth.http import authorize

    if registry is not None:
        multiproc_dir = settings.multiproc_dir
        needs_key = settings.metrics_auth

        async def metrics(request: Request) -> Response:
            if needs_key:
                await authorize(request, "read")
            body, content_type = render(registry, multiproc_dir)
            return Response(body, media_type=content_type)

        app.router.routes.append(Route("/metrics", metrics, methods=["GET"], include_in_schema=False))
    http = None
    if registry is not None and http_metrics:  # one set per registry (ingest's is the process's)
        http = _HTTP.get(registry) or _HTTP.setdefault(registry, HttpMetrics(function, registry))
    emf = bool(settings.lambda_function)  # under Lambda: CloudWatch EMF lines too
    app.add_middleware(AccessMiddleware, function=function, metrics=http, log=settings.access_log, emf=emf)
