"""The trainer worker: a stateless replica on the shared durable consumer of training requests.

Only this module decides a job message's fate:

- done (registered, or already registered by an earlier delivery) → `training.completed`, then ack;
- the request is wrong (bad dataset, unknown architecture, parity failure) → `training.failed`, then
  dead-letter and term: retrying cannot help;
- the world is briefly wrong (store or bus unreachable, an unexpected error) → nak with a delay,
  and on the last allowed delivery `training.failed` + dead-letter instead.

A job heartbeats `in_progress` while it trains, so only a replica that died loses its job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

from pydantic import ValidationError

from fermion.compile import CompileError
from fermion.events import (
    Bus,
    BusError,
    ConsumerPolicy,
    Delivery,
    ProgressReport,
    TrainingProgress,
    TrainingRequested,
    derive_id,
    parse_event,
    streams,
    subjects,
)
from fermion.model_store import (
    IntegrityError,
    InvalidName,
    Manifest,
    NotFound,
    Pipelines,
    Registry,
    Runs,
    open_registry,
)
from fermion.service.consumer import consume
from fermion.service.lifecycle import stop_on_signals
from fermion.service.observability import logs
from fermion.service.observability.tracing import tracing
from fermion.service.observability.trainer import serve_metrics, trainer_metrics, watch_consumer
from fermion.service.reaper import Reaper, dead_letter
from fermion.training.checkpoints import CheckpointPolicy
from fermion.training.distributed import DistributedOptions
from fermion.training.errors import JobCancelled, PermanentJobError
from fermion.training.memory import fix_mmap_threshold

from . import outcomes, rules
from .history import JobRun
from .job import run_job, run_trial
from .pipeline import UploadRule
from .promote import promote_and_announce
from .reaper import FEDERATIONS, TRAININGS
from .retrain import DriftRule
from .scoring import Scorer
from .settings import TrainerSettings, get_settings
from .sweep import SweepRule

log = logging.getLogger("fermion.trainer")

PERMANENT = (PermanentJobError, CompileError, IntegrityError, InvalidName, NotFound)


class Worker:
    """Pulls one job at a time and sees it through to a fate."""

    def __init__(self, bus: Bus, registry: Registry, settings: TrainerSettings) -> None:
        self.bus = bus
        self.registry = registry
        self.settings = settings
        self.metrics = trainer_metrics()  # always counted (cheap); served when metrics are on
        self.runs: dict[str, JobRun] = {}  # the run record of each job in hand

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the job in hand is finished first."""
        exhausted = self.metrics.dead_lettered.labels("exhausted").inc
        reapers = [
            asyncio.create_task(Reaper(self.bus, self.settings, jobs, exhausted).run())
            for jobs in (TRAININGS, FEDERATIONS)  # the coordinators' too (functions/trainer/reaper.py)
        ]
        try:
            await consume(
                self.bus,
                streams.TRAINER_DURABLE,
                streams.JOBS_STREAM,
                self.handle,
                stop,
                retry_delay_s=self.settings.retry_delay_s,
            )
        finally:
            for reaper in reapers:
                reaper.cancel()
            await asyncio.gather(*reapers, return_exceptions=True)

    async def handle(self, delivery: Delivery) -> None:
        """Decide one delivery's fate: every outcome of an attempt, publishing included, ends here."""
        try:
            event = parse_event(delivery.data, TrainingRequested)
        except ValidationError as exc:
            reason = f"malformed training.requested event: {_brief(exc)}"
            await dead_letter(self.bus, delivery, reason, tag="jobs", deliveries=delivery.num_delivered)
            self.metrics.dead_lettered.labels("malformed").inc()
            await delivery.term()
            return
        assert isinstance(event, TrainingRequested)
        self.metrics.started.inc()
        if delivery.num_delivered > 1:
            self.metrics.redeliveries.inc()
        self.runs[event.id] = JobRun(Runs(self.registry.store), event, delivery.num_delivered)
        try:
            with logs.bound(job_id=event.id, tenant=event.tenant), self.metrics.in_flight.track_inprogress():
                await self._decide(delivery, event)
        finally:
            self.runs.pop(event.id, None)

    async def _decide(self, delivery: Delivery, event: TrainingRequested) -> None:
        try:
            await self._attempt(delivery, event)
        except JobCancelled as exc:  # a sweep cancels the trials its pruner stops: their runs say "pruned"
            await self._fail(delivery, event, exc, retryable=False, keep=False, pruned=event.data.trial)
        except PERMANENT as exc:
            await self._fail(delivery, event, exc, retryable=False)
        except BusError as exc:  # the bus failed under a publish or an ack: the world is briefly wrong
            log.warning("job %s: bus error on delivery %d: %s", event.id, delivery.num_delivered, exc)
            await self._fail(delivery, event, exc, retryable=True)
        except Exception as exc:  # last resort: a recipe's or a library's unknown fault is retried, then failed
            log.exception("job %s: unexpected error on delivery %d", event.id, delivery.num_delivered)
            await self._fail(delivery, event, exc, retryable=True)

    async def _attempt(self, delivery: Delivery, event: TrainingRequested) -> None:
        """Train (or find the earlier delivery's version), announce, promote and ack; raises on any fault."""
        started = time.perf_counter()
        cancelled = threading.Event()
        # Listen for a cancel first, then look for one sent earlier: none can slip between the two.
        stop_listening = await self.bus.flag_on(subjects.cancel(event.id), cancelled)
        try:
            if await self.bus.last(subjects.cancel(event.id)) is not None:
                cancelled.set()
            await self._report_started(delivery, event)
            await asyncio.to_thread(self.runs[event.id].started)
            heartbeat = asyncio.create_task(self._heartbeat(delivery))
            try:
                trace = tracing("trainer")
                with trace.span("train, compile and register", model=event.data.model_name):
                    outcome = await asyncio.to_thread(self._run, event, asyncio.get_running_loop(), cancelled)
                if isinstance(outcome, dict):  # a sweep's trial: a run, not a version
                    await self._complete_trial(delivery, event, outcome, time.perf_counter() - started)
                    return
                with trace.span("registration", model=outcome.name, version=outcome.version):
                    await self._complete(delivery, event, outcome, time.perf_counter() - started)
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
        finally:
            await stop_listening()

    async def _report_started(self, delivery: Delivery, event: TrainingRequested) -> None:
        """The epoch-0 report: best-effort, like every progress report."""
        report = ProgressReport(
            job_id=event.id, model_name=event.data.model_name, epoch=0, epochs=event.data.recipe.epochs
        )
        try:
            await self.bus.publish(
                TrainingProgress(id=derive_id(event.id, "started", delivery.seq), tenant=event.tenant, data=report)
            )
        except BusError as exc:
            log.warning("job %s: started report not published: %s", event.id, exc)

    def _run(
        self, event: TrainingRequested, loop: asyncio.AbstractEventLoop, cancelled: threading.Event
    ) -> Manifest | dict[str, float]:
        """The blocking part of a job, in a worker thread; progress goes out through `loop`."""
        if cancelled.is_set():
            raise JobCancelled(f"job {event.id} was cancelled before it started")
        if event.data.trial:
            pass  # a trial registers nothing, so a redelivery trains again (resuming from its checkpoint)
        elif (done := self.registry.registered_for(event.tenant, event.data.model_name, event.id)) is not None:
            log.info("job %s already registered as version %d; not training again", event.id, done.version)
            return done

        epoch_started = [time.perf_counter()]

        def on_epoch(epoch: int, epochs: int, loss: float, metrics: dict[str, float], **extra: Any) -> None:
            now = time.perf_counter()
            self.metrics.epoch.observe(now - epoch_started[0])
            self.runs[event.id].epoch(epoch, loss, metrics, now - epoch_started[0], extra.get("val_loss"))
            epoch_started[0] = now
            if cancelled.is_set():
                raise JobCancelled(f"job {event.id} was cancelled after epoch {epoch} of {epochs}")
            progress = TrainingProgress(
                tenant=event.tenant,
                data=ProgressReport(
                    job_id=event.id,
                    model_name=event.data.model_name,
                    epoch=epoch,
                    epochs=epochs,
                    loss=loss,
                    metrics=metrics,
                    **extra,  # resumed_at, workers, restarts, samples_per_s (training/loop.py)
                ),
            )
            future = asyncio.run_coroutine_threadsafe(self.bus.publish(progress), loop)
            try:
                future.result(timeout=5)
            except (BusError, TimeoutError) as exc:  # progress is best-effort; the job goes on
                log.warning("job %s: progress event not published: %s", event.id, exc)

        s = self.settings
        if event.data.trial:
            return run_trial(
                event,
                self.registry,
                on_epoch=on_epoch,
                checkpoints=CheckpointPolicy.from_settings(s),
                distributed=DistributedOptions.from_settings(s),
            )
        return run_job(
            event,
            self.registry,
            on_epoch=on_epoch,
            atol=s.parity_atol,
            rtol=s.parity_rtol,
            accuracy_budget=s.accuracy_budget,
            checkpoints=CheckpointPolicy.from_settings(s),
            distributed=DistributedOptions.from_settings(s),
        )

    async def _heartbeat(self, delivery: Delivery) -> None:
        interval = max(self.settings.ack_wait_s / 3, 0.5)
        while True:
            await asyncio.sleep(interval)
            try:
                await delivery.in_progress()
            except BusError as exc:  # a missed heartbeat only risks a redelivery, which is idempotent
                log.warning("heartbeat failed: %s", exc)

    async def _complete(
        self, delivery: Delivery, event: TrainingRequested, manifest: Manifest, duration_s: float
    ) -> None:
        name, version = manifest.name, manifest.version
        uri = self.registry.version_uri(event.tenant, name, version)
        await self.bus.publish(outcomes.published(event, delivery.seq, manifest, uri))
        await self.bus.publish(outcomes.completed(event, delivery.seq, manifest.metrics, duration_s, version))
        if event.data.gate is not None:
            await self._promote(event, manifest)
        await delivery.ack()
        await asyncio.to_thread(self.runs[event.id].completed, manifest)
        self.metrics.completed.inc()
        self.metrics.duration.observe(duration_s)
        log.info("job %s: %s version %d registered in %.1fs %s", event.id, name, version, duration_s, manifest.metrics)

    async def _complete_trial(
        self, delivery: Delivery, event: TrainingRequested, metrics: dict[str, float], duration_s: float
    ) -> None:
        """A sweep's trial ends with its metrics and no version: the sweep registers only its winner."""
        await self.bus.publish(outcomes.completed(event, delivery.seq, metrics, duration_s, None))
        await delivery.ack()
        await asyncio.to_thread(self.runs[event.id].trial_completed, metrics)
        self.metrics.completed.inc()
        self.metrics.duration.observe(duration_s)
        log.info("job %s: trial of sweep %s done in %.1fs %s", event.id, event.data.sweep, duration_s, metrics)

    async def _promote(self, event: TrainingRequested, manifest: Manifest) -> None:
        """Apply the request's gate; a promotion is announced with `models.promoted`."""
        assert event.data.gate is not None
        with tracing("trainer").span("promotion", model=manifest.name, version=manifest.version):
            decision = await promote_and_announce(
                self.bus, self.registry, manifest, event.data.gate, event_id=event.id, tenant=event.tenant
            )
        log.info("job %s: gate %s: %s", event.id, "passed" if decision.promoted else "held", decision.reason)

    async def _fail(
        self,
        delivery: Delivery,
        event: TrainingRequested,
        exc: Exception,
        *,
        retryable: bool,
        keep: bool = True,  # dead-letter it
        pruned: bool = False,
    ) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        last = delivery.num_delivered >= self.settings.max_deliver
        if retryable and not last:
            delay = min(self.settings.retry_delay_s * 2 ** (delivery.num_delivered - 1), 300.0)
            log.warning(
                "job %s: delivery %d failed (%s); retrying in %.1fs", event.id, delivery.num_delivered, reason, delay
            )
            await delivery.nak(delay)
            self.metrics.failed.labels("retry").inc()
            return
        self.metrics.failed.labels("final").inc()
        if (run := self.runs.get(event.id)) is not None:
            await asyncio.to_thread(run.failed, reason, "pruned" if pruned else "failed")
        await self._publish_failed(event, delivery.seq, str(exc), type(exc).__name__, retryable=retryable)
        if keep:  # a cancelled job is no failure to investigate: no dead letter
            await dead_letter(self.bus, delivery, reason, tag="jobs", deliveries=delivery.num_delivered)
            self.metrics.dead_lettered.labels("failed").inc()
        await delivery.term()
        log.error("job %s failed: %s", event.id, reason)

    async def _publish_failed(
        self, event: TrainingRequested, seq: int, reason: str, error: str, *, retryable: bool
    ) -> None:
        """`training.failed`, with an id per job message so a re-run of the same delivery is de-duplicated."""
        await self.bus.publish(outcomes.failed(event, seq, reason, error, retryable=retryable))


