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
import signal
import time

from pydantic import ValidationError

from fermion.compile import CompileError
from fermion.events import (
    Bus,
    BusError,
    ConsumerPolicy,
    Delivery,
    FailureReport,
    ModelPublished,
    ModelVersionRef,
    ProgressReport,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
    TrainingResult,
    parse_event,
    subjects,
)
from fermion.model_store import IntegrityError, InvalidName, Manifest, NotFound, Registry, open_registry

from .errors import PermanentJobError
from .job import find_registered, run_job
from .settings import TrainerSettings, get_settings

log = logging.getLogger("fermion.trainer")

PERMANENT = (PermanentJobError, CompileError, IntegrityError, InvalidName, NotFound)


class Worker:
    """Pulls one job at a time and sees it through to a fate."""

    def __init__(self, bus: Bus, registry: Registry, settings: TrainerSettings) -> None:
        self.bus = bus
        self.registry = registry
        self.settings = settings

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the job in hand is finished first."""
        queue = await self.bus.job_queue()
        log.info("trainer consuming %s", subjects.TRAINING_REQUESTED)
        try:
            while not stop.is_set():
                try:
                    delivery = await queue.fetch(timeout_s=1.0)
                except BusError as exc:
                    log.warning("fetch failed (%s); retrying", exc)
                    await asyncio.sleep(1.0)
                    continue
                if delivery is not None:
                    await self.handle(delivery)
        finally:
            await queue.close()

    async def handle(self, delivery: Delivery) -> None:
        """Decide one delivery's fate."""
        try:
            event = parse_event(delivery.data, TrainingRequested)
        except ValidationError as exc:
            await self._dead_letter(delivery, f"malformed training.requested event: {_brief(exc)}")
            await delivery.term()
            return
        assert isinstance(event, TrainingRequested)
        started = time.perf_counter()
        heartbeat = asyncio.create_task(self._heartbeat(delivery))
        try:
            manifest = await asyncio.to_thread(self._run, event, asyncio.get_running_loop())
        except PERMANENT as exc:
            await self._fail(delivery, event, exc, retryable=False)
            return
        except Exception as exc:  # unknown faults are retried; the last delivery fails the job
            log.exception("job %s: unexpected error on delivery %d", event.id, delivery.num_delivered)
            await self._fail(delivery, event, exc, retryable=True)
            return
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        await self._complete(delivery, event, manifest, time.perf_counter() - started)

    def _run(self, event: TrainingRequested, loop: asyncio.AbstractEventLoop) -> Manifest:
        """The blocking part of a job, in a worker thread; progress goes out through `loop`."""
        if (done := find_registered(self.registry, event)) is not None:
            log.info("job %s already registered as version %d; not training again", event.id, done.version)
            return done

        def on_epoch(epoch: int, epochs: int, loss: float, metrics: dict[str, float]) -> None:
            progress = TrainingProgress(
                tenant=event.tenant,
                data=ProgressReport(
                    job_id=event.id,
                    model_name=event.data.model_name,
                    epoch=epoch,
                    epochs=epochs,
                    loss=loss,
                    metrics=metrics,
                ),
            )
            future = asyncio.run_coroutine_threadsafe(self.bus.publish(progress), loop)
            try:
                future.result(timeout=5)
            except (BusError, TimeoutError) as exc:  # progress is best-effort; the job goes on
                log.warning("job %s: progress event not published: %s", event.id, exc)

        s = self.settings
        return run_job(
            event,
            self.registry,
            on_epoch=on_epoch,
            atol=s.parity_atol,
            rtol=s.parity_rtol,
            accuracy_budget=s.accuracy_budget,
        )

    async def _heartbeat(self, delivery: Delivery) -> None:
        interval = max(self.settings.ack_wait_s / 3, 0.5)
        while True:
            await asyncio.sleep(interval)
            try:
                await delivery.in_progress()
            except Exception as exc:  # a missed heartbeat only risks a redelivery, which is idempotent
                log.warning("heartbeat failed: %s", exc)

    async def _complete(
        self, delivery: Delivery, event: TrainingRequested, manifest: Manifest, duration_s: float
    ) -> None:
        name, version = manifest.name, manifest.version
        await self.bus.publish(
            ModelPublished(
                id=f"{event.id}.published",
                tenant=event.tenant,
                data=ModelVersionRef(
                    model_name=name,
                    version=version,
                    sha256=manifest.files["model.onnx"].sha256,
                    uri=f"{self.registry.store.url}/models/{event.tenant}/{name}/versions/{version}",
                    job_id=event.id,
                ),
            )
        )
        await self.bus.publish(
            TrainingCompleted(
                id=f"{event.id}.completed",
                tenant=event.tenant,
                data=TrainingResult(
                    job_id=event.id,
                    model_name=name,
                    version=version,
                    metrics=manifest.metrics,
                    duration_s=round(duration_s, 3),
                ),
            )
        )
        await delivery.ack()
        log.info("job %s: %s version %d registered in %.1fs %s", event.id, name, version, duration_s, manifest.metrics)

    async def _fail(self, delivery: Delivery, event: TrainingRequested, exc: Exception, *, retryable: bool) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        last = delivery.num_delivered >= self.settings.max_deliver
        if retryable and not last:
            log.warning(
                "job %s: delivery %d failed (%s); retrying in %.0fs",
                event.id,
                delivery.num_delivered,
                reason,
                self.settings.retry_delay_s,
            )
            await delivery.nak(self.settings.retry_delay_s)
            return
        await self.bus.publish(
            TrainingFailed(
                id=f"{event.id}.failed",
                tenant=event.tenant,
                data=FailureReport(
                    job_id=event.id,
                    model_name=event.data.model_name,
                    reason=str(exc),
                    error=type(exc).__name__,
                    retryable=retryable,
                ),
            )
        )
        await self._dead_letter(delivery, reason)
        await delivery.term()
        log.error("job %s failed: %s", event.id, reason)

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Keep the original bytes, with the reason and delivery count, on the dead-letter subject."""
        await self.bus.publish_bytes(
            subjects.dead_letter(delivery.subject),
            delivery.data,
            headers={
                "Fermion-Reason": reason[:2000].replace("\n", " "),
                "Fermion-Deliveries": str(delivery.num_delivered),
            },
        )
        log.error("dead-lettered a %s message: %s", delivery.subject, reason)


def _brief(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in exc.errors()[:5])


async def serve(settings: TrainerSettings | None = None, stop: asyncio.Event | None = None) -> None:
    """Run one trainer replica until SIGINT/SIGTERM (or `stop`)."""
    settings = settings or get_settings()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    bus = await Bus.connect(settings.nats_url, name="fermion-trainer")
    try:
        await bus.provision(ConsumerPolicy(ack_wait_s=settings.ack_wait_s, max_deliver=settings.max_deliver))
        await Worker(bus, open_registry(settings), settings).run(stop)
    finally:
        await bus.close()


def main() -> None:
    """Entry point: `python -m fermion.functions.trainer`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve())
