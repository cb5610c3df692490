"""The ingest function's settings, from the environment (FERMION_ prefix)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from fermion.events import BusSettings
from fermion.model_store import StoreSettings

from ..security import SecuritySettings
from ..telemetry.settings import TelemetrySettings


class IngestSettings(StoreSettings, BusSettings, SecuritySettings, TelemetrySettings):
    """Dataset uploads, training requests, the registry's control plane, API keys."""

    max_upload_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    max_queued_jobs: int = Field(default=100, ge=1, description="per tenant: jobs waiting in the queue")
    max_upload_bytes_per_day: int = Field(default=10 << 30, ge=1, description="per tenant, UTC day")
    max_models_per_tenant: int = Field(default=100, ge=1, description="distinct model names a tenant may have")


@lru_cache(maxsize=1)
def get_settings() -> IngestSettings:
    """The settings, read once."""
    return IngestSettings()
