"""Run history over HTTP (read scope): a tenant's training runs, one run, several side by side."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from fermion.model_store import RunNotFound, RunRecord, Runs, Sweeps
from fermion.service.auth import Principal
from fermion.service.auth.http import needs, tenant_of
from fermion.service.jobs import by_prefix
from fermion.service.responses import error_responses

from .deps import RegistryDep
from .errors import AUTHENTICATED, NotFound
from .params import JobId, ModelFilter, Tenant

router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=error_responses(*AUTHENTICATED))


@router.get("")
async def list_runs(
    request: Request,
    registry: RegistryDep,
    model: ModelFilter = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    tenant: Tenant = None,
    caller: Principal = needs("read"),
) -> list[dict[str, Any]]:
    """The tenant's runs, newest first, without their per-epoch curves (`/v1/runs/{job_id}` has them)."""
    tenant = tenant_of(request, caller, tenant)
    runs = await asyncio.to_thread(Runs(registry.store).list, tenant, model, limit)
    return [_summary(r) for r in runs]


@router.get("/compare", responses=error_responses(NotFound))
async def compare_runs(
    request: Request,
    registry: RegistryDep,
    job: Annotated[
        list[str], Query(min_length=2, max_length=20, description="two or more job ids, or unique prefixes of them")
    ],
    tenant: Tenant = None,
    caller: Principal = needs("read"),
) -> dict[str, Any]:
    """Several runs side by side: parameters, final metrics and curves, and which parameters differ."""
    tenant = tenant_of(request, caller, tenant)
    store = Runs(registry.store)
    runs = [await asyncio.to_thread(_find, store, tenant, j) for j in job]
    keys = sorted({k for r in runs for k in r.parameters})
    differs = [k for k in keys if len({repr(r.parameters.get(k)) for r in runs}) > 1]
    return {"runs": [r.model_dump(mode="json") for r in runs], "differing_parameters": differs}


@router.get("/{job_id}", responses=error_responses(NotFound))
async def get_run(
    request: Request,
    job_id: JobId,
    registry: RegistryDep,
    model: ModelFilter = None,
    tenant: Tenant = None,
    caller: Principal = needs("read"),
) -> dict[str, Any]:
    """One run (by its job id or a unique prefix): parameters, dataset, every epoch, final metrics, lineage."""
    tenant = tenant_of(request, caller, tenant)
    record = await asyncio.to_thread(_find, Runs(registry.store), tenant, job_id, model)
    return record.model_dump(mode="json")


def _find(runs: Runs, tenant: str, job: str, model: str | None = None) -> RunRecord:
    """The run of job id `job`, else of the one job id it is a prefix of (an ambiguous one names them)."""
    try:
        return runs.get(tenant, job, model)
    except RunNotFound:
        try:
            job = by_prefix(runs.job_ids(tenant, model), job, "run")
        except LookupError as exc:
            raise RunNotFound(f"{exc} in tenant {tenant!r}") from None
    return runs.get(tenant, job, model)


def _summary(run: RunRecord) -> dict[str, Any]:
    data = run.model_dump(mode="json", exclude={"epochs", "lineage"})
    data["epochs_done"] = len(run.epochs)
    data["duration_s"] = run.duration_s
    return data


sweeps_router = APIRouter(prefix="/v1/sweeps", tags=["runs"], responses=error_responses(*AUTHENTICATED))


@sweeps_router.get("/{sweep_id}", responses=error_responses(NotFound))
async def get_sweep(
    request: Request,
    sweep_id: JobId,
    registry: RegistryDep,
    model: ModelFilter = None,
    tenant: Tenant = None,
    caller: Principal = needs("read"),
) -> dict[str, Any]:
    """One sweep's study: every trial (parameters, epochs, end), and once done its winner and gate decision."""
    tenant = tenant_of(request, caller, tenant)
    record = await asyncio.to_thread(Sweeps(registry.store).get, tenant, sweep_id, model)
    return record.model_dump(mode="json")
