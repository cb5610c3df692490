"""What the monitor judged of a model's served inputs: its recent drift windows and its last alarm.

Read from the event log: the monitor publishes every judged window on `fermion.models.drift_judged`
and each alarm (a feature or the predictions moved) on `fermion.models.drift_detected`, which the
drift rules consume (functions/monitor/service.py, functions/trainer/retrain.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, ValidationError

from fermion.events import Bus, DriftDetected, DriftJudged, parse_event, subjects
from fermion.service.auth import Principal
from fermion.service.auth.http import needs, tenant_of
from fermion.service.responses import error_responses

from .deps import BusDep, RegistryDep
from .errors import AUTHENTICATED, NotFound
from .params import ModelName, Tenant

router = APIRouter(prefix="/v1/models", tags=["monitoring"], responses=error_responses(*AUTHENTICATED))
E = TypeVar("E", DriftJudged, DriftDetected)


class DriftWindow(BaseModel):
    """One window of a version's sampled inputs, judged against the reference profile of its training data."""

    version: int
    window: int = Field(description="the window's number for this version, since its monitor started")
    at: datetime = Field(description="when it was judged")
    rows: int = Field(description="sampled rows in the window")
    alarm: bool = Field(description="the decision: a feature or the predictions moved")
    features: list[str] = Field(
        description="the features that moved: PSI over the threshold and the KS test significant after "
        "Holm's correction over every feature"
    )
    psi: dict[str, float] = Field(description="population stability index per feature")
    ks_pvalue: dict[str, float] = Field(description="Kolmogorov-Smirnov p-value per feature")
    prediction_psi: float | None = Field(description="PSI of the predicted classes' frequencies")
    prediction_drift: bool

    @classmethod
    def of(cls, event: DriftJudged | DriftDetected) -> DriftWindow:
        """The view of a judged window's event."""
        d = event.data
        return cls(
            version=d.version,
            window=d.window,
            at=event.time,
            rows=d.rows,
            alarm=bool(d.features) or d.prediction_drift,
            features=d.features,
            psi=d.psi,
            ks_pvalue=d.ks_pvalue,
            prediction_psi=d.prediction_psi,
            prediction_drift=d.prediction_drift,
        )


class DriftState(BaseModel):
    """A model's recent drift windows (oldest first) and its last alarm."""

    name: str
    windows: list[DriftWindow]
    last_alarm: DriftWindow | None = Field(description="the newest `models.drift_detected`; null: never")


@router.get("/{name}/drift", responses=error_responses(NotFound))
async def model_drift(
    request: Request,
    name: ModelName,
    bus: BusDep,
    registry: RegistryDep,
    version: Annotated[int | None, Query(ge=1, description="only this version's windows and alarms")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="the newest this many windows")] = 20,
    tenant: Tenant = None,
    caller: Principal = needs("read"),
) -> DriftState:
    """Recent drift windows per feature (PSI, KS p-value, the decision); the last alarm, with what moved."""
    scope = tenant_of(request, caller, tenant)
    if not await asyncio.to_thread(registry.versions, scope, name):
        raise NotFound(f"no model {name!r} for tenant {scope!r}")
    windows = await _logged(bus, subjects.MODELS_DRIFT_JUDGED, DriftJudged, scope, name, version)
    alarms = await _logged(bus, subjects.MODELS_DRIFT_DETECTED, DriftDetected, scope, name, version)
    return DriftState(
        name=name,
        windows=[DriftWindow.of(w) for w in windows[-limit:]],
        last_alarm=DriftWindow.of(alarms[-1]) if alarms else None,
    )


async def _logged(bus: Bus, subject: str, kind: type[E], tenant: str, name: str, version: int | None) -> list[E]:
    """The model's events of `kind` on the log, oldest first; what is not one (anyone's junk) is skipped."""
    found: list[E] = []
    for m in await bus.history(subject):
        with contextlib.suppress(ValidationError):
            event = parse_event(m.data, kind)
            if (
                isinstance(event, kind)
                and event.tenant == tenant
                and event.data.model_name == name
                and version in (None, event.data.version)
            ):
                found.append(event)
    return found
