"""Federations over HTTP: start one (publishes `federated.requested`; the coordinator runs it), list its rounds.

The rounds are the coordinator's `result.json` records, read where it writes them create-only
(`federated/{tenant}/{federation}/rounds/{r}/result.json`, functions/federated/store.py): ingest
reads the object store, never the federated function's code.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fermion.events import Recipe
from fermion.events.envelope import NAME_PATTERN
from fermion.events.federation import FederationMember, FederationRequested, FederationSpec, Privacy
from fermion.model_store import AmbiguousDataset, DatasetNotFound, ObjectNotFound, ObjectStore, StoreError
from fermion.service.auth import Principal
from fermion.service.auth.http import needs, tenant_of
from fermion.service.responses import error_responses

from .deps import BusDep, Datasets
from .errors import AUTHENTICATED, BadUpload, NotFound, OutcomeUnknown, Unavailable
from .idempotency import IdempotencyKey, event_id
from .params import Tenant

router = APIRouter(tags=["federations"], responses=error_responses(*AUTHENTICATED))
# A federation's id is its `federated.requested` event's id (a name the store accepts as a key part).
FederationId = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63, description="the federation's id")]
MAX_ROUNDS = 1000  # FederationBody.rounds' bound: the listing stops there


class HoldoutSelector(BaseModel):
    """The coordinator's held-out set: an uploaded .npz, by name (and sha256 when the name has several)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class FederationBody(BaseModel):
    """POST /v1/federations: a FederationSpec whose held-out set is named, not addressed."""

    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(pattern=NAME_PATTERN)
    recipe: Recipe = Recipe()
    labels: list[str] = Field(min_length=2, max_length=10_000)
    n_features: int = Field(ge=1)
    rounds: int = Field(default=10, ge=1, le=1000)
    participants: list[FederationMember] = Field(min_length=1, max_length=1000)
    min_updates: int = Field(default=1, ge=1)
    round_deadline_s: float = Field(default=300.0, gt=0)
    holdout: HoldoutSelector
    aggregation: str = "fedavg"
    trim_fraction: float = 0.2
    proximal_mu: float = 0.0
    privacy: Privacy | None = None
    target_accuracy: float | None = None
    tenant: str | None = Field(default=None, pattern=NAME_PATTERN, description="default: the key's tenant")


@router.post("/v1/federations", status_code=202, responses=error_responses(BadUpload, NotFound, OutcomeUnknown))
async def start_federation(
    request: Request,
    body: FederationBody,
    datasets: Datasets,
    bus: BusDep,
    idempotency_key: IdempotencyKey = None,
    caller: Principal = needs("train"),
) -> dict[str, object]:
    """Publish `federated.requested`; the federation id is the event id."""
    tenant = tenant_of(request, caller, body.tenant)
    try:
        stored = await asyncio.to_thread(datasets.find, tenant, body.holdout.name, body.holdout.sha256)
    except AmbiguousDataset as exc:
        raise BadUpload(str(exc)) from exc
    except DatasetNotFound as exc:
        raise NotFound(f"held-out set: {exc}; upload it first (POST /v1/datasets)") from exc
    except StoreError as exc:
        raise Unavailable(f"object store unavailable: {exc}") from exc
    fields = body.model_dump(exclude={"tenant", "holdout"})
    holdout = {
        "name": body.holdout.name,
        "sha256": stored.sha256,
        "uri": stored.uri,
        "format": stored.format,
        "size": stored.size,
    }
    try:
        spec = FederationSpec.model_validate({**fields, "holdout": holdout})
    except ValidationError as exc:
        raise BadUpload(f"invalid federation: {exc.errors()[0]['msg']}") from exc
    # A retry with the same Idempotency-Key is the same event id: JetStream de-duplicates it (Nats-Msg-Id).
    event = FederationRequested(id=event_id(tenant, "federations", idempotency_key), tenant=tenant, data=spec)
    await bus.publish(event)  # the translations: 503 if it was not sent, 504 if sent but not confirmed
    return {"federation_id": event.id, "model_name": spec.model_name, "rounds": spec.rounds}


class RoundResult(BaseModel):
    """One closed round: the version it registered, its held-out metrics, who contributed."""

    model_config = ConfigDict(extra="allow")

    round: int
    version: int
    metrics: dict[str, Any]
    n_examples: int
    participants: list[str]


@router.get("/v1/federations/{federation_id}/rounds")
async def federation_rounds(
    request: Request,
    federation_id: FederationId,
    datasets: Datasets,
    tenant: Tenant = None,
    caller: Principal = needs("read"),
) -> list[RoundResult]:
    """Each closed round of a federation, in order (empty until the first round closes)."""
    tenant = tenant_of(request, caller, tenant)
    try:
        return await asyncio.to_thread(_rounds, datasets.store, tenant, federation_id)
    except StoreError as exc:
        raise Unavailable(f"object store unavailable: {exc}") from exc


@router.get("/v1/federations")
async def list_federations(
    request: Request, datasets: Datasets, tenant: Tenant = None, caller: Principal = needs("read")
) -> list[dict[str, Any]]:
    """The tenant's federations that have stored anything: each id and how many rounds have closed."""
    tenant = tenant_of(request, caller, tenant)
    try:
        return await asyncio.to_thread(_federations, datasets.store, tenant)
    except StoreError as exc:
        raise Unavailable(f"object store unavailable: {exc}") from exc


def _federations(store: ObjectStore, tenant: str) -> list[dict[str, Any]]:
    out = []
    for name in sorted(n.rstrip("/") for n in store.children(f"federated/{tenant}/")):
        rounds = _rounds(store, tenant, name)
        last = rounds[-1] if rounds else None
        out.append(
            {
                "federation_id": name,
                "rounds_closed": len(rounds),
                "last_version": last.version if last else None,
                "last_metrics": last.metrics if last else {},
                "participants": last.participants if last else [],
            }
        )
    return out


def _rounds(store: ObjectStore, tenant: str, federation_id: str) -> list[RoundResult]:
    out = []
    for r in range(1, MAX_ROUNDS + 1):
        try:
            raw, _ = store.get(f"federated/{tenant}/{federation_id}/rounds/{r}/result.json")
        except ObjectNotFound:
            break
        result: dict[str, Any] = json.loads(raw)
        out.append(RoundResult.model_validate({**result, "round": r}))
    return out
