"""Where the registry lives, read from the environment (FERMION_ prefix)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from .config import StoreConfig


class StoreSettings(StoreConfig, BaseSettings):
    """`StoreConfig` read from the environment (FERMION_ prefix) by pydantic-settings."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")


class SigningSettings(BaseSettings):
    """Where the Ed25519 signing key lives (FERMION_SIGNING_KEY); made under FERMION_HOME when unset."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")

    home: Path = Path("~/.fermion").expanduser()
    signing_key: Path | None = None

    @property
    def key_path(self) -> Path:
        """The PEM file of the private key: by default the registry's own (HOME/keys/signing.key)."""
        return (self.signing_key or self.home / "keys" / "signing.key").expanduser()
