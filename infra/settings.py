"""The local stack's settings, from the environment (FERMION_ prefix)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class StackSettings(BaseSettings):
    """Where the local stack keeps its state and which loopback ports it listens on."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")

    home: Path = Path("~/.fermion")
    host: str = "127.0.0.1"
    nats_port: int = Field(default=4222, ge=1, le=65535)
    ingest_port: int = Field(default=8001, ge=1, le=65535)
    inference_port: int = Field(default=8000, ge=1, le=65535)
    trainers: int = Field(default=1, ge=1, le=32)
    trainer_metrics_port: int = Field(
        default=9108, ge=0, le=65535, description="trainer i serves /metrics on this port + i (0: none)"
    )
    monitor_metrics_port: int = Field(
        default=9107, ge=0, le=65535, description="the monitor serves /metrics on this port (0: none)"
    )
    drop_queue_url: str | None = Field(default=None, description="SQS queue of S3 drops to bridge (LocalStack)")
    s3_endpoint_url: str | None = None
    api_key: SecretStr | None = Field(default=None, description="FERMION_API_KEY: the key the CLI and client send")

    @model_validator(mode="after")
    def _resolve_home(self) -> StackSettings:
        object.__setattr__(self, "home", self.home.expanduser().resolve())
        return self

    @property
    def nats_url(self) -> str:
        return f"nats://{self.host}:{self.nats_port}"

    @property
    def ingest_url(self) -> str:
        return f"http://{self.host}:{self.ingest_port}"

    @property
    def inference_url(self) -> str:
        return f"http://{self.host}:{self.inference_port}"

    @property
    def store_url(self) -> str:
        return (self.home / "store").as_uri()


class ToolSettings(BaseSettings):
    """Where the deployment checks keep their tools and wheels (outside the repository)."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")

    tools_dir: Path = Path("~/.cache/fermion")
    image_wheels: Literal["", "all"] = Field(default="", description="'all' also downloads the GPU image's wheels")

    @model_validator(mode="after")
    def _resolve_dir(self) -> ToolSettings:
        object.__setattr__(self, "tools_dir", self.tools_dir.expanduser())
        return self
