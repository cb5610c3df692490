"""What the training library reads from the environment: checkpoints, distributed ranks."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TrainingSettings(BaseSettings):
    """Checkpointing and distributed training (FERMION_ prefix); the trainer's settings extend these."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")

    # Checkpoints (training/checkpoints.py): every N epochs or T seconds, whichever comes first.
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
    rank_image: str | None = Field(default=None, description="the rank pods' image (the trainer's own)")


class RankEnv(BaseSettings):
    """What torch's elastic launcher tells each rank it starts (no prefix: torch's own names)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    torchelastic_restart_count: int = 0
