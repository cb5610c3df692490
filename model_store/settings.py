"""Where the registry lives, read from the environment (FERMION_ prefix)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class StoreSettings(BaseSettings):
    """Settings shared by every unit that opens the registry."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")

    home: Path = Path("~/.fermion").expanduser()
    store_url: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    cache_dir: Path | None = None
    cache_max_bytes: int = Field(default=2 << 30, gt=0)
    tenant: str = "default"

    @model_validator(mode="after")
    def _defaults_under_home(self) -> StoreSettings:
        # Everything local lives under FERMION_HOME, so two stacks with different homes never collide.
        home = self.home.expanduser().resolve()
        object.__setattr__(self, "home", home)
        if not self.store_url:
            object.__setattr__(self, "store_url", (home / "store").as_uri())
        if self.cache_dir is None:
            object.__setattr__(self, "cache_dir", home / "cache")
        return self


class SigningSettings(BaseSettings):
    """Where the Ed25519 signing key lives (FERMION_SIGNING_KEY); made under FERMION_HOME when unset."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")

    home: Path = Path("~/.fermion").expanduser()
    signing_key: Path | None = None

    @property
    def key_path(self) -> Path:
        """The PEM file of the private key (its public half beside it, as `.pub` hex)."""
        return (self.signing_key or self.home / "keys" / "signing.pem").expanduser()
