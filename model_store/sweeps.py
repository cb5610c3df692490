"""A sweep's study that outlives the trainer holding it: one record per sweep in the object store.

    sweeps/{tenant}/{model}/{sweep_id}.json

The record is the study: every trial's recipe (and, for a search, its sampled parameters), the
epochs it reported, and its end (complete with its metric, pruned, failed). The trainer that holds
the sweep message writes it (`functions/trainer/sweep.py`) before it publishes each trial, so a
replica that takes the sweep over rebuilds the study from it and asks for no trial twice. At the
end it names the winner, the version the winner became and whether its gate promoted it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .backends import ObjectStore
from .errors import NotFound, ObjectNotFound
from .names import check_name

TrialState = Literal["running", "complete", "pruned", "failed"]


class SweepNotFound(NotFound):
    """No sweep record with that id (in that tenant)."""


class TrialRecord(BaseModel):
    """One trial: a run, never a version."""

    index: int
    job_id: str
    recipe: dict[str, Any]
    params: dict[str, Any] = {}
    state: TrialState = "running"
    value: float | None = None
    intermediate: dict[int, float] = {}
    """The sweep's metric after each epoch, as the trial reported it."""
    reason: str | None = None


class Winner(BaseModel):
    """The best trial, the version it became and what its gate made of it."""

    index: int
    job_id: str
    trial_job_id: str
    value: float
    params: dict[str, Any] = {}
    version: int | None = None
    metrics: dict[str, float] = {}
    promoted: bool = False
    reason: str = ""


class SweepRecord(BaseModel):
    """A sweep, from its first trial to its winner."""

    model_config = ConfigDict(extra="ignore")

    sweep_id: str
    tenant: str
    model_name: str
    search: str
    metric: str
    n_trials: int
    status: Literal["running", "completed", "failed"] = "running"
    started: datetime = Field(default_factory=lambda: datetime.now(UTC))
    finished: datetime | None = None
    trials: list[TrialRecord] = []
    winner: Winner | None = None
    error: str | None = None

    def trial(self, job_id: str) -> TrialRecord | None:
        """The trial run as job `job_id`, if any."""
        return next((t for t in self.trials if t.job_id == job_id), None)


class Sweeps:
    """Sweep records on an object store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @staticmethod
    def key(tenant: str, model: str, sweep_id: str) -> str:
        if "/" in sweep_id or sweep_id.startswith(".") or not sweep_id.isprintable() or len(sweep_id) > 200:
            raise SweepNotFound(f"invalid sweep id {sweep_id!r}")
        return f"sweeps/{check_name('tenant', tenant)}/{check_name('model', model)}/{sweep_id}.json"

    def put(self, record: SweepRecord) -> None:
        """Write (or replace) a sweep's record: only the trainer holding the sweep message writes it."""
        self.store.put(self.key(record.tenant, record.model_name, record.sweep_id), record.model_dump_json().encode())

    def find(self, tenant: str, model: str, sweep_id: str) -> SweepRecord | None:
        """The sweep's record, or None before its first trial."""
        try:
            raw, _ = self.store.get(self.key(tenant, model, sweep_id))
        except ObjectNotFound:
            return None
        return SweepRecord.model_validate(json.loads(raw))

    def get(self, tenant: str, sweep_id: str, model: str | None = None) -> SweepRecord:
        """One sweep by id (faster with its model's name); SweepNotFound if there is none in `tenant`."""
        models = [model] if model else self.store.children(f"sweeps/{check_name('tenant', tenant)}/")
        for name in models:
            if (found := self.find(tenant, name.rstrip("/"), sweep_id)) is not None:
                return found
        raise SweepNotFound(f"no sweep {sweep_id!r} in tenant {tenant!r}")
