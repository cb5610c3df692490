"""The inference function's settings, from the environment (FERMION_ prefix)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field

from fermion.events import BusSettings
from fermion.model_store import StoreSettings

from ..security import SecuritySettings
from ..telemetry.settings import TelemetrySettings

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class InferenceSettings(StoreSettings, SecuritySettings, BusSettings, TelemetrySettings):
    """One inference function: which models, on which execution providers.

    It serves only versions a trusted key signed (`verify_signatures`, on by default here), and a
    bare model name serves the `production` alias. NATS is used only for audit records.
    """

    providers: list[str] = Field(
        default=["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        description="Execution providers in order of preference (FERMION_PROVIDERS, a JSON list).",
    )
    require_gpu: bool = Field(default=False, description="Refuse to serve a model that fell back to CPU.")
    variant: Literal["auto", "fp32", "int8", "fp16"] = Field(
        default="auto", description="auto: fp16 on CUDA/TensorRT, `cpu_variant` on CPU"
    )
    cpu_variant: Literal["fp32", "int8"] = "fp32"
    default_alias: str = Field(default="production", description="the alias a bare model name serves")
    verify_signatures: bool = Field(default=True, description="refuse versions no trusted key signed")
    alias_ttl_s: float = Field(default=5.0, ge=0)
    preload: str | None = Field(default=None, description="A model reference to load at import.")
    max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    intra_op_threads: int = Field(default=0, ge=0, description="0: the container's CPU quota (cgroup).")
    batching: bool = Field(default=True, description="merge concurrent requests to one model (off under Mangum)")
    max_batch_size: int = Field(default=32, ge=1, le=4096)
    max_delay_ms: float = Field(default=0.0, ge=0, le=1000, description="extra wait for a batch to fill")
    batch_overrides: dict[str, dict[str, float]] = Field(
        default={}, description='per model: {"name": {"max_batch_size": 8, "max_delay_ms": 2, "batching": 0}}'
    )
    max_models: int = Field(default=8, ge=1, description="loaded sessions kept, least recently used evicted")
    max_model_bytes: int = Field(default=4 << 30, gt=0, description="total model file bytes kept loaded")
    trt_cache_dir: str | None = Field(default=None, description="TensorRT engine cache (default: HOME/trt-cache)")


@lru_cache(maxsize=1)
def get_settings() -> InferenceSettings:
    """The settings, read once."""
    return InferenceSettings()
