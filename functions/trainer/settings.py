"""The trainer's settings, from the environment (FERMION_ prefix)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fermion.events import BusSettings
from fermion.model_store import StoreSettings

from ..telemetry.settings import TelemetrySettings


class TrainerSettings(StoreSettings, BusSettings, TelemetrySettings):
    """One trainer replica; every replica shares the same durable consumer."""

    ack_wait_s: float = Field(default=30.0, gt=0)
    max_deliver: int = Field(default=5, ge=1)
    retry_delay_s: float = Field(default=5.0, ge=0)
    parity_atol: float = Field(default=1e-4, gt=0)
    parity_rtol: float = Field(default=1e-3, ge=0)
    accuracy_budget: float = Field(default=0.01, ge=0, le=1, description="max accuracy drop of a variant")
    # Checkpoints (functions/trainer/checkpointing.py): every N epochs or T seconds, whichever comes first.
    checkpoint_every_epochs: int = Field(default=5, ge=1)
    checkpoint_every_s: float = Field(default=60.0, gt=0)
    checkpoint_keep_last: int = Field(default=2, ge=1, description="checkpoints kept per running job")
    checkpoint_finished_ttl_s: float = Field(default=3600.0, ge=0, description="kept after the job registered")
    checkpoint_abandoned_ttl_s: float = Field(default=7 * 86400.0, ge=0, description="kept after the last write")
    # Distributed jobs (recipe `workers` > 1): group restarts torch's elastic agent may make, and where
    # the ranks run: processes on this host, or an indexed Job (infra/k8s/components/distributed-training).
    elastic_max_restarts: int = Field(default=3, ge=0)
    distributed_launcher: Literal["local", "kubernetes"] = "local"
    rank_job_template: Path | None = None
    k8s_namespace: str = "fermion"


class RankEnv(BaseSettings):
    """What torch's elastic launcher tells each rank it starts (no prefix: torch's own names)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    torchelastic_restart_count: int = 0


@lru_cache(maxsize=1)
def get_settings() -> TrainerSettings:
    """The settings, read once."""
    return TrainerSettings()
