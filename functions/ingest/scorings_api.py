"""Batch scoring over HTTP (issue 26): queue a scoring job, fetch its predictions.

`POST /v1/scorings` pins the model reference to a version and checks the dataset is a stored table
before `scoring.requested` is published; the job id is the event id, and `fermion jobs` shows it
like a training. A finished job's predictions come back from `GET /v1/jobs/{job}/output` (the bytes)
or, where the store signs, `GET /v1/jobs/{job}/output-url`.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from fermion.events import Bus, ScoringRequest, ScoringRequested
from fermion.events.envelope import Name
from fermion.events.scoring import ScoresFormat
from fermion.events.training import TEACHER_REF
from fermion.model_store import DatasetStore, ObjectNotFound, Registry, dataset_key
from fermion.model_store.tables import TABLE_FORMATS, DatasetProfile
from fermion.service.auth import Principal
from fermion.service.auth.http import needs, tenant_of
from fermion.service.responses import error_responses

from .datasets import shown
from .datasets_api import DatasetSelector, find_dataset
from .deps import BusDep, Datasets, RegistryDep
from .errors import AUTHENTICATED, BadRequest, Conflict, NotFound, NotSigned, OutcomeUnknown
from .idempotency import IdempotencyKey, event_id
from .jobs_api import _jobs, _one
from .params import Tenant

router = APIRouter(tags=["scoring"], responses=error_responses(*AUTHENTICATED))
URL_EXPIRES_S = 900
MEDIA = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv"}


class ScoringSpec(BaseModel):
    """POST /v1/scorings."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(pattern=TEACHER_REF, description="NAME (its latest), NAME@ALIAS or NAME:VERSION")]
    dataset: DatasetSelector
    id_column: str | None = Field(default=None, min_length=1, max_length=256, description="default: the row number")
    format: ScoresFormat = "parquet"
    chunk_rows: int = Field(default=65536, ge=1, le=1 << 20)
    tenant: Name | None = Field(default=None, description="default: the key's tenant (another needs an admin key)")


class ScoringAccepted(BaseModel):
    """202 of POST /v1/scorings: the job id is the event id."""

    job_id: str
    model_name: str
    version: int
    dataset: dict[str, Any]


def _request(registry: Registry, datasets: DatasetStore, tenant: str, spec: ScoringSpec) -> ScoringRequest:
    """The request with its version pinned, its dataset found and its id column checked (blocking)."""
    manifest = registry.lookup(tenant, spec.model)
    ref = find_dataset(datasets, tenant, spec.dataset)
    if ref.format not in TABLE_FORMATS:
        raise BadRequest(f"dataset {ref.name!r} is {ref.format}: batch scoring reads csv and parquet tables")
    raw = datasets.profile(dataset_key(tenant, ref.name, ref.sha256, ref.format))
    if raw and spec.id_column is not None:
        names = [c.name for c in DatasetProfile.model_validate_json(raw).columns]
        if spec.id_column not in names:
            raise BadRequest(
                f"dataset {ref.name!r} has no column {spec.id_column!r}; its columns are {', '.join(names)}"
            )
    return ScoringRequest(
        model_name=manifest.name,
        version=manifest.version,
        dataset=ref,
        id_column=spec.id_column,
        format=spec.format,
        chunk_rows=spec.chunk_rows,
    )


async def request_scoring(
    bus: Bus, registry: Registry, datasets: DatasetStore, tenant: str, spec: ScoringSpec, job_id: str
) -> ScoringAccepted:
    """Publish `scoring.requested` for a checked request (the HTTP route's and the bucket drop's way in)."""
    request = await asyncio.to_thread(_request, registry, datasets, tenant, spec)
    await bus.publish(ScoringRequested(id=job_id, tenant=tenant, data=request))
    assert request.version is not None
    shown_ref = shown(tenant, request.dataset).model_dump()
    return ScoringAccepted(job_id=job_id, model_name=request.model_name, version=request.version, dataset=shown_ref)


@router.post(
    "/v1/scorings",
    status_code=202,
    responses=error_responses(BadRequest, NotFound, OutcomeUnknown),
)
async def post_scoring(
    request: Request,
    spec: ScoringSpec,
    datasets: Datasets,
    registry: RegistryDep,
    bus: BusDep,
    idempotency_key: IdempotencyKey = None,
    caller: Principal = needs("train"),
) -> ScoringAccepted:
    """Queue a batch scoring of a stored table with a registered model (pinned to its version here)."""
    tenant = tenant_of(request, caller, spec.tenant)
    job_id = event_id(tenant, "scorings", idempotency_key)
    return await request_scoring(bus, registry, datasets, tenant, spec, job_id)


async def _output(bus: Bus, tenant: str, job: str) -> str:
    jobs = await _jobs(bus, tenant)
    status = jobs[_one(list(jobs), job)]
    if status.output is None:
        what = "not a scoring job" if status.kind != "scoring" else f"{status.state}, with no predictions yet"
        raise Conflict(f"job {status.job_id} is {what}")
    if not status.output.startswith(f"scores/{tenant}/"):  # the key comes from an event: read only our own
        raise Conflict(f"job {status.job_id} names its predictions outside this tenant's scores")
    return status.output


@router.get(
    "/v1/jobs/{job}/output",
    responses={
        200: {"content": {m: {} for m in MEDIA.values()}, "description": "the predictions"},
        **error_responses(NotFound, Conflict),
    },
    response_class=Response,
)
async def job_output(
    request: Request,
    job: str,
    bus: BusDep,
    registry: RegistryDep,
    tenant: Tenant = None,
    caller: Principal = needs("read"),
) -> Response:
    """A finished scoring job's predictions (Parquet or CSV), by its id or a unique prefix."""
    key = await _output(bus, tenant_of(request, caller, tenant), job)
    try:
        data, _ = await asyncio.to_thread(registry.store.get, key)
    except ObjectNotFound as exc:  # the job's event outlived its file (deleted, or another store's)
        raise NotFound(f"job {job}'s predictions are no longer in the store ({key})") from exc
    filename = key.rsplit("/", 1)[-1]
    return Response(
        data,
        media_type=MEDIA[filename.rsplit(".", 1)[-1]],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


class OutputUrl(BaseModel):
    """A presigned GET for a scoring job's predictions."""

    url: str
    key: str
    expires_in: int


@router.get("/v1/jobs/{job}/output-url", responses=error_responses(NotFound, Conflict, NotSigned))
async def job_output_url(
    request: Request,
    job: str,
    bus: BusDep,
    registry: RegistryDep,
    tenant: Tenant = None,
    caller: Principal = needs("read"),
) -> OutputUrl:
    """A presigned URL for a finished scoring job's predictions (409 where the store cannot sign)."""
    key = await _output(bus, tenant_of(request, caller, tenant), job)
    sign = getattr(registry.store, "presigned_get", None)
    if sign is None:
        raise NotSigned("presigned downloads need the S3 store; fetch GET /v1/jobs/{job}/output instead")
    url = await asyncio.to_thread(sign, key, expires_s=URL_EXPIRES_S)
    return OutputUrl(url=url, key=key, expires_in=URL_EXPIRES_S)
