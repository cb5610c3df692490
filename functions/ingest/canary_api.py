"""Canary rollouts and shadows over HTTP: start, step, finish, abort, see; mirror to a shadow.

Every move is `model_store.Rollouts` (one compare-and-swap of the alias record), exactly as the
CLI made it before it went over HTTP: a move that meets another one, or a rollout that is not
there, is a 409. Starting one is announced as `models.rollout.started` so the monitor judges the
alias before traffic comes; the move stands when NATS is away (`announced: false`).

The status (GET .../canary) adds what a rollout page shows: each step and the bake time left
(`progress`), and the rollout controller's latest comparison of canary and incumbent with its
decision and reason (`analysis`, kept in the store by the monitor: `model_store/serving.py`).
A promote or rollback of an alias under a rollout is refused (409) unless it says `abort_rollout`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fermion.events import Bus, BusError, ModelRollout, RolloutChange
from fermion.model_store import Alias, Bounds, RolloutAnalysis, Rollouts, ServingLog
from fermion.service.auth import Principal
from fermion.service.auth.http import needs, tenant_of
from fermion.service.responses import error_responses

from .deps import RegistryDep, Settings, get_bus
from .errors import AUTHENTICATED, BadRequest, Conflict, InsufficientStorage, NotFound, Unavailable
from .params import AliasName, ModelName, Tenant
from .registry_api import movable
from .settings import IngestSettings

log = logging.getLogger("fermion.ingest")
router = APIRouter(prefix="/v1/models", tags=["rollouts"], responses=error_responses(*AUTHENTICATED))
# A move: `latest` by hand or bad steps, no such model/version/alias, another move first or no
# rollout to move, a full store.
MOVES = error_responses(BadRequest, NotFound, Conflict, InsufficientStorage)


class CanaryStart(BaseModel):
    """POST /v1/models/{name}/aliases/{alias}/canary."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="the canary version")
    steps: list[int] = Field(default=[10, 50, 100], min_length=1, max_length=100, description="weights in percent")
    bake_s: float = Field(default=300.0, ge=0, description="seconds each step bakes before the next")
    automatic: bool = Field(default=True, description="False: by hand; the controller neither steps nor rolls back")
    bounds: Bounds = Bounds()


class CanaryStep(BaseModel):
    """POST /v1/models/{name}/aliases/{alias}/canary/step."""

    model_config = ConfigDict(extra="forbid")

    to: int | None = Field(default=None, description="the canary's weight in percent (100 finishes, 0 ends it)")


class ShadowUpdate(BaseModel):
    """PUT /v1/models/{name}/aliases/{alias}/shadow."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(default=None, ge=1, description="the version mirrored to; null stops mirroring")


class RolloutStep(BaseModel):
    """One step of a rollout's plan."""

    index: int
    weight: int = Field(description="the canary's share of the traffic at this step, in percent")
    state: Literal["done", "current", "next"]


class RolloutProgress(BaseModel):
    """Where a running rollout stands: its steps, the live split and the bake time left."""

    canary: int
    incumbent: int
    automatic: bool = Field(description="false: stepped by hand; the controller only advises")
    steps: list[RolloutStep]
    step: int = Field(description="index of the current step")
    weight: int = Field(description="the canary's live share of the traffic, in percent")
    step_started_at: datetime
    bake_s: float
    bake_left_s: float = Field(description="seconds until the current step has baked (0: baked)")
    bounds: Bounds

    @classmethod
    def of(cls, record: Alias, now: datetime) -> RolloutProgress | None:
        """The progress of `record`'s rollout (None: none runs)."""
        plan = record.rollout
        if plan is None:
            return None
        steps = [
            RolloutStep(index=i, weight=w, state="done" if i < plan.step else "current" if i == plan.step else "next")
            for i, w in enumerate(plan.steps)
        ]
        baked = (now - plan.step_started_at).total_seconds()
        return cls(
            canary=plan.canary,
            incumbent=plan.incumbent,
            automatic=plan.automatic,
            steps=steps,
            step=plan.step,
            weight=record.split().get(plan.canary, 0),
            step_started_at=plan.step_started_at,
            bake_s=plan.bake_s,
            bake_left_s=round(max(plan.bake_s - baked, 0.0), 3),
            bounds=plan.bounds,
        )


class AliasState(BaseModel):
    """An alias's record after a move (or as it is): its split, rollout plan, shadow and recent moves."""

    name: str
    alias: str
    record: Alias
    split: dict[int, int] = Field(default={}, description="version → live share of the traffic in percent")
    announced: bool | None = Field(default=None, description="start only: models.rollout.started was published")
    progress: RolloutProgress | None = Field(
        default=None, description="status only: the running rollout's steps and bake time left (null: none runs)"
    )
    analysis: RolloutAnalysis | None = Field(
        default=None,
        description="status only: the rollout controller's latest comparison of canary and incumbent, its decision "
        "and reason (kept after the rollout ended; null: never judged)",
    )

    @model_validator(mode="after")
    def _split(self) -> AliasState:
        if not self.split:
            self.split = self.record.split()
        return self


