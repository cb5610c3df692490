"""Work-queue consumers' backlogs read from JetStream every few seconds, for a process's gauges.

The trainer reads its own consumers' (`trainer.py`); the monitor reads every consumer the trainers
serve (`monitor.py`), so work waiting while no trainer runs is still seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from fermion.events import BusError, ConsumerState

log = logging.getLogger("fermion.backlog")

State = Callable[[str, str], Awaitable[ConsumerState]]
"""(durable, stream) → the consumer's backlog: `Bus.consumer_state`."""


async def poll_backlogs(
    state: State,
    consumers: Iterable[tuple[str, str]],
    stop: asyncio.Event,
    record: Callable[[str, ConsumerState], None],
    read: Callable[[bool], None],
    every_s: float = 5.0,
) -> None:
    """Until `stop`: each (stream, durable)'s backlog to `record(durable, state)`, then `read(True)`;
    a read the bus refuses goes to `read(False)` and is logged when the reads start failing (and
    when they work again), not every `every_s`."""
    consumers, failing = list(consumers), False
    while not stop.is_set():
        try:
            for stream, durable in consumers:
                record(durable, await state(durable, stream))
            read(True)
            if failing:
                log.info("consumer state readable again")
            failing = False
        except BusError as exc:
            if not failing:
                log.warning("consumer state unavailable: %s", exc)
            failing = True
            read(False)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
