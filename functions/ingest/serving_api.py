"""How each version of a model serves, over time: request rate, p50/p99 latency, error ratio, online accuracy.

Read from the series the monitor keeps in the store (`model_store/serving.py`): windows of the
inference functions' own telemetry per version, and the labels that arrived in each. With `step`,
windows are merged into buckets of that many seconds: counts add up; p50 and p99 are the
request-weighted mean of the windows' own (an approximation: quantiles do not add).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from fermion.model_store import ServingLog, ServingWindow
from fermion.service.auth import Principal
from fermion.service.auth.http import needs, tenant_of
from fermion.service.responses import error_responses

from .deps import RegistryDep
from .errors import AUTHENTICATED, NotFound
from .params import ModelName, Tenant

router = APIRouter(prefix="/v1/models", tags=["monitoring"], responses=error_responses(*AUTHENTICATED))


class ServingPoint(BaseModel):
    """One version's serving in one window (or bucket)."""

    at: datetime = Field(description="the window's start")
    seconds: float = Field(description="the window's length")
    requests: int
    rate_per_s: float = Field(description="requests per second over the window")
    errors: int
    error_ratio: float | None = Field(description="errors over requests; null: no requests")
    p50_ms: float | None = Field(description="median latency; null: no requests")
    p99_ms: float | None
    labelled: int = Field(description="predictions whose label arrived in the window")
    accuracy: float | None = Field(description="online accuracy of those; null: no labels")


class VersionServing(BaseModel):
    """One version's points, oldest first, and its totals over the whole window."""

    version: int
    points: list[ServingPoint]
    requests: int
    errors: int
    error_ratio: float | None
    labelled: int
    accuracy: float | None


class Serving(BaseModel):
    """GET /v1/models/{name}/serving."""

    name: str
    since: datetime
    until: datetime
    step_s: float | None = Field(description="the bucket length asked for (null: each window as measured)")
    versions: list[VersionServing]


@router.get("/{name}/serving", responses=error_responses(NotFound))
async def model_serving(
    request: Request,
    name: ModelName,
    registry: RegistryDep,
    window: Annotated[int, Query(ge=1, le=7 * 86400, description="seconds back from now")] = 3600,
    step: Annotated[int | None, Query(ge=1, le=86400, description="merge windows into buckets this long")] = None,
    version: Annotated[int | None, Query(ge=1, description="only this version")] = None,
    tenant: Tenant = None,
    caller: Principal = needs("read"),
) -> Serving:
    """Request rate, p50/p99 latency, error ratio and online accuracy per version, window by window."""
    scope = tenant_of(request, caller, tenant)
    if not await asyncio.to_thread(registry.versions, scope, name):
        raise NotFound(f"no model {name!r} for tenant {scope!r}")
    until = datetime.now(UTC)
    since = until - timedelta(seconds=window)
    stored = await asyncio.to_thread(ServingLog(registry.store).windows, scope, name)
    by_version: dict[int, list[ServingWindow]] = {}
    for w in stored:
        if w.at + timedelta(seconds=w.seconds) > since and version in (None, w.version):
            by_version.setdefault(w.version, []).append(w)
    versions = [_version(v, sorted(ws, key=lambda w: w.at), step) for v, ws in sorted(by_version.items())]
    return Serving(name=name, since=since, until=until, step_s=step, versions=versions)


def _version(version: int, windows: list[ServingWindow], step: int | None) -> VersionServing:
    groups: dict[datetime, list[ServingWindow]] = {}
    for w in windows:
        at = w.at if step is None else datetime.fromtimestamp(w.at.timestamp() // step * step, UTC)
        groups.setdefault(at, []).append(w)
    points = [_point(at, ws, step) for at, ws in groups.items()]
    requests, errors = sum(w.requests for w in windows), sum(w.errors for w in windows)
    labelled, correct = sum(w.labelled for w in windows), sum(w.correct for w in windows)
    return VersionServing(
        version=version,
        points=points,
        requests=requests,
        errors=errors,
        error_ratio=round(errors / requests, 6) if requests else None,
        labelled=labelled,
        accuracy=round(correct / labelled, 6) if labelled else None,
    )


def _point(at: datetime, windows: list[ServingWindow], step: int | None) -> ServingPoint:
    requests, errors = sum(w.requests for w in windows), sum(w.errors for w in windows)
    labelled, correct = sum(w.labelled for w in windows), sum(w.correct for w in windows)
    seconds = float(step) if step is not None else max(w.seconds for w in windows)
    return ServingPoint(
        at=at,
        seconds=seconds,
        requests=requests,
        rate_per_s=round(requests / seconds, 6),
        errors=errors,
        error_ratio=round(errors / requests, 6) if requests else None,
        p50_ms=_weighted(windows, "p50_ms"),
        p99_ms=_weighted(windows, "p99_ms"),
        labelled=labelled,
        accuracy=round(correct / labelled, 6) if labelled else None,
    )


def _weighted(windows: list[ServingWindow], field: str) -> float | None:
    """The request-weighted mean of a latency quantile over windows (null: none had requests)."""
    pairs = [(getattr(w, field), w.requests) for w in windows if getattr(w, field) is not None and w.requests]
    total = sum(n for _, n in pairs)
    return round(sum(q * n for q, n in pairs) / total, 3) if total else None
