"""Dead-lettered training jobs over HTTP: each with its reason, and a retry (the console's DLQ page).

A retry publishes the job's original event again (same job id, a fresh message id), as
`fermion jobs dlq retry` does; a tenant sees and retries only its own jobs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError

from fermion.events import TrainingRequested, parse_event, subjects
from fermion.events.bus import TENANT_HEADER, StoredMessage

from ..security import Principal
from ..security.http import needs, tenant_of
from .deps import BusDep
from .errors import NotFound

router = APIRouter(prefix="/v1/dlq", tags=["jobs"])
SUBJECT = subjects.dead_letter(subjects.TRAINING_REQUESTED)
Tenant = Annotated[str | None, Query(max_length=63, description="default: the key's tenant (admin keys only)")]


def _letters(log: list[StoredMessage], tenant: str) -> list[tuple[StoredMessage, TrainingRequested]]:
    out = []
    for m in log:
        try:
            event = parse_event(m.data, TrainingRequested)
        except ValidationError:  # malformed: no tenant to show it to (the CLI's admin view lists it)
            continue
        if isinstance(event, TrainingRequested) and event.tenant == tenant:
            out.append((m, event))
    return out


@router.get("")
async def dead_letters(
    request: Request, bus: BusDep, tenant: Tenant = None, caller: Principal = needs("read")
) -> list[dict[str, Any]]:
    """The tenant's dead-lettered jobs, oldest first, with why and after how many deliveries."""
    tenant = tenant_of(request, caller, tenant)
    return [
        {
            "seq": m.seq,
            "job_id": event.id,
            "model_name": event.data.model_name,
            "reason": m.headers.get("Fermion-Reason", ""),
            "deliveries": m.headers.get("Fermion-Deliveries", "?"),
        }
        for m, event in _letters(await bus.history(SUBJECT), tenant)
    ]


@router.post("/{job_id}/retry", status_code=202)
async def retry(
    request: Request, job_id: str, bus: BusDep, tenant: Tenant = None, caller: Principal = needs("train")
) -> dict[str, Any]:
    """Publish a dead-lettered job's original event again (same job id, a fresh delivery)."""
    tenant = tenant_of(request, caller, tenant)
    letters = [(m, e) for m, e in _letters(await bus.history(SUBJECT), tenant) if e.id == job_id]
    if not letters:
        raise NotFound(f"no dead-lettered job {job_id!r} for tenant {tenant!r}")
    letter, _ = letters[-1]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    await bus.publish_bytes(
        subjects.TRAINING_REQUESTED,
        letter.data,
        msg_id=f"{job_id}.retry.{stamp}",
        headers={"Fermion-Retry-Of": str(letter.seq), TENANT_HEADER: tenant},
    )
    return {"job_id": job_id, "retry_of": letter.seq}
