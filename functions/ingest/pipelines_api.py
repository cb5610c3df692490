"""Pipeline rules over HTTP: an upload, or a drift alarm of the model, trains it through a gate.

`PUT /v1/pipelines/{name}` takes the whole rule: its trigger (`on: upload | drift`), what it trains
on (`dataset_prefix`; for drift also `dataset`), the recipe, and the gate with its canary steps and
bake time. `GET /v1/pipelines` lists each rule with its last firing: the newest job of the rule the
event log knows (a rule's job ids are `{rule}.{sha256[:40]}` for an upload, `{rule}.drift.v{N}` for
drift of version N; functions/trainer/pipeline.py and retrain.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fermion.events import Bus, BusError, Gate, Recipe
from fermion.events.envelope import Name
from fermion.model_store import PipelineRule, Pipelines, Rollout
from fermion.service.auth import Principal
from fermion.service.auth.http import also_needs, needs, tenant_of
from fermion.service.jobs import JobStatus, job_statuses
from fermion.service.responses import error_responses

from .deps import RegistryDep, Settings, get_bus
from .errors import AUTHENTICATED, BadRequest, InsufficientStorage, NotFound, Unavailable
from .jobs_api import TRAINING_LOG
from .params import PipelineName, Tenant

log = logging.getLogger("fermion.ingest")
router = APIRouter(tags=["pipelines"], responses=error_responses(*AUTHENTICATED))
Trigger = Literal["upload", "drift"]


class PipelineSpec(BaseModel):
    """PUT /v1/pipelines/{name}: what triggers the rule, what it trains on and how, and its gate."""

    model_config = ConfigDict(extra="forbid")

    on: Trigger = Field(
        default="upload",
        description="`upload`: an uploaded dataset whose name starts with `dataset_prefix`; `drift`: a "
        "`models.drift_detected` alarm of `model_name`, which retrains it on `dataset` (or on the newest "
        "upload matching `dataset_prefix`)",
    )
    dataset_prefix: Name | None = Field(
        default=None,
        description="upload rules (required): the dataset name or name prefix whose uploads trigger the rule; "
        "drift rules without `dataset`: the newest upload whose name starts with it is retrained on",
    )
    dataset: Name | None = Field(
        default=None, description="drift rules: the dataset retrained on (its newest upload); not for upload rules"
    )
    model_name: Name = Field(description="the model trained and registered")
    recipe: Recipe = Field(default_factory=Recipe, description="how it trains")
    gate: Gate = Field(
        default_factory=Gate, description="when the new version is promoted, and whether through a canary rollout"
    )

    @model_validator(mode="after")
    def _complete(self) -> PipelineSpec:
        if self.on == "upload" and self.dataset is not None:
            raise ValueError(
                "dataset names what a drift rule retrains on; an upload rule trains on the upload "
                "that matches dataset_prefix (give on: drift, or dataset_prefix instead)"
            )
        if self.on == "upload" and self.dataset_prefix is None:
            raise ValueError("an upload rule needs dataset_prefix: the dataset name or prefix whose uploads trigger it")
        if self.on == "drift" and self.dataset is None and self.dataset_prefix is None:
            raise ValueError(
                "a drift rule needs dataset (the dataset it retrains on) or dataset_prefix "
                "(it retrains on the newest upload whose name starts with it)"
            )
        if self.gate.canary:  # the rollout's own rule, checked now rather than when the gate first passes
            try:
                Rollout(canary=2, incumbent=1, steps=self.gate.canary, bake_s=self.gate.bake_s)
            except ValidationError as exc:
                raise ValueError(f"gate.canary: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
        return self


class Firing(BaseModel):
    """The newest job a rule started, as the event log tells it."""

    job_id: str = Field(description="`{rule}.{sha256[:40]}` for an upload, `{rule}.drift.v{N}` for drift of version N")
    state: str = Field(description="queued, running, completed, failed or cancelled")
    at: datetime | None = Field(description="when the job last changed")
    version: int | None = Field(description="the version it registered")
    reason: str | None = Field(description="why it failed")


class Pipeline(BaseModel):
    """A pipeline rule as stored, with its last firing."""

    name: str
    on: Trigger
    dataset_prefix: str
    dataset: str | None
    model_name: str
    recipe: Recipe
    gate: Gate | None
    last_fired: Firing | None = Field(
        default=None, description="the newest job this rule started; null: none yet (or the event log is away)"
    )

    @classmethod
    def of(cls, rule: PipelineRule, fired: JobStatus | None = None) -> Pipeline:
        """The view of a stored rule."""
        firing = None
        if fired is not None:
            firing = Firing(
                job_id=fired.job_id, state=fired.state, at=fired.updated, version=fired.version, reason=fired.reason
            )
        return cls.model_validate({**rule.model_dump(), "last_fired": firing})


async def bus_if_up(request: Request, settings: Settings) -> Bus | None:
    """The bus, or None when it is away: the rules still list, without their last firing.

    It calls get_bus itself (to catch its refusal), so it honours an override of get_bus as FastAPI
    would (as canary_api does): a test's or an embedding app's bus, never a second connection.
    """
    override = request.app.dependency_overrides.get(get_bus)
    try:
        return override() if override is not None else await get_bus(settings)
    except Unavailable as exc:
        log.warning("pipeline rules listed without their last firing: %s", exc)
        return None


@router.get("/v1/pipelines")
async def list_pipelines(
    request: Request,
    registry: RegistryDep,
    bus: Annotated[Bus | None, Depends(bus_if_up)],
    tenant: Tenant = None,
    caller: Principal = needs("read"),
) -> list[Pipeline]:
    """The tenant's pipeline rules: trigger, datasets, model, recipe, gate and last firing."""
    scope = tenant_of(request, caller, tenant)
    rules = await asyncio.to_thread(Pipelines(registry.store).list, scope)
    fired = await _last_fired(bus, scope, [r.name for r in rules]) if rules and bus else {}
    return [Pipeline.of(r, fired.get(r.name)) for r in rules]