def _brief(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in exc.errors()[:5])


async def serve(settings: TrainerSettings | None = None, stop: asyncio.Event | None = None) -> None:
    """Run one trainer replica until SIGINT/SIGTERM (or `stop`)."""
    settings = settings or get_settings()
    stop = stop_on_signals(stop)
    bus = await Bus.from_settings(settings, name="fermion-trainer")
    trace = tracing("trainer")
    if trace.enabled:
        bus.context_headers = trace.inject
    try:
        policy = ConsumerPolicy(ack_wait_s=settings.ack_wait_s, max_deliver=settings.max_deliver)
        await bus.prepare(settings, list(streams.TRAINER_CONSUMERS), policy)
        registry = open_registry(settings)
        if settings.metrics and settings.metrics_port:
            serve_metrics(settings.metrics_port, settings.metrics_host)
        async with asyncio.TaskGroup() as group:  # if one fails, the other stops too
            consumers = [(streams.JOBS_STREAM, streams.TRAINER_DURABLE), (streams.JOBS_STREAM, streams.SWEEP_DURABLE)]
            group.create_task(watch_consumer(bus.consumer_state, consumers, stop))
            group.create_task(Worker(bus, registry, settings).run(stop))
            group.create_task(Scorer(bus, registry, settings).run(stop))  # issue 26: batch scoring
            group.create_task(rules.RuleRunner(bus, UploadRule(Pipelines(registry.store))).run(stop))
            group.create_task(rules.RuleRunner(bus, DriftRule(bus, registry)).run(stop))  # issue 17: drift → retraining
            sweeps = SweepRule(bus, registry, heartbeat_s=max(settings.ack_wait_s / 3, 0.5))
            group.create_task(rules.RuleRunner(bus, sweeps).run(stop))
    finally:
        await bus.close()
        trace.shutdown()


def main() -> None:
    """Entry point: `python -m fermion.functions.trainer`."""
    fix_mmap_threshold()  # training/memory.py: a trainer's peak stays near its table
    settings = get_settings()
    logs.configure("trainer", json_lines=settings.log_format == "json")
    asyncio.run(serve(settings))
