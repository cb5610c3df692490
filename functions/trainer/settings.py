"""The trainer's settings, from the environment (FERMION_ prefix)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from fermion.events import BusSettings
from fermion.model_store import StoreSettings
from fermion.service.observability.settings import TelemetrySettings
from fermion.training.settings import TrainingSettings


class TrainerSettings(StoreSettings, BusSettings, TelemetrySettings, TrainingSettings):
    """One trainer replica; every replica shares the same durable consumer."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")  # both bases' (for mypy)

    ack_wait_s: float = Field(default=30.0, gt=0)
    max_deliver: int = Field(default=5, ge=1)
    retry_delay_s: float = Field(default=5.0, ge=0)
    parity_atol: float = Field(default=1e-4, gt=0)
    parity_rtol: float = Field(default=1e-3, ge=0)
    accuracy_budget: float = Field(default=0.01, ge=0, le=1, description="max accuracy drop of a variant")


@lru_cache(maxsize=1)
def get_settings() -> TrainerSettings:
    """The settings, read once."""
    return TrainerSettings()
