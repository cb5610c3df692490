"""Where the bus is, read from the environment (FERMION_ prefix)."""

from pydantic_settings import BaseSettings, SettingsConfigDict


class BusSettings(BaseSettings):
    """Settings shared by every unit that talks to NATS."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")

    nats_url: str = "nats://127.0.0.1:4222"
