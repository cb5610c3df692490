"""The ingest function's settings, from the environment (FERMION_ prefix)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from fermion.events import BusSettings
from fermion.model_store import StoreSettings
from fermion.service.auth.settings import SecuritySettings
from fermion.service.observability.settings import TelemetrySettings


class IngestSettings(StoreSettings, BusSettings, SecuritySettings, TelemetrySettings):
    """Dataset uploads, training requests, the registry's control plane, API keys."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")  # both bases' (for mypy)

    verify_signatures: bool = Field(
        default=True, description="show and move aliases to only versions a trusted key signed, where they were signed"
    )
    max_upload_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    max_queued_jobs: int = Field(default=100, ge=1, description="per tenant: jobs waiting in the queue")
    max_upload_bytes_per_day: int = Field(default=10 << 30, ge=1, description="per tenant, UTC day")
    max_models_per_tenant: int = Field(default=100, ge=1, description="distinct model names a tenant may have")
    max_expanded_bytes: int = Field(default=1 << 30, gt=0, description="what an .npz may expand to, in all")
    max_compression_ratio: float = Field(default=200.0, gt=1, description="how far one .npz member may expand")
    # Archives of pictures (zip/tar): checked before anything is decoded or stored.
    max_pictures: int = Field(default=100_000, gt=0, description="files in one archive")
    max_picture_bytes: int = Field(default=32 << 20, gt=0, description="bytes of one file in an archive")
    max_archive_bytes: int = Field(default=1 << 30, gt=0, description="an archive's unpacked bytes")
    max_picture_pixels: int = Field(default=40_000_000, gt=0, description="width x height, from the header")


@lru_cache(maxsize=1)
def get_settings() -> IngestSettings:
    """The settings, read once."""
    return IngestSettings()
