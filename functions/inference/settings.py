"""The inference function's settings, from the environment (FERMION_ prefix).

Read with `fermion.service.environment`, not pydantic-settings: with it this function's cold start
was ~40 ms longer (see that module); the fields and their checks are the ones every unit shares.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field

from fermion.events import BusConfig
from fermion.model_store import StoreConfig
from fermion.service.auth import SecurityConfig
from fermion.service.environment import EnvSettings
from fermion.service.observability.config import TelemetryConfig

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
_NVIDIA_DEVICES = ("/dev/nvidiactl", "/proc/driver/nvidia/version")


def gpu_present() -> bool:
    """An NVIDIA driver is loaded on this machine (no GPU library is touched to find out)."""
    return any(Path(p).exists() for p in _NVIDIA_DEVICES)


class InferenceSettings(StoreConfig, SecurityConfig, BusConfig, TelemetryConfig, EnvSettings):
    """One inference function: which models, on which execution providers.

    It serves only versions a trusted key signed (`verify_signatures`, on by default here), and a
    bare model name serves the `production` alias. NATS is used only for audit records.
    """

    providers: list[str] | None = Field(
        default=None,
        description="Execution providers in order of preference (FERMION_PROVIDERS, a JSON list); unset: "
        "TensorRT, CUDA, CPU where an NVIDIA GPU is present or require_gpu is set, else CPU only.",
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
    early_fetch: bool = Field(
        default=True,
        description="on a cold load from a remote store (S3), download the model file beside its manifest and "
        "signature (one round trip, not two); off where a download the manifest then does not need costs more "
        "than a round trip",
    )
    max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    max_rows_per_request: int = Field(default=65_536, ge=1, description="rows one request may carry (413 beyond)")
    max_rows_per_run: int = Field(
        default=1024, ge=1, description="a request with more rows runs in chunks of this many: bounded memory"
    )
    arena_shrinkage: bool = Field(
        default=True, description="give ONNX Runtime's arena memory back after a chunked run (a peak is not kept)"
    )
    max_picture_pixels: int = Field(default=40_000_000, gt=0, description="width x height of one picture (header)")
    intra_op_threads: int = Field(
        default=0, ge=0, description="0: the CPU quota (cgroup), or 1 for a model whose one-row run is < 0.5 ms"
    )
    batching: bool = Field(default=True, description="merge concurrent requests to one model (off under Mangum)")
    max_batch_size: int = Field(default=32, ge=1, le=4096)
    max_delay_ms: float = Field(default=0.0, ge=0, le=1000, description="extra wait for a batch to fill")
    batch_overrides: dict[str, dict[str, float]] = Field(
        default={}, description='per model: {"name": {"max_batch_size": 8, "max_delay_ms": 2, "batching": 0}}'
    )
    max_models: int = Field(default=8, ge=1, description="loaded sessions kept, least recently used evicted")
    max_model_bytes: int = Field(default=4 << 30, gt=0, description="total model file bytes kept loaded")
    # NATS is optional here: audit records and telemetry go out only where a URL is set.
    nats_url: str | None = Field(  # type: ignore[assignment]
        default=None, description="where audit records and telemetry go (unset: neither is sent)"
    )
    sample_rate: float = Field(default=0.01, ge=0, le=1, description="fraction of requests whose inputs are sampled")
    sample_max_rows: int = Field(default=2000, ge=0, description="sampled rows kept per telemetry interval")
    telemetry_interval_s: float = Field(default=5.0, gt=0, le=300)
    server: Literal["uvicorn", "granian"] = Field(
        default="uvicorn", description="the entry point's HTTP server (granian: the `granian` extra)"
    )
    workers: int = Field(default=1, ge=1, description="the entry point's processes, all on one port")
    trt_cache_dir: str | None = Field(default=None, description="TensorRT engine cache (default: HOME/trt-cache)")

    def provider_order(self) -> list[str]:
        """The providers asked for: the explicit list, else GPU first only where a GPU can be used.

        A machine without a GPU never tries the GPU libraries, and reports CPU without a fallback flag;
        an explicit GPU request (FERMION_PROVIDERS or FERMION_REQUIRE_GPU, as the GPU image sets) keeps
        the loud fallback."""
        if self.providers:
            return self.providers
        if self.require_gpu or gpu_present():
            return [*GPU_PROVIDERS, "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]


@lru_cache(maxsize=1)
def get_settings() -> InferenceSettings:
    """The settings, read once."""
    return InferenceSettings()
