"""The batch scorer: a consumer of `scoring.requested` beside the trainer worker, on its own durable.

Only this module decides a scoring message's fate, as the trainer worker does for trainings:

- the predictions are in the store → `scoring.completed`, then ack;
- the request is wrong (no such model or dataset, a column missing) → `scoring.failed`, then
  dead-letter and term;
- the world is briefly wrong (store or bus, an unexpected error) → nak with a delay, and on the last
  allowed delivery `scoring.failed` + dead-letter instead.

A job heartbeats `in_progress` while it scores and reports `scoring.progress` after each chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from pydantic import ValidationError

from fermion.events import (
    Bus,
    BusError,
    Delivery,
    ScoringCompleted,
    ScoringProgress,
    ScoringReport,
    ScoringRequested,
    ScoringResult,
    derive_id,
    parse_event,
    streams,
)
from fermion.model_store import (
    DatasetStore,
    IntegrityError,
    InvalidName,
    Manifest,
    NotFound,
    Registry,
    dataset_key,
)
from fermion.model_store.tables import DatasetProfile, TableError
from fermion.service.consumer import consume
from fermion.service.observability import logs
from fermion.service.observability.trainer import trainer_metrics
from fermion.service.reaper import Reaper, dead_letter
from fermion.training.errors import PermanentJobError

from . import outcomes
from .predictions import score
from .reaper import SCORINGS
from .settings import TrainerSettings

log = logging.getLogger("fermion.scorer")

PERMANENT = (PermanentJobError, IntegrityError, InvalidName, NotFound, TableError)


class Scorer:
    """Pulls one scoring job at a time and sees it through to a fate."""

    def __init__(self, bus: Bus, registry: Registry, settings: TrainerSettings) -> None:
        self.bus = bus
        self.registry = registry
        self.settings = settings

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the job in hand is finished first.

        Beside it, a reaper: a scoring job that kills its worker on every delivery (a table too large
        for the memory limit) is dead-lettered and reported failed, not left in the queue for ever.
        """
        exhausted = trainer_metrics().dead_lettered.labels("exhausted").inc  # the trainer process's metrics
        reaper = asyncio.create_task(Reaper(self.bus, self.settings, SCORINGS, exhausted).run())
        try:
            await consume(
                self.bus,
                streams.SCORER_DURABLE,
                streams.JOBS_STREAM,
                self.handle,
                stop,
                retry_delay_s=self.settings.retry_delay_s,
            )
        finally:
            reaper.cancel()
            await asyncio.gather(reaper, return_exceptions=True)

    async def handle(self, delivery: Delivery) -> None:
        """Decide one delivery's fate."""
        try:
            event = parse_event(delivery.data, ScoringRequested)
        except ValidationError as exc:
            reason = f"malformed scoring.requested event: {exc.error_count()} error(s): {exc.errors()[0]['msg']}"
            await dead_letter(self.bus, delivery, reason, tag="scores", deliveries=delivery.num_delivered)
            await delivery.term()
            return
        assert isinstance(event, ScoringRequested)
        with logs.bound(job_id=event.id, tenant=event.tenant):
            try:
                await self._attempt(delivery, event)
            except PERMANENT as exc:
                await self._fail(delivery, event, exc, retryable=False)
            except BusError as exc:
                await self._fail(delivery, event, exc, retryable=True)
            except Exception as exc:  # an unknown fault is retried, then failed
                log.exception("scoring %s: unexpected error on delivery %d", event.id, delivery.num_delivered)
                await self._fail(delivery, event, exc, retryable=True)

    async def _attempt(self, delivery: Delivery, event: ScoringRequested) -> None:
        started = time.perf_counter()
        request = event.data
        manifest = await asyncio.to_thread(self._manifest, event)
        rows = await asyncio.to_thread(self._rows, event)
        await self._progress(event, delivery, 0, rows)
        loop = asyncio.get_running_loop()

        def on_chunk(done: int) -> None:
            future = asyncio.run_coroutine_threadsafe(self._progress(event, delivery, done, rows), loop)
            with contextlib.suppress(BusError, TimeoutError):  # progress is best-effort; the job goes on
                future.result(timeout=5)

        heartbeat = asyncio.create_task(self._heartbeat(delivery))
        try:
            scored = await asyncio.to_thread(score, self.registry, event.tenant, event.id, request, manifest, on_chunk)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        result = ScoringResult(
            job_id=event.id,
            model_name=manifest.name,
            version=manifest.version,
            rows=scored.rows,
            key=scored.key,
            format=request.format,
            duration_s=round(time.perf_counter() - started, 3),
        )
        await self.bus.publish(
            ScoringCompleted(id=derive_id(event.id, "completed", delivery.seq), tenant=event.tenant, data=result)
        )
        await delivery.ack()
        log.info(
            "scoring %s: %d rows with %s:%d → %s", event.id, scored.rows, manifest.name, manifest.version, scored.key
        )

    def _manifest(self, event: ScoringRequested) -> Manifest:
        r = event.data
        version = r.version or self.registry.resolve(event.tenant, r.model_name, r.alias)
        return self.registry.manifest(event.tenant, r.model_name, version)

    def _rows(self, event: ScoringRequested) -> int | None:
        """The table's rows, from the profile its upload stored (None: an upload from before profiles)."""
        ref, datasets = event.data.dataset, DatasetStore(self.registry.store)
        raw = datasets.profile(dataset_key(event.tenant, ref.name, ref.sha256, ref.format))
        return DatasetProfile.model_validate_json(raw).rows if raw else None

    async def _progress(self, event: ScoringRequested, delivery: Delivery, done: int, rows: int | None) -> None:
        report = ScoringReport(job_id=event.id, model_name=event.data.model_name, rows_done=done, rows=rows)
        progress = ScoringProgress(id=derive_id(event.id, "rows", done, delivery.seq), tenant=event.tenant, data=report)
        try:
            await self.bus.publish(progress)
        except BusError as exc:
            log.warning("scoring %s: progress not published: %s", event.id, exc)

    async def _heartbeat(self, delivery: Delivery) -> None:
        interval = max(self.settings.ack_wait_s / 3, 0.5)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(BusError):  # a missed heartbeat only risks an idempotent redelivery
                await delivery.in_progress()

    async def _fail(self, delivery: Delivery, event: ScoringRequested, exc: Exception, *, retryable: bool) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if retryable and delivery.num_delivered < self.settings.max_deliver:
            delay = min(self.settings.retry_delay_s * 2 ** (delivery.num_delivered - 1), 300.0)
            log.warning(
                "scoring %s: delivery %d failed (%s); retrying in %.1fs",
                event.id,
                delivery.num_delivered,
                reason,
                delay,
            )
            await delivery.nak(delay)
            return
        await self.bus.publish(
            outcomes.scoring_failed(event, delivery.seq, str(exc), type(exc).__name__, retryable=retryable)
        )
        await dead_letter(self.bus, delivery, reason, tag="scores", deliveries=delivery.num_delivered)
        await delivery.term()
        log.error("scoring %s failed: %s", event.id, reason)
