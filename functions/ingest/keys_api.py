"""API keys over HTTP (admin only): create (the key is shown once), list, revoke."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from fermion.events.envelope import Name
from fermion.model_store import KeyRecord, Scope
from fermion.service.auth import Principal
from fermion.service.auth.http import needs
from fermion.service.responses import error_responses

from .deps import Keys
from .errors import AUTHENTICATED, InsufficientStorage, NotFound
from .params import KeyId, TenantFilter

# A key that should outlive ten years should not expire at all; past the year 9999 a date cannot be written.
MAX_LIFETIME_S = 10 * 365 * 86400
router = APIRouter(prefix="/v1/keys", tags=["keys"], responses=error_responses(*AUTHENTICATED))


class KeySpec(BaseModel):
    """POST /v1/keys."""

    model_config = ConfigDict(extra="forbid")

    tenant: Name
    scopes: list[Scope] = Field(min_length=1)
    name: str = Field(default="", max_length=100)
    expires_in_s: float | None = Field(
        default=None, gt=0, le=MAX_LIFETIME_S, description="seconds until it expires (at most ten years); none: never"
    )


def _shown(record: KeyRecord) -> dict[str, Any]:
    return {
        "key_id": record.key_id,
        "masked": record.masked,
        "tenant": record.tenant,
        "name": record.name,
        "scopes": record.scopes,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "revoked_at": record.revoked_at,
    }


@router.post("", status_code=201, responses=error_responses(InsufficientStorage))
async def create_key(request: Request, spec: KeySpec, keys: Keys, caller: Principal = needs("admin")) -> dict[str, Any]:
    """A new key for a tenant; the answer holds the key itself, which is never shown again."""
    expires = timedelta(seconds=spec.expires_in_s) if spec.expires_in_s else None
    record, key = await asyncio.to_thread(keys.create, spec.tenant, spec.scopes, name=spec.name, expires_in=expires)
    request.app.state.security.auditor.record(
        caller, "key.created", record.key_id, details={"tenant": record.tenant, "scopes": ",".join(record.scopes)}
    )
    return {**_shown(record), "key": key}


@router.get("")
async def list_keys(
    keys: Keys, tenant: TenantFilter = None, caller: Principal = needs("admin")
) -> list[dict[str, Any]]:
    """Every key (of a tenant), masked."""
    return [_shown(r) for r in await asyncio.to_thread(keys.list, tenant)]


@router.delete("/{key_id}", responses=error_responses(NotFound, InsufficientStorage))
async def revoke_key(request: Request, key_id: KeyId, keys: Keys, caller: Principal = needs("admin")) -> dict[str, Any]:
    """Revoke a key; warm functions stop accepting it within their key TTL (5 s by default)."""
    record = await asyncio.to_thread(keys.revoke, key_id)
    request.app.state.security.auditor.record(caller, "key.revoked", key_id, details={"tenant": record.tenant})
    revoked: datetime | None = record.revoked_at
    return {**_shown(record), "revoked_at": revoked}
