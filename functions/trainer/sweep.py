"""Hyper-parameter sweeps: one `training.sweep` becomes trials across the trainer fleet (grid, random
or TPE, from an Optuna study), pruned by the median pruner as they report their epochs; the best
trial is then trained once more as the sweep's one registered version, and promoted through its gate.

Trials are runs, not versions. The study lives in the store (model_store/sweeps.py, search.py):
every trial is recorded before it is published, its epochs and end as they arrive. The sweep
message stays unacked (heartbeating) while its trials run; if this replica dies, another gets the
sweep again, rebuilds the study from the record, reads the trials' events again from the log and
goes on: trial and winner ids derive from the sweep's, so JetStream drops any duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from fermion.events import (
    Bus,
    BusError,
    CancelRequest,
    Delivery,
    Recipe,
    TrainingCancel,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequest,
    TrainingRequested,
    TrainingSweep,
    derive_id,
    parse_event,
)
from fermion.events import streams as event_streams
from fermion.model_store import Registry, RegistryError, StoreError, SweepRecord, Sweeps, Winner

from .promote import promote_and_announce
from .rules import Retry, Rule
from .search import Search

log = logging.getLogger("fermion.sweeps")
RETRY_DELAY_S = 5.0
TrialEvent = TrainingProgress | TrainingCompleted | TrainingFailed
TRAINING_LOG = "fermion.training.>"


class SweepRule(Rule[TrainingSweep]):
    """Runs sweeps from the shared `sweeps` consumer, in the rule runner (rules.py)."""

    durable = event_streams.SWEEP_DURABLE
    stream = event_streams.JOBS_STREAM
    schema = TrainingSweep
    dlq_tag = "jobs"
    malformed = "malformed training.sweep"

    def __init__(self, bus: Bus, registry: Registry, *, heartbeat_s: float) -> None:
        self.bus = bus
        self.registry = registry
        self.sweeps = Sweeps(registry.store)
        self.heartbeat_s = heartbeat_s

    async def requests(self, sweep: TrainingSweep) -> AsyncGenerator[TrainingRequested, None]:
        """None up front: `settle` asks the study for each trial as a place in flight frees up."""
        return
        yield  # an async generator that yields nothing

    async def settle(self, sweep: TrainingSweep, delivery: Delivery) -> None:
        """Run the trials, heartbeating the sweep message, then register and gate the winner."""
        heartbeat = asyncio.create_task(self._heartbeat(delivery))
        try:
            record = await asyncio.to_thread(self._record, sweep)
            if record.status == "running":
                await self._run(sweep, record)
        except (RegistryError, StoreError) as exc:  # the store failed under the sweep: run it again later
            raise Retry(f"sweep {sweep.id}: {exc}", RETRY_DELAY_S) from exc
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    def _record(self, sweep: TrainingSweep) -> SweepRecord:
        d = sweep.data
        found = self.sweeps.find(sweep.tenant, d.model_name, sweep.id)
        return found or SweepRecord(
            sweep_id=sweep.id, tenant=sweep.tenant, model_name=d.model_name, search=d.search, metric=d.metric,
            n_trials=d.size,
        )  # fmt: skip

    async def _run(self, sweep: TrainingSweep, record: SweepRecord) -> None:
        search = Search(sweep.data, record)
        if search.asked:
            log.info("sweep %s: resumed with %d of %d trials asked", sweep.id, search.asked, sweep.data.size)
        async with contextlib.aclosing(self.bus.watch(TRAINING_LOG, since=sweep.time - timedelta(seconds=1))) as log_:
            await self._trials(sweep, search, log_)
            best = search.best()
            if best is None:
                record.status, record.error = "failed", "every trial failed or was pruned; nothing registered"
                record.finished = datetime.now(UTC)
                await asyncio.to_thread(self.sweeps.put, record)
                log.error("sweep %s: %s", sweep.id, record.error)
                return
            winner = derive_id(sweep.id, "winner")
            await self.bus.publish(
                TrainingRequested(
                    id=winner,
                    tenant=sweep.tenant,
                    data=TrainingRequest(
                        model_name=sweep.data.model_name,
                        dataset=sweep.data.dataset,
                        recipe=Recipe.model_validate(best.recipe),
                        sweep=sweep.id,
                    ),
                )
            )
            outcome = await _outcome(log_, winner)
        await self._conclude(sweep, record, best.index, outcome)

    async def _trials(self, sweep: TrainingSweep, search: Search, events: AsyncIterator[bytes]) -> None:
        """Keep `parallel` trials in flight until every one the sweep asks for has ended."""
        d = sweep.data
        while True:
            while len(search.running) < d.parallel and search.asked < d.size:
                trial = search.ask(derive_id(sweep.id, search.asked))
                await asyncio.to_thread(self.sweeps.put, search.record)  # recorded before it exists
                request = TrainingRequest(
                    model_name=d.model_name,
                    dataset=d.dataset,
                    recipe=Recipe.model_validate(trial.recipe),
                    sweep=sweep.id,
                    trial=True,
                )
                await self.bus.publish(TrainingRequested(id=trial.job_id, tenant=sweep.tenant, data=request))
                log.info("sweep %s: trial %d %s", sweep.id, trial.index, trial.params or trial.recipe)
            if not search.running:
                return
            event = await _next_event(events, set(search.running))
            if await asyncio.to_thread(self._take, sweep, search, event):
                await self._prune(sweep, event.data.job_id)

    def _take(self, sweep: TrainingSweep, search: Search, event: TrialEvent) -> bool:
        """Fold one trial event into the study (and the record); True when the trial is to be pruned."""
        if isinstance(event, TrainingProgress):
            if event.data.loss is None:  # the "started" report
                return False
            prune = search.report(event.data.job_id, event.data.epoch, event.data.metrics)
        elif isinstance(event, TrainingCompleted):
            search.finish(event.data.job_id, "complete", event.data.metrics.get(sweep.data.metric, float("-inf")))
            prune = False
        elif isinstance(event, TrainingFailed):
            state = "pruned" if event.data.error == "JobCancelled" else "failed"
            search.finish(event.data.job_id, state, reason=event.data.reason)
            prune = False
        self.sweeps.put(search.record)
        return prune

    async def _prune(self, sweep: TrainingSweep, job_id: str) -> None:
        """Stop a trial at its next epoch: a cancel (one per trial, by its id) the worker obeys."""
        reason = f"pruned by sweep {sweep.id}: below the median of earlier trials' {sweep.data.metric}"
        await self.bus.publish(
            TrainingCancel(
                id=derive_id(job_id, "pruned"), tenant=sweep.tenant, data=CancelRequest(job_id=job_id, reason=reason)
            )
        )
        log.info("sweep %s: trial %s pruned", sweep.id, job_id)

    async def _conclude(
        self, sweep: TrainingSweep, record: SweepRecord, index: int, outcome: TrainingCompleted | TrainingFailed
    ) -> None:
        trial = record.trials[index]
        record.finished = datetime.now(UTC)
        if isinstance(outcome, TrainingFailed) or outcome.data.version is None:
            record.status, record.error = "failed", f"the winner's training failed: {outcome.data}"
            await asyncio.to_thread(self.sweeps.put, record)
            return
        version, metric = outcome.data.version, sweep.data.metric
        winner = Winner(
            index=index, job_id=outcome.data.job_id, trial_job_id=trial.job_id, value=trial.value or 0.0,
            params=trial.params or trial.recipe, version=version, metrics=outcome.data.metrics,
            reason=f"no gate: version {version} registered, nothing promoted",
        )  # fmt: skip
        if sweep.data.gate is not None:
            manifest = await asyncio.to_thread(self.registry.manifest, sweep.tenant, sweep.data.model_name, version)
            decision = await promote_and_announce(
                self.bus, self.registry, manifest, sweep.data.gate, event_id=sweep.id, tenant=sweep.tenant
            )
            winner.promoted, winner.reason = decision.promoted, decision.reason
        record.status, record.winner = "completed", winner
        await asyncio.to_thread(self.sweeps.put, record)
        log.info(
            "sweep %s: trial %d won (%s %.4f) → version %d; %s",
            sweep.id, index, metric, winner.value, version, winner.reason,
        )  # fmt: skip

    async def _heartbeat(self, delivery: Delivery) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            with contextlib.suppress(BusError):  # a missed heartbeat only risks a redelivery, which is idempotent
                await delivery.in_progress()


async def _next_event(events: AsyncIterator[bytes], jobs: set[str]) -> TrialEvent:
    """The next progress or outcome event of one of `jobs` on the training log."""
    async for raw in events:
        with contextlib.suppress(ValidationError):
            event = parse_event(raw)
            if isinstance(event, TrainingProgress | TrainingCompleted | TrainingFailed) and event.data.job_id in jobs:
                return event
    raise BusError("the training log ended while the sweep awaited its trials")


async def _outcome(events: AsyncIterator[bytes], job_id: str) -> TrainingCompleted | TrainingFailed:
    while True:
        event = await _next_event(events, {job_id})
        if isinstance(event, TrainingCompleted | TrainingFailed):
            return event
