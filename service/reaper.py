"""Jobs that ran out of deliveries without a worker seeing their last one: dead-lettered, reported, removed.

One `Reaper` per work-queue consumer whose worker can die of a job (SIGKILL, out of memory): the
trainers', the batch scorers' and the federation coordinators', all run in the trainer process
(`functions/trainer/reaper.py` says why). Each is told its consumer, its job's event and how to tell
the job's submitter that it failed (`Jobs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from fermion.events import Bus, BusError, Delivery, Event, StoredMessage, parse_event, streams, subjects

log = logging.getLogger("fermion.reaper")

ERROR = "MaxDeliveriesExceeded"
"""The `error` of the failure event a reaped job is reported with."""


@dataclass(frozen=True)
class Jobs:
    """A kind of job a reaper watches: its consumer, its request event, and its failure outcome."""

    durable: str
    request: type[Event]
    """The job's event class (its subject is the one the consumer's stranded messages are looked for on)."""
    tag: str
    """The dead letter's id tag, as the consumer's own dead letters use (`dlq.<tag>.<seq>`)."""
    failed: Callable[[Any, int, str], Event]
    """(the job's request event, its stream sequence, the reason) → the failure event, as the unit's own."""


class Delivering(Protocol):
    """The consumer policy the reaper reads: how long a delivery may go unanswered, and how many there are."""

    @property
    def ack_wait_s(self) -> float: ...

    @property
    def max_deliver(self) -> int: ...


class Reaper:
    """Takes exhausted job messages out of the work queue, dead-lettering each with the reason first."""

    def __init__(self, bus: Bus, settings: Delivering, jobs: Jobs, on_reaped: Callable[[], None] | None = None) -> None:
        self.bus, self.settings, self.jobs, self.on_reaped = bus, settings, jobs, on_reaped

    async def run(self) -> None:
        """Dead-letter messages that ran out of deliveries without a worker seeing their last one.

        A job whose worker dies (SIGKILL, OOM) on every delivery never reaches the worker's own
        failure path. JetStream finds it out of deliveries when a worker next asks for work, leaves
        it in the stream and says so in an advisory. One replica (a queue group) takes it out,
        publishes the job's failure and dead-letters it with the reason.
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
        except BusError as exc:  # no advisories (a grant missing, the bus closed): the scan still reaps
            log.error("%s: not listening for max-deliveries advisories (%s); scanning every ack_wait", advisory, exc)
            await stranded
        finally:
            stranded.cancel()

    async def _reap_stranded(self) -> None:
        """The advisory is core NATS: sent while no reaper listens (the last worker died of the job), it
        is lost. So every ack_wait, a queue that holds given-up jobs and nothing in flight is reaped too."""
        while True:
            try:
                for seq in await self.bus.stranded_jobs(self.jobs.durable, self.jobs.request.subject):
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
        await dead_letter(self.bus, taken, reason, tag=self.jobs.tag, deliveries=deliveries)
        if self.on_reaped is not None:
            self.on_reaped()
        with contextlib.suppress(ValidationError):  # a malformed job has no one to tell: its dead letter says it
            request = parse_event(taken.data, self.jobs.request)
            await self.bus.publish(self.jobs.failed(request, taken.seq, reason))
        await self.bus.drop_job(taken.seq)


async def dead_letter(bus: Bus, message: Delivery | StoredMessage, reason: str, *, tag: str, deliveries: int) -> None:
    """Keep a message's original bytes on `fermion.dlq.<subject>` with the reason and delivery count.

    The trainer process's one way to dead-letter (its worker, scorer, rule runners and reapers): the id
    `dlq.<tag>.<seq>` keeps one dead letter per message, however often a consumer gets here. A reaper's
    `Jobs.tag` is its consumer's own tag, so a job its worker dead-lettered is not dead-lettered twice.
    """
    msg_id = f"dlq.{tag}.{message.seq}"
    await bus.dead_letter(message.subject, message.data, reason, deliveries=deliveries, msg_id=msg_id)
    log.error("dead-lettered a %s message (%d): %s", message.subject, message.seq, reason)
