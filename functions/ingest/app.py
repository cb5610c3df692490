"""The ingest function: dataset uploads and training requests, turned into events.

A request is accepted only once its event is durably in JetStream; if NATS or the store is
down the client gets a 503 and nothing half-done is left behind (datasets are content-addressed,
so a retried upload writes nothing new).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import PurePath

from fastapi import FastAPI, File, Form, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from fermion.events import (
    Bus,
    BusError,
    DatasetRef,
    DatasetUploaded,
    Gate,
    Recipe,
    SweepRequest,
    TrainingRequest,
    TrainingRequested,
    TrainingSweep,
)
from fermion.events.schemas import NAME_PATTERN
from fermion.model_store import (
    AmbiguousDataset,
    DatasetNotFound,
    DatasetStore,
    RegistryError,
    StoreError,
    check_name,
    dataset_format,
)

from ..responses import install_error_handlers
from .datasets import validate_dataset
from .deps import BusDep, Datasets, Settings
from .errors import BadUpload, NotFound, Unavailable, UploadTooLarge
from .pictures import image_limits
from .registry_api import router as registry_router
from .settings import get_settings

log = logging.getLogger("fermion.ingest")

app = FastAPI(title="Fermion ingest")
install_error_handlers(app, log, validation_status=422)
app.include_router(registry_router)


class DatasetSelector(BaseModel):
    """A stored dataset: its name and, when more than one upload has that name, its sha256."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class TrainingSpec(BaseModel):
    """POST /v1/trainings."""

    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(pattern=NAME_PATTERN)
    dataset: DatasetSelector
    recipe: Recipe = Recipe()
    tenant: str = Field(default="default", pattern=NAME_PATTERN)


class Accepted(BaseModel):
    job_id: str
    model_name: str
    dataset: DatasetRef


@app.get("/healthz")
async def healthz() -> dict[str, bool]:
    """The process is up."""
    return {"live": True}


# Bytes a multipart upload may carry beyond the file itself: framing and the small form fields.
FORM_OVERHEAD = 1 << 20


# The route's body limit stops an oversized upload as it arrives (by Content-Length, or counting a
# chunked body) instead of after it has been spooled to disk; the handler then holds the file
# itself to `max_upload_bytes`.
@app.post("/v1/datasets", status_code=201, max_body_size=get_settings().max_upload_bytes + FORM_OVERHEAD)
async def upload_dataset(
    datasets: Datasets,
    settings: Settings,
    bus: BusDep,
    file: UploadFile = File(..., description="an .npz with arrays x and y, or a .csv with a header"),
    name: str | None = Form(default=None, description="dataset name; defaults to the file's stem"),
    tenant: str = Form(default="default"),
) -> DatasetRef:
    """Store a dataset by sha256 and announce it with `datasets.uploaded`."""
    filename = PurePath(file.filename or "").name
    fmt = dataset_format(PurePath(filename).suffix)
    if fmt is None:
        raise BadUpload(f"unsupported file {filename!r}: upload an .npz (arrays x, y) or a .csv with a header")
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise UploadTooLarge(f"upload exceeds the limit of {settings.max_upload_bytes} bytes")
    dataset_name = (name or PurePath(filename).stem).lower()
    try:
        check_name("dataset", dataset_name)
        check_name("tenant", tenant)
    except RegistryError as exc:
        raise BadUpload(str(exc)) from exc
    await asyncio.to_thread(validate_dataset, data, fmt, image_limits(settings))  # pictures decode: off the loop
    try:
        stored = await asyncio.to_thread(datasets.put, tenant, dataset_name, data, fmt)
    except StoreError as exc:
        raise Unavailable(f"object store unavailable: {exc}") from exc
    ref = DatasetRef(name=dataset_name, sha256=stored.sha256, uri=stored.uri, format=fmt, size=stored.size)
    await _publish(bus, DatasetUploaded(id=f"{tenant}.{dataset_name}.{stored.sha256[:32]}", tenant=tenant, data=ref))
    return ref


@app.post("/v1/trainings", status_code=202)
async def request_training(spec: TrainingSpec, datasets: Datasets, bus: BusDep) -> Accepted:
    """Publish `training.requested` for a stored dataset; the job id is the event id."""
    ref = await asyncio.to_thread(_find_dataset, datasets, spec.tenant, spec.dataset)
    event = TrainingRequested(
        tenant=spec.tenant,
        data=TrainingRequest(model_name=spec.model_name, dataset=ref, recipe=spec.recipe),
    )
    await _publish(bus, event)
    return Accepted(job_id=event.id, model_name=spec.model_name, dataset=ref)


class SweepSpec(BaseModel):
    """POST /v1/sweeps."""

    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(pattern=NAME_PATTERN)
    dataset: DatasetSelector
    trials: list[Recipe] = Field(min_length=1, max_length=64)
    metric: str = Field(default="macro_f1", min_length=1, max_length=64)
    gate: Gate = Gate()
    tenant: str = Field(default="default", pattern=NAME_PATTERN)


@app.post("/v1/sweeps", status_code=202)
async def request_sweep(spec: SweepSpec, datasets: Datasets, bus: BusDep) -> dict[str, object]:
    """Publish `training.sweep`: the trials fan out across the trainers; the best is promoted by the gate."""
    ref = await asyncio.to_thread(_find_dataset, datasets, spec.tenant, spec.dataset)
    event = TrainingSweep(
        tenant=spec.tenant,
        data=SweepRequest(
            model_name=spec.model_name, dataset=ref, trials=spec.trials, metric=spec.metric, gate=spec.gate
        ),
    )
    await _publish(bus, event)
    return {"sweep_id": event.id, "trial_job_ids": [f"{event.id}.{i}" for i in range(len(spec.trials))]}


async def _publish(bus: Bus, event: DatasetUploaded | TrainingRequested | TrainingSweep) -> None:
    try:
        await bus.publish(event)
    except BusError as exc:
        raise Unavailable(f"event bus unavailable, nothing was accepted: {exc}") from exc


def _find_dataset(datasets: DatasetStore, tenant: str, sel: DatasetSelector) -> DatasetRef:
    try:
        stored = datasets.find(tenant, sel.name, sel.sha256)
    except AmbiguousDataset as exc:
        raise BadUpload(str(exc)) from exc
    except DatasetNotFound as exc:
        raise NotFound(f"{exc}; upload it first (POST /v1/datasets)") from exc
    except StoreError as exc:
        raise Unavailable(f"object store unavailable: {exc}") from exc
    return DatasetRef(name=sel.name, sha256=stored.sha256, uri=stored.uri, format=stored.format, size=stored.size)
