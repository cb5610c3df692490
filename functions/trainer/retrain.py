"""Drift-triggered retraining: `models.drift_detected` + a rule `on: drift` → `training.requested`.

Runs in the rule runner (rules.py) on the shared durable consumer `retrains`. The rule names the
dataset to retrain on, or its prefix picks the newest upload in the event log; its gate (with
`canary` steps) sends the result through the gate and a canary. One drifted version triggers one
retraining per rule: the request's id is derived from the rule and the drifted version, and a
model that already has a newer version from this rule is left alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

from pydantic import ValidationError

from fermion.events import (
    Bus,
    DatasetRef,
    DatasetUploaded,
    DriftDetected,
    Gate,
    Recipe,
    TrainingRequest,
    TrainingRequested,
    parse_event,
    streams,
    subjects,
)
from fermion.model_store import DatasetStore, PipelineRule, Pipelines, Registry, RegistryError

from .rules import Rule, Unprocessable

log = logging.getLogger("fermion.pipelines")


class DriftRule(Rule[DriftDetected]):
    """Turns drift alarms into training requests by the rules in the object store."""

    durable = streams.RETRAIN_DURABLE
    stream = streams.EVENTS_STREAM
    schema = DriftDetected
    dlq_tag = "retrain"

    def __init__(self, bus: Bus, registry: Registry) -> None:
        self.bus = bus
        self.registry = registry
        self.pipelines = Pipelines(registry.store)

    async def requests(self, drift: DriftDetected) -> AsyncGenerator[TrainingRequested, None]:
        """One retraining per drift rule of the model; a rule that cannot retrain is logged and skipped."""
        try:
            rules = await asyncio.to_thread(self._rules, drift)
        except RegistryError as exc:
            raise Unprocessable(f"{type(exc).__name__}: {exc}") from exc
        for rule in rules:
            try:
                request = TrainingRequest(
                    model_name=rule.model_name,
                    dataset=await self._dataset(drift.tenant, rule),
                    recipe=Recipe(**rule.recipe),
                    gate=Gate(**rule.gate) if rule.gate else None,
                    pipeline=rule.name,
                )
            except (ValidationError, RegistryError, LookupError) as exc:
                log.error("pipeline rule %s cannot retrain %s: %s", rule.name, rule.model_name, exc)
                continue
            job = f"{rule.name}.drift.v{drift.data.version}"
            yield TrainingRequested(id=job, tenant=drift.tenant, data=request)
            log.info(
                "drift of %s version %d (%s) matched rule %s: job %s",
                rule.model_name,
                drift.data.version,
                ", ".join(drift.data.features),
                rule.name,
                job,
            )

    def _rules(self, drift: DriftDetected) -> list[PipelineRule]:
        """The drift rules for the model, less those that already retrained past the drifted version."""
        rules = [r for r in self.pipelines.list(drift.tenant) if r.retrains(drift.data.model_name)]
        newer = [v for v in self.registry.versions(drift.tenant, drift.data.model_name) if v > drift.data.version]
        done = {
            (self.registry.manifest(drift.tenant, drift.data.model_name, v).lineage.training_event_id or "")
            for v in newer
        }
        return [r for r in rules if not any(job.startswith(f"{r.name}.drift.") for job in done)]

    async def _dataset(self, tenant: str, rule: PipelineRule) -> DatasetRef:
        """The named dataset's, or the prefix's, newest upload in the event log (else the store's only one)."""
        for stored in reversed(await self.bus.history(subjects.DATASETS_UPLOADED)):
            try:
                upload = parse_event(stored.data, DatasetUploaded)
            except ValidationError:
                continue
            assert isinstance(upload, DatasetUploaded)
            name = upload.data.name
            if upload.tenant == tenant and (name == rule.dataset if rule.dataset else rule.matches_prefix(name)):
                return upload.data
        found = await asyncio.to_thread(
            DatasetStore(self.registry.store).find, tenant, rule.dataset or rule.dataset_prefix
        )
        return DatasetRef(
            name=rule.dataset or rule.dataset_prefix,
            sha256=found.sha256,
            uri=found.uri,
            format=found.format,
            size=found.size,
        )
