"""Where the bus is, read from the environment (FERMION_ prefix)."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BusSettings(BaseSettings):
    """Settings shared by every unit that talks to NATS."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")

    nats_url: str = "nats://127.0.0.1:4222"
    """One server, or several separated by commas (the members of a cluster)."""
    stream_replicas: int = Field(default=1, ge=1, le=5)
    """Copies of each stream and consumer in a JetStream cluster (3 in production; 1 on one server)."""
    publish_timeout_s: float = Field(default=5.0, gt=0)
    """How long a publish waits for JetStream's acknowledgement before its outcome is unknown."""
