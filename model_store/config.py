"""Where the registry lives: the fields (`settings.py` reads them with pydantic-settings; the inference
function with `fermion.service.environment`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StoreConfig(BaseModel):
    """Settings shared by every unit that opens the registry."""

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    home: Path = Path("~/.fermion").expanduser()
    store_url: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    cache_dir: Path | None = None
    cache_max_bytes: int = Field(default=2 << 30, gt=0)
    tenant: str = "default"
    s3_sse: Literal["AES256", "aws:kms", "none"] = Field(
        default="AES256", description="server-side encryption of every object written to S3 (aws:kms: s3_kms_key_id)"
    )
    s3_kms_key_id: str | None = None
    s3_multipart_threshold: int = Field(
        default=64 << 20,
        gt=0,
        le=5 << 30,
        description="objects of this many bytes or more go to S3 as a multipart upload (one PUT takes at most 5 GiB)",
    )
    s3_multipart_part_size: int = Field(
        default=16 << 20, ge=5 << 20, le=5 << 30, description="bytes per part of a multipart upload (S3: 5 MiB..5 GiB)"
    )
    s3_multipart_concurrency: int = Field(
        default=4, ge=1, le=64, description="parts of one multipart upload in flight at once (each held in memory)"
    )
    signing_key_file: Path | None = Field(
        default=None, description="Ed25519 PEM key that signs registered versions (default: HOME/keys/signing.key)"
    )
    trusted_keys: list[str] = Field(
        default=[], description="base64 Ed25519 public keys whose signatures are trusted (with HOME/keys/*.pub)"
    )
    verify_signatures: bool = Field(default=False, description="refuse versions no trusted key signed")

    @model_validator(mode="after")
    def _defaults_under_home(self) -> StoreConfig:
        # Everything local lives under FERMION_HOME, so two stacks with different homes never collide.
        home = self.home.expanduser().resolve()
        object.__setattr__(self, "home", home)
        if not self.store_url:
            object.__setattr__(self, "store_url", (home / "store").as_uri())
        if self.cache_dir is None:
            object.__setattr__(self, "cache_dir", home / "cache")
        if self.signing_key_file is None:
            object.__setattr__(self, "signing_key_file", home / "keys" / "signing.key")
        return self

    def trusted_public_keys(self) -> list[str]:
        """The configured public keys and those in HOME/keys/*.pub (the local stack's own)."""
        local = sorted((self.home / "keys").glob("*.pub")) if (self.home / "keys").is_dir() else []
        return [*self.trusted_keys, *(p.read_text().strip() for p in local)]
