"""Dataset-triggered pipelines: each `datasets.uploaded` event that matches a rule requests a training.

Runs beside the trainer worker on the shared durable consumer `pipelines`, so every upload is
handled by one replica. The training request's id is derived from the rule and the dataset's
sha256: the same upload, seen twice, requests one training.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import ValidationError

from fermion.events import (
    Bus,
    DatasetUploaded,
    Delivery,
    Gate,
    Recipe,
    TrainingRequest,
    TrainingRequested,
    parse_event,
    streams,
)
from fermion.model_store import Pipelines, RegistryError
from fermion.service.consumer import consume

log = logging.getLogger("fermion.pipelines")


class PipelineRunner:
    """Turns uploads into training requests by the rules in the object store."""

    def __init__(self, bus: Bus, pipelines: Pipelines) -> None:
        self.bus = bus
        self.pipelines = pipelines

    async def run(self, stop: asyncio.Event) -> None:
        """Consume uploads until `stop` is set."""
        await consume(self.bus, streams.PIPELINE_DURABLE, streams.EVENTS_STREAM, self.handle, stop)

    async def handle(self, delivery: Delivery) -> None:
        """Request the trainings an upload triggers, then ack it."""
        try:
            upload = parse_event(delivery.data, DatasetUploaded)
            assert isinstance(upload, DatasetUploaded)
            rules = await asyncio.to_thread(self.pipelines.matching, upload.tenant, upload.data.name)
        except (ValidationError, RegistryError) as exc:
            await self._dead_letter(delivery, f"{type(exc).__name__}: {exc}")
            return
        for rule in rules:
            try:
                request = TrainingRequest(
                    model_name=rule.model_name,
                    dataset=upload.data,
                    recipe=Recipe(**rule.recipe),
                    gate=Gate(**rule.gate) if rule.gate else None,
                    pipeline=rule.name,
                )
            except ValidationError as exc:
                await self._dead_letter(delivery, f"pipeline rule {rule.name!r} is invalid: {exc}")
                continue
            event = TrainingRequested(id=f"{rule.name}.{upload.data.sha256[:40]}", tenant=upload.tenant, data=request)
            await self.bus.publish(event)
            log.info("dataset %s matched pipeline %s: job %s", upload.data.name, rule.name, event.id)
        await delivery.ack()

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        await self.bus.dead_letter(
            delivery.subject,
            delivery.data,
            reason,
            deliveries=delivery.num_delivered,
            msg_id=f"dlq.events.{delivery.seq}",
        )
        await delivery.term()
        log.error("dead-lettered an upload event: %s", reason)
