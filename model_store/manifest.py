"""The manifest: what a model version is, where it came from, and the checksums that prove it."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
VARIANT_FILES = {"fp32": MODEL_FILE, "int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}
"""Where a compiled variant lies in a version (compile/variants.py writes them; compile sits below
model_store, so it repeats these names, and tests/unit/test_variants.py holds the two equal)."""


class FileEntry(BaseModel):
    """One file of a version, as it must be when read back."""

    model_config = ConfigDict(frozen=True)

    sha256: str
    size: int


class TensorSpec(BaseModel):
    """One input or output: name, Open Inference Protocol datatype, shape (-1 for a dynamic axis)."""

    model_config = ConfigDict(frozen=True)

    name: str
    datatype: str
    shape: list[int]


class Signature(BaseModel):
    """The model's inputs and outputs."""

    model_config = ConfigDict(frozen=True)

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class Lineage(BaseModel):
    """Where a version came from."""

    model_config = ConfigDict(frozen=True)

    training_event_id: str | None = None
    dataset_sha256: str | None = None
    dataset_uri: str | None = None
    recipe: dict[str, Any] = {}
    code_version: str | None = None
    federated: dict[str, Any] | None = None
    """A federated round's global model: the federation, the round, and every update it aggregated."""
    teacher: dict[str, Any] | None = None
    """A distilled student's teacher: {"name", "version", "content_sha256"}."""


class Draft(BaseModel):
    """What a producer says about a new version; the registry adds name, version, files and time."""

    model_config = ConfigDict(frozen=True)

    signature: Signature
    labels: list[str] = []
    variants: dict[str, str] = {}
    """Compiled variants by name ("fp32", "int8", "fp16") → file; empty means just model.onnx."""
    metrics: dict[str, float] = {}
    evaluation: dict[str, Any] | None = None
    """The held-out evaluation behind `metrics`: {"labels", "confusion" (rows true, columns predicted),
    "per_class": [{"label", "precision", "recall", "f1", "support"}]}. None where not recorded."""
    image: dict[str, Any] | None = None
    """A picture model's image contract (fermion.events.ImageContract as JSON, mean and std resolved):
    how a client turns a picture into the input tensor. None for models on features."""
    lineage: Lineage = Lineage()
    compile_report: dict[str, Any] = {}
    profile: dict[str, Any] | None = None
    """The training data's reference profile (`profiles.Profile`), for drift checks; None: not recorded."""
    features: dict[str, Any] | None = None
    """A table model's feature schema (`features.FeatureSchema` as JSON): its columns by name, how the
    graph prepares them, the label column and the task. None for models on raw tensors or pictures."""
    distillation: dict[str, Any] | None = None
    """A distilled student: temperature, alpha, and teacher and student side by side (held-out metrics on
    the same split, parameters, file bytes, CPU latency at batch 1)."""


class Manifest(Draft):
    """A registered, immutable version."""

    format_version: int = 1
    tenant: str
    name: str
    version: int
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    files: dict[str, FileEntry]
    content_sha256: str


def file_entry(data: bytes) -> FileEntry:
    """The checksum and size of `data`."""
    return FileEntry(sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def content_sha256(files: dict[str, FileEntry]) -> str:
    """One digest over every file's name and digest, so two versions compare in one field."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}\0{files[name].sha256}\n".encode())
    return h.hexdigest()


def code_version() -> str:
    """The installed fermion version, recorded in every manifest's lineage."""
    try:
        return version("fermion")
    except PackageNotFoundError:
        return "unknown"
