"""OpenTelemetry tracing: W3C `traceparent` in on HTTP and NATS, out on every publish; off by default.

On when an OTLP endpoint is configured by the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, and not `OTEL_SDK_DISABLED=true`); the exporter reads the rest
(`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_SCHEDULE_DELAY`, ...) itself. Off, nothing of OpenTelemetry
is imported and `span()` is a shared no-op context manager: zero cost on the warm path.

The NATS hops: `Bus.context_headers = tracing.inject` puts the current context on every publish;
the consumers' pull loop (`service/consumer.py`) continues the trace from a delivery's
headers. So one trace runs upload → datasets.uploaded → pipeline → training.requested → training →
registration → promotion.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from ..environment import from_environment
from . import logs
from .config import TelemetryConfig

_OFF = contextlib.nullcontext()


class Tracing:
    """One per process: the tracer, or nothing."""

    def __init__(self, settings: TelemetryConfig, function: str) -> None:
        self.enabled = bool(settings.otel_endpoint) and not settings.otel_sdk_disabled
        self._tracer: Any = None
        self._provider: Any = None
        if self.enabled:
            self._start(settings.otel_service_name or f"fermion-{function}")

    def _start(self, service: str) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self._provider = TracerProvider(resource=Resource.create({"service.name": service}))
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self._tracer = self._provider.get_tracer("fermion")

    def span(
        self, name: str, parent: Mapping[str, str] | None = None, *, kind: str = "internal", **attributes: Any
    ) -> contextlib.AbstractContextManager[Any]:
        """A span (a child of `parent`'s `traceparent` when given, else of the current one); a no-op when off."""
        if not self.enabled:
            return _OFF
        return self._span(name, parent, kind, attributes)

    @contextlib.contextmanager
    def _span(
        self, name: str, parent: Mapping[str, str] | None, kind: str, attributes: dict[str, Any]
    ) -> Iterator[Any]:
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind, format_trace_id

        context = extract(dict(parent)) if parent is not None else None
        with (
            self._tracer.start_as_current_span(
                name, context=context, kind=SpanKind[kind.upper()], attributes=attributes
            ) as span,
            logs.bound(trace_id=format_trace_id(span.get_span_context().trace_id)),
        ):
            yield span

    def inject(self) -> dict[str, str]:
        """The current context as W3C headers (`traceparent`, `tracestate`); empty when off."""
        if not self.enabled:
            return {}
        from opentelemetry.propagate import inject

        carrier: dict[str, str] = {}
        inject(carrier)
        return carrier

    def shutdown(self) -> None:
        """Export what is buffered (a process about to exit)."""
        if self._provider is not None:
            self._provider.shutdown()


@lru_cache(maxsize=4)
def tracing(function: str) -> Tracing:
    """The process's tracing for `function` (settings read once)."""
    return Tracing(from_environment(TelemetryConfig), function)
