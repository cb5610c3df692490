"""The ingest function's settings, from the environment (FERMION_ prefix)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from fermion.events import BusSettings
from fermion.model_store import StoreSettings


class IngestSettings(StoreSettings, BusSettings):
    """Dataset uploads and training requests."""

    max_upload_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    max_expanded_bytes: int = Field(default=1 << 30, gt=0, description="what an .npz may expand to, in all")
    max_compression_ratio: float = Field(default=200.0, gt=1, description="how far one .npz member may expand")


@lru_cache(maxsize=1)
def get_settings() -> IngestSettings:
    """The settings, read once."""
    return IngestSettings()
