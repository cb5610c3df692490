"""Ground truth over HTTP: `POST /v1/models/{name}/labels` publishes `models.labels`.

Labels name past predictions by the request id they were answered under (the OIP request `id`;
a request of several rows has ids `id/0`, `id/1`, ...). The monitor joins them with the
predictions it saw and keeps online accuracy per version, which the rollout controller weighs.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from fermion.events import LabelBatch, LabelEntry, LabelsSubmitted
from fermion.service.auth import Principal
from fermion.service.auth.http import needs, tenant_of
from fermion.service.responses import error_responses

from .deps import BusDep
from .errors import AUTHENTICATED, OutcomeUnknown
from .params import ModelName, Tenant

router = APIRouter(prefix="/v1/models", tags=["monitoring"], responses=error_responses(*AUTHENTICATED))


class LabelsBody(BaseModel):
    """POST /v1/models/{name}/labels."""

    model_config = ConfigDict(extra="forbid")

    labels: list[LabelEntry] = Field(min_length=1, max_length=10_000)


@router.post("/{name}/labels", status_code=202, responses=error_responses(OutcomeUnknown))
async def submit_labels(
    request: Request,
    name: ModelName,
    body: LabelsBody,
    bus: BusDep,
    tenant: Tenant = None,
    caller: Principal = needs("infer"),
) -> dict[str, object]:
    """Publish true labels for past predictions, by request id (a caller of the model may label its answers)."""
    tenant = tenant_of(request, caller, tenant)
    event = LabelsSubmitted(tenant=tenant, data=LabelBatch(model_name=name, labels=body.labels))
    await bus.publish(event)
    return {"event_id": event.id, "model_name": name, "labels": len(body.labels)}
