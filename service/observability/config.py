"""Telemetry settings, shared by every function (FERMION_ prefix, and prometheus-client's and
OpenTelemetry's own variables): the fields (`settings.py` reads them with pydantic-settings; tracing
and the inference function with `fermion.service.environment`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field


class TelemetryConfig(BaseModel):
    """Metrics on by default; logs as JSON lines by default."""

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    metrics: bool = Field(default=True, description="Prometheus metrics (off: no series, no per-request cost)")
    metrics_auth: bool = Field(
        default=True, description="/metrics needs a key with the `read` scope (off: open, for a trusted network)"
    )
    metrics_port: int = Field(default=0, ge=0, le=65535, description="trainer: serve /metrics here (0: off)")
    metrics_host: str = Field(
        default="127.0.0.1",
        description="trainer and monitor: the address /metrics listens on (a pod sets 0.0.0.0 for Prometheus)",
    )
    log_format: Literal["json", "text"] = Field(default="json", description="json: one object per line")
    access_log: bool = Field(default=True, description="one line per HTTP request (method, route, status, time)")
    otel_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="tracing is on when an OTLP endpoint is set (OpenTelemetry's own variables)",
    )
    otel_sdk_disabled: bool = Field(default=False, validation_alias="OTEL_SDK_DISABLED")
    otel_service_name: str | None = Field(default=None, validation_alias="OTEL_SERVICE_NAME")
    lambda_function: str | None = Field(
        default=None,
        validation_alias="AWS_LAMBDA_FUNCTION_NAME",
        description="set by AWS Lambda: metrics also go out as CloudWatch EMF lines (nothing scrapes a Lambda)",
    )
    multiproc_dir: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("PROMETHEUS_MULTIPROC_DIR", "FERMION_MULTIPROC_DIR"),
        description="several workers: prometheus-client's multiprocess mode (its own variable)",
    )