@router.put("/v1/pipelines/{name}", responses=error_responses(BadRequest, InsufficientStorage))
async def put_pipeline(
    request: Request,
    name: PipelineName,
    spec: PipelineSpec,
    registry: RegistryDep,
    tenant: Tenant = None,
    caller: Principal = needs("train"),
) -> Pipeline:
    """Create or replace a rule: an upload matching the prefix, or drift of the model, trains it through the gate."""
    scope = tenant_of(request, caller, tenant)
    also_needs(request, caller, "promote")  # a rule's gate moves an alias
    try:
        rule = PipelineRule(
            name=name,
            on=spec.on,
            dataset_prefix=spec.dataset_prefix or spec.dataset or "",  # the spec checked one is there
            dataset=spec.dataset,
            model_name=spec.model_name,
            recipe=spec.recipe.model_dump(),
            gate=spec.gate.model_dump(),
        )
    except ValidationError as exc:
        raise BadRequest(f"invalid pipeline rule: {exc.errors()[0]['msg']}") from exc
    await asyncio.to_thread(Pipelines(registry.store).put, scope, rule)
    return Pipeline.of(rule)


@router.delete("/v1/pipelines/{name}", responses=error_responses(NotFound))
async def delete_pipeline(
    request: Request,
    name: PipelineName,
    registry: RegistryDep,
    tenant: Tenant = None,
    caller: Principal = needs("train"),
) -> dict[str, str]:
    """Remove a rule."""
    scope = tenant_of(request, caller, tenant)
    await asyncio.to_thread(Pipelines(registry.store).remove, scope, name)
    return {"name": name, "removed": "true"}


async def _last_fired(bus: Bus, tenant: str, names: list[str]) -> dict[str, JobStatus]:
    """Each rule's newest job in the event log (none when the log cannot be read)."""
    try:
        jobs = job_statuses(await bus.queued_jobs(), await bus.history(TRAINING_LOG))
    except BusError as exc:
        log.warning("pipeline rules listed without their last firing: %s", exc)
        return {}
    # Whole ids only: `a.b`'s jobs (`a.b.<sha>`) are never rule `a`'s.
    patterns = [(n, re.compile(rf"{re.escape(n)}\.(?:[0-9a-f]{{40}}|drift\.v\d+)")) for n in names]
    newest: dict[str, JobStatus] = {}
    for job in jobs.values():
        if job.tenant != tenant:
            continue
        for name, pattern in patterns:
            if pattern.fullmatch(job.job_id):
                seen = newest.get(name)
                if seen is None or (job.updated and seen.updated and job.updated >= seen.updated):
                    newest[name] = job
                break
    return newest