async def _move(request: Request, caller: Principal, tenant: str, name: str, alias: str, fn: Any, *args: Any) -> Alias:
    """One Rollouts move off the event loop, audited like an alias move."""
    movable(alias)
    record: Alias = await asyncio.to_thread(fn, tenant, name, alias, *args)
    split = ", ".join(f"v{v} {w}%" for v, w in sorted(record.split().items()))
    details = {"tenant": tenant, "version": record.version, "split": split}
    request.app.state.security.auditor.record(caller, "alias.moved", f"{name}@{alias}", details=details)
    return record


@router.post("/{name}/aliases/{alias}/canary", responses=MOVES)
async def start_canary(
    request: Request,
    name: ModelName,
    alias: AliasName,
    body: CanaryStart,
    registry: RegistryDep,
    settings: Settings,
    tenant: Tenant = None,
    caller: Principal = needs("promote"),
) -> AliasState:
    """Send the first step's share of the alias's traffic to `version`; publishes `models.rollout.started`."""
    tenant = tenant_of(request, caller, tenant)
    rollouts = Rollouts(registry)

    def start(t: str, n: str, a: str) -> Alias:
        return rollouts.start(
            t, n, a, body.version, steps=body.steps, bake_s=body.bake_s, bounds=body.bounds, automatic=body.automatic
        )

    record = await _move(request, caller, tenant, name, alias, start)
    announced = await _announce(request, settings, tenant, name, alias, record, body.version)
    return AliasState(name=name, alias=alias, record=record, announced=announced)


@router.post("/{name}/aliases/{alias}/canary/step", responses=MOVES)
async def step_canary(
    request: Request,
    name: ModelName,
    alias: AliasName,
    body: CanaryStep,
    registry: RegistryDep,
    tenant: Tenant = None,
    caller: Principal = needs("promote"),
) -> AliasState:
    """Move the canary to its next step (or to `to` percent)."""
    tenant = tenant_of(request, caller, tenant)
    rollouts = Rollouts(registry)
    record = await _move(request, caller, tenant, name, alias, lambda t, n, a: rollouts.step(t, n, a, to=body.to))
    return AliasState(name=name, alias=alias, record=record)


@router.post("/{name}/aliases/{alias}/canary/finish", responses=MOVES)
async def finish_canary(
    request: Request,
    name: ModelName,
    alias: AliasName,
    registry: RegistryDep,
    tenant: Tenant = None,
    caller: Principal = needs("promote"),
) -> AliasState:
    """Send all of the alias's traffic to the canary (a rollback undoes it)."""
    tenant = tenant_of(request, caller, tenant)
    record = await _move(request, caller, tenant, name, alias, Rollouts(registry).finish)
    return AliasState(name=name, alias=alias, record=record)


@router.post("/{name}/aliases/{alias}/canary/abort", responses=MOVES)
async def abort_canary(
    request: Request,
    name: ModelName,
    alias: AliasName,
    registry: RegistryDep,
    tenant: Tenant = None,
    caller: Principal = needs("promote"),
) -> AliasState:
    """Send all of the alias's traffic back to the incumbent."""
    tenant = tenant_of(request, caller, tenant)
    record = await _move(request, caller, tenant, name, alias, Rollouts(registry).abort)
    return AliasState(name=name, alias=alias, record=record)


@router.get("/{name}/aliases/{alias}/canary", responses=error_responses(NotFound))
async def canary_status(
    request: Request,
    name: ModelName,
    alias: AliasName,
    registry: RegistryDep,
    tenant: Tenant = None,
    caller: Principal = needs("read"),
) -> AliasState:
    """The alias's split, its rollout's progress and the controller's latest analysis, its shadow, its moves."""
    tenant = tenant_of(request, caller, tenant)
    record = await asyncio.to_thread(registry.alias, tenant, name, alias)
    analysis = await asyncio.to_thread(ServingLog(registry.store).analysis, tenant, name, alias)
    progress = RolloutProgress.of(record, datetime.now(UTC))
    return AliasState(name=name, alias=alias, record=record, progress=progress, analysis=analysis)


@router.put("/{name}/aliases/{alias}/shadow", responses=MOVES)
async def set_shadow(
    request: Request,
    name: ModelName,
    alias: AliasName,
    body: ShadowUpdate,
    registry: RegistryDep,
    tenant: Tenant = None,
    caller: Principal = needs("promote"),
) -> AliasState:
    """Mirror the alias's traffic to `version` (answers compared, never returned); null stops it."""
    tenant = tenant_of(request, caller, tenant)
    record = await _move(request, caller, tenant, name, alias, Rollouts(registry).set_shadow, body.version)
    return AliasState(name=name, alias=alias, record=record)


async def _announce(
    request: Request, settings: IngestSettings, tenant: str, name: str, alias: str, record: Alias, version: int
) -> bool:
    """Publish `models.rollout.started`; the alias already moved, so a bus outage is logged, not an error."""
    plan = record.rollout
    change = RolloutChange(
        model_name=name,
        alias=alias,
        canary=version,
        incumbent=plan.incumbent if plan else record.version,
        action="started" if plan else "promoted",
        weights=record.split(),
        reason="started over HTTP",
    )
    # The bus is asked for only now: a canary starts while NATS is away (the move does not need it).
    override = request.app.dependency_overrides.get(get_bus)
    try:
        bus: Bus = override() if override is not None else await get_bus(settings)
        await bus.publish(ModelRollout(tenant=tenant, data=change))
    except (BusError, Unavailable) as exc:
        log.warning("canary %s@%s started but models.rollout was not published: %s", name, alias, exc)
        return False
    return True
