"""The event-rule runner: upload pipelines, drift retrains and sweeps turn events into training requests.

Each rule kind runs beside the trainer worker on its own shared durable consumer, so one replica
handles each event. A kind owns only what is its own (`Rule`: the consumer, the event it reads,
how that event becomes training requests, what follows once they are out); the runner owns the
rest: the pull loop, the parse and the message's fate —

- the requests are out (and the rule settled) → ack;
- the event is malformed, or the rule raises `Unprocessable` → dead-letter with the reason, then term;
- the rule raises `Retry` → nak with its delay; a bus failure → nak (service/consumer.py).

A request's id is derived from the event, so a redelivered event requests nothing new: JetStream
drops the duplicate ids.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Generic, TypeVar

from pydantic import ValidationError

from fermion.events import Bus, Delivery, Event, TrainingRequested, parse_event
from fermion.service.consumer import consume
from fermion.service.reaper import dead_letter

log = logging.getLogger("fermion.trainer")

E = TypeVar("E", bound=Event)


class Unprocessable(Exception):
    """The event can never become what its rule asks: it is dead-lettered with this reason."""


class Retry(Exception):
    """The world is briefly wrong under a rule: the event is delivered again after `delay_s`."""

    def __init__(self, reason: str, delay_s: float) -> None:
        super().__init__(reason)
        self.delay_s = delay_s


class Rule(abc.ABC, Generic[E]):
    """What one rule kind owns; the runner does the rest."""

    durable: str
    """The shared durable consumer (events/streams.py names it and its subject)."""
    stream: str
    schema: type[E]
    """The event the consumer's subject carries."""
    dlq_tag: str
    """A dead letter's id is `dlq.<tag>.<stream seq>`: one per message, however often it is refused."""
    malformed: str = "ValidationError"
    """How the reason for an event that does not parse begins."""

    @abc.abstractmethod
    def requests(self, event: E) -> AsyncGenerator[TrainingRequested, None]:
        """The training requests `event` triggers, each published as it is yielded.

        Raising `Unprocessable` after some were yielded dead-letters the event with those published.
        """

    async def settle(self, event: E, delivery: Delivery) -> None:
        """What follows once the requests are out, before the ack (a sweep awaits its trials here)."""


class RuleRunner(Generic[E]):
    """Runs one rule kind on its shared durable consumer until stopped."""

    def __init__(self, bus: Bus, rule: Rule[E]) -> None:
        self.bus = bus
        self.rule = rule

    async def run(self, stop: asyncio.Event) -> None:
        """Consume the rule's events until `stop` is set."""
        await consume(self.bus, self.rule.durable, self.rule.stream, self.handle, stop)

    async def handle(self, delivery: Delivery) -> None:
        """Publish the requests one event triggers, then decide the message's fate."""
        rule = self.rule
        try:
            event = parse_event(delivery.data, rule.schema)
        except ValidationError as exc:
            await self._refuse(delivery, f"{rule.malformed}: {exc}")
            return
        assert isinstance(event, rule.schema)
        try:
            async with contextlib.aclosing(rule.requests(event)) as requests:
                async for request in requests:
                    await self.bus.publish(request)
            await rule.settle(event, delivery)
        except Unprocessable as exc:
            await self._refuse(delivery, str(exc))
            return
        except Retry as exc:
            log.warning("%s: %s; retrying in %.0fs", rule.durable, exc, exc.delay_s)
            await delivery.nak(exc.delay_s)
            return
        await delivery.ack()

    async def _refuse(self, delivery: Delivery, reason: str) -> None:
        await dead_letter(self.bus, delivery, reason, tag=self.rule.dlq_tag, deliveries=delivery.num_delivered)
        await delivery.term()
