"""Run history that outlives the event stream: one record per training job in the object store.

    runs/{tenant}/{model}/{job_id}.json

A record holds the job's parameters (the recipe), its dataset, every epoch's loss and metrics as
they happen, and at the end the final metrics, the registered version and its lineage, or the
reason it failed. The trainer writes it (`functions/trainer/history.py`); ingest's `/v1/runs`
routes, the console and `fermion runs` read it. A job id is the `training.requested` event id.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .backends import ObjectStore
from .errors import NotFound, ObjectNotFound
from .names import check_name

RunStatus = Literal["running", "completed", "failed", "pruned"]
"""`pruned`: a sweep's trial its median pruner stopped."""


class RunNotFound(NotFound):
    """No run record with that job id (in that tenant)."""


class EpochRecord(BaseModel):
    """One epoch: its training loss and evaluation metrics, and how long it took."""

    epoch: int
    loss: float | None = None
    """The mean training loss."""
    val_loss: float | None = None
    """The held-out split's mean cross-entropy; None in records written before it was measured."""
    metrics: dict[str, float] = {}
    seconds: float | None = None


class RunRecord(BaseModel):
    """One training job, from its start to its fate."""

    model_config = ConfigDict(extra="ignore")

    job_id: str
    tenant: str
    model_name: str
    sweep: str | None = None
    """The sweep this run is a trial of (its id), if any."""
    status: RunStatus = "running"
    started: datetime = Field(default_factory=lambda: datetime.now(UTC))
    finished: datetime | None = None
    parameters: dict[str, Any] = {}
    dataset: dict[str, Any] = {}
    epochs: list[EpochRecord] = []
    metrics: dict[str, float] = {}
    version: int | None = None
    lineage: dict[str, Any] = {}
    error: str | None = None
    deliveries: int = 1

    @property
    def duration_s(self) -> float | None:
        return (self.finished - self.started).total_seconds() if self.finished else None


class Runs:
    """Run records on an object store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @staticmethod
    def key(tenant: str, model: str, job_id: str) -> str:
        if "/" in job_id or job_id.startswith(".") or not job_id.isprintable() or len(job_id) > 200:
            raise RunNotFound(f"invalid job id {job_id!r}")
        return f"runs/{check_name('tenant', tenant)}/{check_name('model', model)}/{job_id}.json"

    def put(self, record: RunRecord) -> None:
        """Write (or replace) a run's record: only its job's one trainer at a time writes it."""
        self.store.put(self.key(record.tenant, record.model_name, record.job_id), record.model_dump_json().encode())

    def get(self, tenant: str, job_id: str, model: str | None = None) -> RunRecord:
        """One run by job id (faster with its model's name); RunNotFound if there is none in `tenant`."""
        models = [model] if model else self.store.children(f"runs/{check_name('tenant', tenant)}/")
        for name in models:
            try:
                raw, _ = self.store.get(self.key(tenant, name.rstrip("/"), job_id))
            except ObjectNotFound:
                continue
            return RunRecord.model_validate(json.loads(raw))
        raise RunNotFound(f"no run {job_id!r} in tenant {tenant!r}")

    def job_ids(self, tenant: str, model: str | None = None) -> list[str]:
        """Every run's job id in `tenant` (of one model), from the keys alone: nothing is read."""
        prefix = f"runs/{check_name('tenant', tenant)}/" + (f"{check_name('model', model)}/" if model else "")
        return [k.rsplit("/", 1)[1].removesuffix(".json") for k in self.store.list(prefix) if k.endswith(".json")]

    def list(self, tenant: str, model: str | None = None, limit: int = 500) -> list[RunRecord]:
        """A tenant's runs (of one model), newest first, at most `limit`."""
        prefix = f"runs/{check_name('tenant', tenant)}/" + (f"{check_name('model', model)}/" if model else "")
        keys = [k for k in self.store.list(prefix) if k.endswith(".json")]
        with ThreadPoolExecutor(max_workers=16) as pool:  # S3 reads are latency-bound: hundreds at once
            records = [r for r in pool.map(self._read, keys) if r is not None]
        records.sort(key=lambda r: r.started, reverse=True)
        return records[:limit]

    def _read(self, key: str) -> RunRecord | None:
        try:
            raw, _ = self.store.get(key)
        except ObjectNotFound:  # removed between the listing and the read
            return None
        return RunRecord.model_validate(json.loads(raw))
