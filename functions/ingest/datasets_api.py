"""Stored datasets over HTTP (read scope): a tenant's uploads with their profiles, one by name."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from fermion.events import DatasetRef
from fermion.events.envelope import NAME_PATTERN, Name
from fermion.model_store import DatasetStore, StoredDataset
from fermion.model_store.tables import DatasetProfile
from fermion.service.auth import Principal
from fermion.service.auth.http import needs, tenant_of
from fermion.service.responses import error_responses

from .deps import Datasets
from .errors import AUTHENTICATED, BadRequest, NotFound
from .params import Tenant

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=error_responses(*AUTHENTICATED))
DatasetName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63, description="a dataset's name")]


class DatasetSelector(BaseModel):
    """A stored dataset: its name and, when more than one upload has that name, its sha256."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


def find_dataset(datasets: DatasetStore, tenant: str, sel: DatasetSelector) -> DatasetRef:
    """The stored dataset a selector names (blocking: a store listing)."""
    stored = datasets.find(tenant, sel.name, sel.sha256)
    return DatasetRef(name=sel.name, sha256=stored.sha256, uri=stored.uri, format=stored.format, size=stored.size)


class DatasetSummary(BaseModel):
    """One stored upload, in a listing: what it is, and a table's size and label."""

    name: str
    sha256: str
    key: str
    format: str
    size: int
    rows: int | None = None
    columns: int | None = None
    label: str | None = None
    task: str | None = None


class DatasetDetail(BaseModel):
    """One stored upload in full: a table's profile (None for npz, pictures and older uploads)."""

    name: str
    sha256: str
    key: str
    format: str
    size: int
    profile: DatasetProfile | None = None


def _profile(datasets: DatasetStore, stored: StoredDataset) -> DatasetProfile | None:
    raw = datasets.profile(stored.key)
    return DatasetProfile.model_validate_json(raw) if raw else None


def _summaries(datasets: DatasetStore, tenant: str) -> list[DatasetSummary]:
    out = []
    for name in datasets.names(tenant):
        for stored in datasets.uploads(tenant, name):
            p = _profile(datasets, stored)
            out.append(
                DatasetSummary(
                    name=name,
                    sha256=stored.sha256,
                    key=stored.key,
                    format=stored.format,
                    size=stored.size,
                    rows=p.rows if p else None,
                    columns=len(p.columns) if p else None,
                    label=p.label.column if p and p.label else None,
                    task=p.label.task if p and p.label else None,
                )
            )
    return out


@router.get("")
async def list_datasets(
    request: Request, datasets: Datasets, tenant: Tenant = None, caller: Principal = needs("read")
) -> list[DatasetSummary]:
    """The tenant's stored datasets, one entry per upload, by name."""
    return await asyncio.to_thread(_summaries, datasets, tenant_of(request, caller, tenant))


@router.get("/{name}", responses=error_responses(NotFound, BadRequest))
async def show_dataset(
    request: Request,
    name: DatasetName,
    datasets: Datasets,
    sha256: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$", description="which upload, if several")] = None,
    tenant: Tenant = None,
    caller: Principal = needs("read"),
) -> DatasetDetail:
    """One stored dataset and its profile; a name with several uploads needs `sha256` (400 listing them)."""
    scope = tenant_of(request, caller, tenant)

    def one() -> DatasetDetail:
        stored = datasets.find(scope, name, sha256)
        return DatasetDetail(
            name=name,
            sha256=stored.sha256,
            key=stored.key,
            format=stored.format,
            size=stored.size,
            profile=_profile(datasets, stored),
        )

    return await asyncio.to_thread(one)
