"""Jobs that ran out of deliveries without a worker seeing their last one: dead-lettered, reported, removed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from pydantic import ValidationError

from fermion.events import Bus, BusError, TrainingRequested, parse_event, streams, subjects

from . import outcomes, rules
from .settings import TrainerSettings

log = logging.getLogger("fermion.trainer")


class Reaper:
    """Takes exhausted job messages out of the work queue, dead-lettering each with the reason first."""

    def __init__(self, bus: Bus, settings: TrainerSettings, metrics: Any) -> None:
        self.bus, self.settings, self.metrics = bus, settings, metrics

    async def run(self) -> None:
        """Dead-letter messages that ran out of deliveries without a worker seeing their last one.

        A job whose worker dies (SIGKILL, OOM) on every delivery never reaches `_fail`; JetStream then
        leaves it in the stream and says so in an advisory. One replica (a queue group) takes it out,
        publishes `training.failed` and dead-letters it with the reason.
        """
        advisory = subjects.max_deliveries_advisory(streams.JOBS_STREAM, streams.TRAINER_DURABLE)
        stranded = asyncio.create_task(self._reap_stranded())
        try:
            async for raw in self.bus.listen(advisory, queue="fermion-reapers"):
                try:
                    info = json.loads(raw)
                    deliveries = int(info.get("deliveries", self.settings.max_deliver))
                    await self._reap_one(int(info["stream_seq"]), deliveries)
                except (ValueError, KeyError, BusError) as exc:
                    log.warning("could not handle a max-deliveries advisory: %s", exc)
        finally:
            stranded.cancel()

    async def _reap_stranded(self) -> None:
        """The advisory is core NATS: sent while no trainer listens (the last one died of the job), it is
        lost. So every ack_wait, a queue that holds given-up jobs and nothing in flight is reaped too."""
        while True:
            try:
                for seq in await self.bus.stranded_jobs(streams.TRAINER_DURABLE, subjects.TRAINING_REQUESTED):
                    await self._reap_one(seq, self.settings.max_deliver)
            except BusError as exc:
                log.warning("could not look for stranded jobs: %s", exc)
            await asyncio.sleep(self.settings.ack_wait_s)

    async def _reap_one(self, seq: int, deliveries: int) -> None:
        """Dead-letter and report one exhausted job message, then remove it (in that order: nothing is lost)."""
        taken = await self.bus.job(seq)
        if taken is None:
            return
        reason = (
            f"ran out of deliveries ({deliveries}): the worker handling it died or hung every time "
            f"(killed, out of memory, or stuck past ack_wait {self.settings.ack_wait_s:.0f}s)"
        )
        await rules.dead_letter(self.bus, taken, reason, tag="jobs", deliveries=deliveries)
        self.metrics.dead_lettered.labels("exhausted").inc()
        with contextlib.suppress(ValidationError):
            event = parse_event(taken.data, TrainingRequested)
            assert isinstance(event, TrainingRequested)
            await self.bus.publish(outcomes.failed(event, taken.seq, reason, "MaxDeliveriesExceeded", retryable=True))
        await self.bus.drop_job(taken.seq)
