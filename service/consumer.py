"""The pull loop every consumer in the trainer process shares: jobs, pipeline uploads, sweeps."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from fermion.events import Bus, BusError, Delivery

from .observability.tracing import tracing

log = logging.getLogger("fermion.trainer")


async def consume(
    bus: Bus,
    durable: str,
    stream: str,
    handle: Callable[[Delivery], Awaitable[None]],
    stop: asyncio.Event,
    *,
    retry_delay_s: float = 5.0,
) -> None:
    """Fetch from a shared durable consumer and hand each delivery to `handle` until `stop` is set.

    `handle` decides each message's fate. Only the bus (its publish, ack or term failed) or a fault
    it did not foresee can stop it deciding; the message is then nak'ed for a later delivery (until
    its consumer's max_deliver), or redelivered after ack_wait if the nak fails too.
    """
    queue = await bus.job_queue(durable, stream)
    log.info("%s: consuming", durable)
    try:
        while not stop.is_set():
            try:
                delivery = await queue.fetch(timeout_s=1.0)
            except BusError as exc:
                log.warning("%s: fetch failed (%s); retrying", durable, exc)
                await asyncio.sleep(1.0)
                continue
            if delivery is None:
                continue
            try:
                # The trace the message's publisher was in goes on here (a no-op when tracing is off).
                with tracing("trainer").span(f"{durable} {delivery.subject}", delivery.headers, kind="consumer"):
                    await handle(delivery)
            except BusError as exc:
                log.warning("%s: message %d: %s; it will be redelivered", durable, delivery.seq, exc)
                with contextlib.suppress(BusError):
                    await delivery.nak(retry_delay_s)
            except Exception:  # a fault `handle` did not foresee: one message must not end the process
                log.exception("%s: message %d: unexpected error; it will be redelivered", durable, delivery.seq)
                with contextlib.suppress(BusError):
                    await delivery.nak(retry_delay_s)
    finally:
        await queue.close()
