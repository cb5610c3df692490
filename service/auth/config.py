"""Authentication settings, shared by the HTTP functions: the fields (`settings.py` reads them with
pydantic-settings; the inference function with `fermion.service.environment`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SecurityConfig(BaseModel):
    """Secure by default: every route but the health probes needs an API key."""

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    auth: Literal["on", "off"] = Field(
        default="on", description="off: every caller is the local admin of the default tenant (a trusted box only)"
    )
    key_ttl_s: float = Field(
        default=5.0, ge=0, description="how long a key record is trusted before it is read again (revocation delay)"
    )
