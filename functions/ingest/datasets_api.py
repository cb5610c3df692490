"""The tenant's stored datasets over HTTP (read scope): what the console's datasets page lists."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from fermion.model_store import StoreError
from fermion.service.auth import Principal
from fermion.service.auth.http import needs, tenant_of
from fermion.service.responses import error_responses

from .deps import Datasets
from .errors import AUTHENTICATED, Unavailable
from .params import Tenant

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=error_responses(*AUTHENTICATED))


@router.get("", responses=error_responses(Unavailable))
async def list_datasets(
    request: Request,
    datasets: Datasets,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    tenant: Tenant = None,
    caller: Principal = needs("read"),
) -> list[dict[str, Any]]:
    """Every stored upload of the tenant, by name then sha256: name, sha256, format, size, store key."""
    tenant = tenant_of(request, caller, tenant)
    try:
        return await asyncio.to_thread(datasets.listing, tenant, limit)
    except StoreError as exc:
        raise Unavailable(f"object store unavailable: {exc}") from exc
