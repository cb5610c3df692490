"""Jobs that ran out of deliveries without a worker seeing their last one: dead-lettered, reported, removed.

One `Reaper` per work-queue consumer whose worker can die of a job (SIGKILL, out of memory): the
trainers' (`TRAININGS`) and the batch scorers' (`SCORINGS`). Each knows its consumer, its job subject
and how to tell the job's submitter that it failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError

from fermion.events import (
    Bus,
    BusError,
    Event,
    FailureReport,
    ScoringFailed,
    ScoringRequested,
    TrainingRequested,
    derive_id,
    parse_event,
    streams,
    subjects,
)

from . import outcomes, rules
from .settings import TrainerSettings

log = logging.getLogger("fermion.trainer")

ERROR = "MaxDeliveriesExceeded"


@dataclass(frozen=True)
class Jobs:
    """A kind of job a reaper watches: its consumer, its subject, and its failure outcome."""

    durable: str
    subject: str
    tag: str
    """The dead letter's id tag, as the consumer's own dead letters use (`dlq.<tag>.<seq>`)."""
    failed: Callable[[bytes, int, str], Event]
    """(the job message's bytes, its stream sequence, the reason) → the failure event; ValidationError if malformed."""


def _training_failed(data: bytes, seq: int, reason: str) -> Event:
    event = parse_event(data, TrainingRequested)
    assert isinstance(event, TrainingRequested)
    return outcomes.failed(event, seq, reason, ERROR, retryable=True)


def _scoring_failed(data: bytes, seq: int, reason: str) -> Event:
    event = parse_event(data, ScoringRequested)
    assert isinstance(event, ScoringRequested)
    report = FailureReport(
        job_id=event.id, model_name=event.data.model_name, reason=reason, error=ERROR, retryable=True
    )
    return ScoringFailed(id=derive_id(event.id, "failed", seq), tenant=event.tenant, data=report)


TRAININGS = Jobs(streams.TRAINER_DURABLE, subjects.TRAINING_REQUESTED, "jobs", _training_failed)
SCORINGS = Jobs(streams.SCORER_DURABLE, subjects.SCORING_REQUESTED, "scores", _scoring_failed)


class Reaper:
    """Takes exhausted job messages out of the work queue, dead-lettering each with the reason first."""

    def __init__(
        self, bus: Bus, settings: TrainerSettings, jobs: Jobs, on_reaped: Callable[[], None] | None = None
    ) -> None:
        self.bus, self.settings, self.jobs, self.on_reaped = bus, settings, jobs, on_reaped

    async def run(self) -> None:
        """Dead-letter messages that ran out of deliveries without a worker seeing their last one.

        A job whose worker dies (SIGKILL, OOM) on every delivery never reaches the worker's own
        failure path; JetStream then leaves it in the stream and says so in an advisory. One replica
        (a queue group) takes it out, publishes the job's failure and dead-letters it with the reason.
        """
        advisory = subjects.max_deliveries_advisory(streams.JOBS_STREAM, self.jobs.durable)
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
        """The advisory is core NATS: sent while no worker listens (the last one died of the job), it is
        lost. So every ack_wait, a queue that holds given-up jobs and nothing in flight is reaped too."""
        while True:
            try:
                for seq in await self.bus.stranded_jobs(self.jobs.durable, self.jobs.subject):
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
        await rules.dead_letter(self.bus, taken, reason, tag=self.jobs.tag, deliveries=deliveries)
        if self.on_reaped is not None:
            self.on_reaped()
        with contextlib.suppress(ValidationError):  # a malformed job has no one to tell: its dead letter says it
            await self.bus.publish(self.jobs.failed(taken.data, taken.seq, reason))
        await self.bus.drop_job(taken.seq)
