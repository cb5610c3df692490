"""The monitor's settings, from the environment (FERMION_ prefix)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from fermion.events import BusSettings
from fermion.model_store import StoreSettings


class MonitorSettings(StoreSettings, BusSettings):
    """One monitor replica (samples and stats are shared among replicas through a queue group)."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")  # both bases' (for mypy)

    window_rows: int = Field(default=500, ge=20, description="sampled rows per drift window")
    psi_threshold: float = Field(default=0.2, gt=0)
    ks_alpha: float = Field(default=0.01, gt=0, lt=1, description="family-wise level over a window's features")
    tick_s: float = Field(default=2.0, gt=0, le=300, description="how often rollouts are judged")
    predictions_kept: int = Field(default=200_000, ge=1, description="predictions remembered for late labels")
    serving_window_s: float = Field(
        default=30.0, ge=1, le=3600, description="each version's traffic is kept in the store per window this long"
    )
    metrics: bool = Field(default=True, description="Prometheus metrics (drift, online accuracy, rollouts)")
    metrics_port: int = Field(default=0, ge=0, le=65535, description="serve /metrics here (0: off)")
    metrics_host: str = Field(
        default="127.0.0.1", description="the address /metrics listens on (a pod sets 0.0.0.0 for Prometheus)"
    )


@lru_cache(maxsize=1)
def get_settings() -> MonitorSettings:
    """The settings, read once."""
    return MonitorSettings()
