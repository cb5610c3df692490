"""Hyper-parameter sweeps: one `training.sweep` fans out trials across the trainer fleet, then the
best trial by the sweep's metric is promoted through its gate.

Stateless like everything else: the sweep message stays unacked (heartbeating) while its trials
run; if this replica dies, another gets the sweep again, re-publishes the trials (their ids are
derived from the sweep's, so JetStream drops the duplicates) and reads their outcomes from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from datetime import datetime, timedelta

from pydantic import ValidationError

from fermion.events import (
    Bus,
    BusError,
    Delivery,
    TrainingCompleted,
    TrainingFailed,
    TrainingRequest,
    TrainingRequested,
    TrainingSweep,
    derive_id,
    parse_event,
    streams,
)
from fermion.events.training import LOWER_IS_BETTER
from fermion.model_store import Registry, RegistryError

from .promote import promote_and_announce
from .rules import Retry, Rule

log = logging.getLogger("fermion.sweeps")
Outcome = TrainingCompleted | TrainingFailed
RETRY_DELAY_S = 5.0


class SweepRule(Rule[TrainingSweep]):
    """Runs sweeps from the shared `sweeps` consumer, in the rule runner (rules.py)."""

    durable = streams.SWEEP_DURABLE
    stream = streams.JOBS_STREAM
    schema = TrainingSweep
    dlq_tag = "jobs"
    malformed = "malformed training.sweep"

    def __init__(self, bus: Bus, registry: Registry, *, heartbeat_s: float) -> None:
        self.bus = bus
        self.registry = registry
        self.heartbeat_s = heartbeat_s

    async def requests(self, sweep: TrainingSweep) -> AsyncGenerator[TrainingRequested, None]:
        """The trials (again, on a redelivery: their ids are the sweep's, so JetStream drops the duplicates)."""
        for trial in _trials(sweep):
            yield trial

    async def settle(self, sweep: TrainingSweep, delivery: Delivery) -> None:
        """Await every trial, heartbeating the sweep message, then promote the best."""
        trials = _trials(sweep)
        log.info("sweep %s: %d trials of %s published", sweep.id, len(trials), sweep.data.model_name)
        try:
            heartbeat = asyncio.create_task(self._heartbeat(delivery))
            try:
                outcomes = await self._outcomes({t.id for t in trials}, sweep.time - timedelta(seconds=1))
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
            await self._promote_best(sweep, outcomes)
        except RegistryError as exc:  # the store failed under the promotion: run the sweep again later
            raise Retry(f"sweep {sweep.id}: {exc}", RETRY_DELAY_S) from exc

    async def _outcomes(self, ids: set[str], since: datetime) -> dict[str, Outcome]:
        done: dict[str, Outcome] = {}
        events = self.bus.watch("fermion.training.>", since=since)
        try:
            async for raw in events:
                with contextlib.suppress(ValidationError):
                    event = parse_event(raw)
                    if isinstance(event, TrainingCompleted | TrainingFailed) and event.data.job_id in ids:
                        done[event.data.job_id] = event
                        if len(done) == len(ids):
                            return done
        finally:
            await events.aclose()
        return done

    async def _promote_best(
        self, sweep: TrainingSweep, outcomes: dict[str, TrainingCompleted | TrainingFailed]
    ) -> None:
        metric = sweep.data.metric
        sign = -1.0 if metric in LOWER_IS_BETTER else 1.0  # an error metric's best is its smallest
        scored = [
            (sign * e.data.metrics.get(metric, sign * float("-inf")), e.data.version)
            for e in outcomes.values()
            if isinstance(e, TrainingCompleted)
        ]
        if not scored:
            log.error("sweep %s: every trial failed; nothing to promote", sweep.id)
            return
        signed, version = max(scored)
        score = sign * signed
        if sweep.data.gate is None:
            log.info(
                "sweep %s: best is version %d (%s %.4f); no gate, nothing promoted", sweep.id, version, metric, score
            )
            return
        manifest = await asyncio.to_thread(self.registry.manifest, sweep.tenant, sweep.data.model_name, version)
        decision = await promote_and_announce(
            self.bus, self.registry, manifest, sweep.data.gate, event_id=sweep.id, tenant=sweep.tenant
        )
        log.info(
            "sweep %s: best is version %d (%s %.4f); gate %s: %s",
            sweep.id,
            version,
            metric,
            score,
            "passed" if decision.promoted else "held",
            decision.reason,
        )

    async def _heartbeat(self, delivery: Delivery) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            with contextlib.suppress(BusError):  # a missed heartbeat only risks a redelivery, which is idempotent
                await delivery.in_progress()


def _trials(sweep: TrainingSweep) -> list[TrainingRequested]:
    """One training request per trial recipe, its id derived from the sweep's."""
    return [
        TrainingRequested(
            id=derive_id(sweep.id, i),
            tenant=sweep.tenant,
            data=TrainingRequest(
                model_name=sweep.data.model_name, dataset=sweep.data.dataset, recipe=recipe, sweep=sweep.id
            ),
        )
        for i, recipe in enumerate(sweep.data.trials)
    ]
