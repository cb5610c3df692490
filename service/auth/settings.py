"""Authentication settings, shared by the HTTP functions (FERMION_ prefix)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SecuritySettings(BaseSettings):
    """Secure by default: every route but the health probes needs an API key."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")

    auth: Literal["on", "off"] = Field(
        default="on", description="off: every caller is the local admin of the default tenant (a trusted box only)"
    )
    key_ttl_s: float = Field(
        default=5.0, ge=0, description="how long a key record is trusted before it is read again (revocation delay)"
    )
