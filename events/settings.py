"""Where the bus is and who we are on it, read from the environment (FERMION_ prefix)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from .config import BusConfig


class BusSettings(BusConfig, BaseSettings):
    """`BusConfig` read from the environment (FERMION_ prefix) by pydantic-settings."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")
