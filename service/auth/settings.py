"""Authentication settings, shared by the HTTP functions (FERMION_ prefix)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from .config import SecurityConfig


class SecuritySettings(SecurityConfig, BaseSettings):
    """`SecurityConfig` read from the environment (FERMION_ prefix) by pydantic-settings."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")
