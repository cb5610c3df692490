"""Where the CLI and the Python client send their requests, from the environment (FERMION_ prefix).

Zero configuration talks to the local stack (`fermion up`) with this machine's admin key
(FERMION_HOME/admin.key). A remote deployment: FERMION_URL (one base URL, https or http, serving
ingest and inference under one host) or FERMION_INGEST_URL and FERMION_INFERENCE_URL (one per
function), and FERMION_API_KEY.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClientSettings(BaseSettings):
    """The endpoints and key a client uses; unset URLs fall back to the local stack's."""

    model_config = SettingsConfigDict(env_prefix="FERMION_", frozen=True, extra="ignore")

    url: str | None = Field(default=None, description="one base URL for both functions")
    ingest_url: str | None = None
    inference_url: str | None = None
    api_key: SecretStr | None = None
    timeout_s: float = Field(default=60.0, gt=0)
