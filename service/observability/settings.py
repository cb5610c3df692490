"""Telemetry settings, shared by every function (FERMION_ prefix, and prometheus-client's own variable)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from .config import TelemetryConfig


class TelemetrySettings(TelemetryConfig, BaseSettings):
    """`TelemetryConfig` read from the environment by pydantic-settings."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")
